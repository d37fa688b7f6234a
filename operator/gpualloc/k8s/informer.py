"""An informer, as client-go has them: LIST once, then WATCH from the list's version, keeping
an in-memory store of the objects. Rounds read the store instead of listing every pod.

- the watch asks for bookmarks, so its version stays fresh through quiet periods;
- a version gone from the apiserver's window (410) lists again; so does any failure, after
  a jittered exponential backoff (capped at 10 s), so a restarting apiserver is not
  stampeded;
- a re-list reports what changed meanwhile (deletions included), so nothing is missed;
- `wait_for(version)` lets a round wait until the store has seen the operator's own writes.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from gpualloc.k8s.client import Kube, WatchExpired

log = logging.getLogger("gpualloc.informer")
Obj = dict[str, Any]
# (event type ADDED|MODIFIED|DELETED, object), called on the informer's thread
Notify = Callable[[str, Obj], object]


@dataclass(frozen=True)
class Resource:
    path: str  # the collection, e.g. /api/v1/pods
    kind: str
    label_selector: str | None = None


def object_key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def version_number(version: str | None) -> int:
    """resourceVersions are etcd revisions; compare them as numbers (0 when unknown)."""
    try:
        return int(version or 0)
    except ValueError:
        return 0


class Informer:
    """Runs in a daemon thread; `store()` is a consistent copy of what it has seen."""

    def __init__(
        self,
        kube: Kube,
        resource: Resource,
        notify: Notify,
        timeout_seconds: int = 60,
        max_backoff: float = 10.0,
        slim: Callable[[Obj], Obj] | None = None,
    ) -> None:
        self.kube = kube
        self.resource = resource
        self.notify = notify
        self.timeout_seconds = timeout_seconds
        self.max_backoff = max_backoff
        self.slim = slim or (lambda obj: obj)
        self.stop = threading.Event()
        self.listed = threading.Event()  # the first LIST is in: no later change is missed
        self.lists = 0  # LIST requests made (benchmarks count them)
        self._objects: dict[str, Obj] = {}
        self._version = 0
        self._seen = threading.Condition()

    def start(self) -> threading.Thread:
        name = f"informer-{self.resource.kind.lower()}"
        thread = threading.Thread(target=self.run, name=name, daemon=True)
        thread.start()
        return thread

    def store(self) -> tuple[Obj, ...]:
        with self._seen:
            return tuple(self._objects.values())

    @property
    def version(self) -> int:
        return self._version

    def wait_for(self, version: int, timeout: float) -> bool:
        """Block until the store has seen `version` (or later); False on timeout."""
        with self._seen:
            return self._seen.wait_for(lambda: self._version >= version, timeout)

    def run(self) -> None:
        version: str | None = None
        failures = 0
        while not self.stop.is_set():
            try:
                if version is None:
                    version = self._relist()
                if version is None:  # the kind is not installed (yet): nothing of it exists
                    self.stop.wait(self.max_backoff)
                    continue
                for event in self.kube.watch_resource(
                    self.resource.path,
                    version,
                    self.timeout_seconds,
                    self.resource.label_selector,
                ):
                    if self.stop.is_set():
                        return
                    version = self._apply(event)
                    failures = 0
            except WatchExpired:
                version = None
            except Exception as err:  # apiserver restarting, connection dropped: list again
                failures += 1
                delay = min(self.max_backoff, 0.5 * 2**failures) * random.uniform(0.5, 1.0)
                log.warning(
                    "%s watch failed (%s); listing again in %.1fs", self.resource.kind, err, delay
                )
                version = None
                self.stop.wait(delay)

    def _relist(self) -> str | None:
        """LIST into the store; None when the API server has no such resource (404: a CRD
        not installed yet), which counts as an empty, listed store."""
        try:
            items, version = self.kube.list_resource(
                self.resource.path, self.resource.kind, self.resource.label_selector
            )
        except ApiException as err:
            if err.status != 404:
                raise
            items, version = [], ""
        self.lists += 1
        fresh = {object_key(o): self.slim(o) for o in items}
        with self._seen:
            gone = [o for k, o in self._objects.items() if k not in fresh]
            self._objects = fresh
            self._version = max(self._version, version_number(version))
            self._seen.notify_all()
        for obj in gone:
            self.notify("DELETED", obj)
        for obj in fresh.values():
            self.notify("ADDED", obj)
        self.listed.set()
        return version or None

    def _apply(self, event: Obj) -> str:
        obj: Obj = event["object"]
        kind = event["type"]
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if kind != "BOOKMARK":
            obj.setdefault("kind", self.resource.kind)
            obj = self.slim(obj)
        with self._seen:
            if kind == "DELETED":
                self._objects.pop(object_key(obj), None)
            elif kind != "BOOKMARK":
                self._objects[object_key(obj)] = obj
            self._version = max(self._version, version_number(version))
            self._seen.notify_all()
        if kind != "BOOKMARK":
            self.notify(kind, obj)
        return version
