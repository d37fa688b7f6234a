"""A TCP proxy on 127.0.0.1 that can stall: the fault of a hung apiserver connection.

Raw TCP, so TLS passes through untouched (the apiserver's certificate names 127.0.0.1). While
stalled, the proxy forwards nothing, and closes nothing: every connection open during a stall,
or accepted during it, is held open and silent for good, like a connection whose peer or
middlebox stopped answering. Only its client can end it, by a timeout. Connections opened
after the stall forward normally again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time


class _Conn:
    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.dead = False  # stalled once: forwards nothing ever again

    def kill(self) -> None:
        self.dead = True
        if self.upstream is not None:  # the apiserver side may go; the client's stays open
            self.upstream.close()


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.stalled_until = 0.0  # time.monotonic()
        self.conns: set[_Conn] = set()
        self.accepted = 0
        self._pumps: set[asyncio.Future[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # -- control (from any thread) ------------------------------------------------------------
    def start(self) -> TcpProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def stall(self, seconds: float) -> None:
        """From now on for `seconds`: every open connection, and every one accepted until
        then, forwards nothing and is never closed by the proxy."""

        def begin() -> None:
            self.stalled_until = time.monotonic() + seconds
            for conn in self.conns:
                conn.kill()

        self._loop.call_soon_threadsafe(begin)

    def resume(self) -> None:
        """End the stall now: new connections forward (the stalled ones stay silent)."""
        self._loop.call_soon_threadsafe(setattr, self, "stalled_until", 0.0)

    @property
    def stalled(self) -> bool:
        return time.monotonic() < self.stalled_until

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for conn in list(self.conns):
                conn.kill()
                conn.client.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    # -- the proxy (on its own event loop) ----------------------------------------------------
    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        conn = _Conn(writer)
        self.conns.add(conn)
        try:
            if self.stalled:
                conn.dead = True
            else:
                up_reader, conn.upstream = await asyncio.open_connection(*self.upstream)
                back = asyncio.ensure_future(self._pump(up_reader, writer, conn, close_dst=True))
                self._pumps.add(back)  # a reference, or the task may be garbage-collected
                back.add_done_callback(self._pumps.discard)
            await self._pump(reader, conn.upstream, conn, close_dst=False)
        except OSError:
            pass
        finally:
            self.conns.discard(conn)
            if conn.upstream is not None:
                conn.upstream.close()
            writer.close()

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter | None,
        conn: _Conn,
        close_dst: bool,
    ) -> None:
        """Copy src to dst until EOF; once the connection is dead, read and drop (the sender
        is never blocked, nothing arrives)."""
        with contextlib.suppress(OSError, ConnectionError):
            while data := await src.read(65536):
                if conn.dead or dst is None:
                    continue
                dst.write(data)
                await dst.drain()
        # EOF from upstream ends a live connection; a dead one stays open for its client
        if close_dst and dst is not None and not conn.dead:
            dst.close()
