"""/healthz: is this replica doing its job? The kubelet restarts it when not.

Unhealthy (HTTP 500) when
- the leader's planning loop has not completed a round within `round_deadline` seconds of
  the later of its last round and the moment it became leader (a wedged round, a hung call);
- the lease loop has not finished an attempt within `lease_deadline` (leader or follower);
- a loop task or thread of the replica has died.
A follower is healthy while its lease loop runs. The endpoint is served from the operator's
event loop, so a blocked event loop does not answer at all, which the probe counts as a
failure too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from http import HTTPStatus

log = logging.getLogger("gpualloc.liveness")


# A lease attempt is at most two API calls of (5 s connect, 30 s read) timeouts, retried every
# few seconds: two minutes without one finishing means the lease loop is stuck.
LEASE_DEADLINE = 120.0


class Liveness:
    def __init__(
        self,
        round_deadline: Callable[[], float],
        lease_progress: Callable[[], float],
        lease_deadline: float = LEASE_DEADLINE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`lease_progress()`: clock() when the last lease attempt finished."""
        self.round_deadline = round_deadline
        self.lease_progress = lease_progress
        self.lease_deadline = lease_deadline
        self.clock = clock
        self.last_round = clock()
        self.leading_since: float | None = None
        self.tasks: dict[str, asyncio.Task[object]] = {}
        self.threads: dict[str, threading.Thread] = {}

    # -- what the loops report --------------------------------------------------------------
    def round_completed(self) -> None:
        self.last_round = self.clock()

    def leadership(self, leading: bool) -> None:
        self.leading_since = self.clock() if leading else None

    def watch_task(self, name: str, task: asyncio.Task[object]) -> None:
        self.tasks[name] = task

    def watch_thread(self, name: str, thread: threading.Thread) -> None:
        self.threads[name] = thread

    # -- the verdict --------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Why this replica should be restarted; empty when it is healthy."""
        now = self.clock()
        found = []
        for name, task in self.tasks.items():
            if task.done():
                error = None if task.cancelled() else task.exception()
                found.append(f"loop task {name} ended" + (f": {error!r}" if error else ""))
        found += [f"thread {name} died" for name, t in self.threads.items() if not t.is_alive()]
        stuck = now - self.lease_progress()
        if stuck > self.lease_deadline:
            found.append(
                f"no lease attempt finished in {stuck:.0f}s (bound {self.lease_deadline:.0f}s)"
            )
        if self.leading_since is not None:
            since = max(self.last_round, self.leading_since)
            bound = self.round_deadline()
            if now - since > bound:
                found.append(
                    f"leader completed no planning round in {now - since:.0f}s (bound {bound:.0f}s)"
                )
        return found

    # -- the endpoint (a few lines of HTTP/1.0 on asyncio streams: no web framework needed) --
    def response(self, path: str) -> tuple[int, dict[str, object]]:
        if path != "/healthz":
            return 404, {"status": "not found"}
        problems = self.problems()
        if problems:
            log.warning("liveness: unhealthy: %s", "; ".join(problems))
            return 500, {"status": "unhealthy", "problems": problems}
        return 200, {"status": "ok", "problems": []}

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            method, path, *_ = request.decode("latin-1").split(" ", 2)
            status, body = self.response(path.split("?", 1)[0]) if method == "GET" else (405, {})
            data = json.dumps(body).encode()
            reason = HTTPStatus(status).phrase
            writer.write(
                f"HTTP/1.0 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError):
            pass  # a probe that hung up or sent garbage gets no answer
        finally:
            writer.close()

    async def serve(self, host: str, port: int) -> None:
        """Serve /healthz until cancelled."""
        server = await asyncio.start_server(self._handle, host, port)
        log.info("liveness endpoint on http://%s:%d/healthz", host, port)
        async with server:
            await server.serve_forever()


def round_deadline(resync: Callable[[], float], configured: float | None) -> Callable[[], float]:
    """The configured bound, or max(3 x resync, 5 min): a healthy leader completes a round at
    least every resync, and a slow solve must not get it restarted."""
    if configured:
        return lambda: configured
    return lambda: max(3 * resync(), 300.0)
