"""Leader election on a coordination.k8s.io Lease, as Kubernetes controllers do it.

Only the holder plans and actuates; other replicas keep watching, ready to take over when
the lease is not renewed within its duration.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from gpualloc.k8s.client import Kube

log = logging.getLogger("gpualloc.leader")


def _micro(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        identity: str,
        name: str = "gpualloc-leader",
        duration_seconds: int = 15,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.identity = identity
        self.name = name
        self.duration = duration_seconds
        self.leading = False

    def _spec(self, acquire: datetime, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "acquireTime": _micro(acquire),
            "renewTime": _micro(datetime.now(UTC)),
            "leaseTransitions": transitions,
        }

    def try_acquire_or_renew(self) -> bool:
        """True while this replica holds the lease (acquired now or renewed)."""
        now = datetime.now(UTC)
        lease = self.kube.read_lease(self.namespace, self.name)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, 0),
            }
            return self._became(self.kube.create_lease(self.namespace, body))
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = _parse(spec.get("renewTime")) or datetime.min.replace(tzinfo=UTC)
        expired = renewed + timedelta(seconds=spec.get("leaseDurationSeconds") or self.duration)
        if holder and holder != self.identity and expired > now:
            return self._became(False)
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            acquire = _parse(spec.get("acquireTime")) or now
        else:
            acquire, transitions = now, transitions + 1
        lease["spec"] = self._spec(acquire, transitions)
        return self._became(self.kube.replace_lease(self.namespace, self.name, lease))

    def release(self) -> None:
        """Hand over at once on a clean shutdown instead of waiting for expiry."""
        if not self.leading:
            return
        lease = self.kube.read_lease(self.namespace, self.name)
        if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
            lease["spec"]["holderIdentity"] = None  # free: the next replica takes it at once
            self.kube.replace_lease(self.namespace, self.name, lease)
        self.leading = False

    def _became(self, leading: bool) -> bool:
        if leading != self.leading:
            log.info(
                "%s leadership of lease %s/%s",
                "acquired" if leading else "lost",
                self.namespace,
                self.name,
            )
        self.leading = leading
        return leading
