"""The one module that talks to the Kubernetes API (besides Kopf's own watches).

Everything returns and takes plain dicts, so the rest of the operator never sees client
models. Calls are synchronous; the controller runs them in worker threads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from gpualloc.k8s.convert import GROUP

VERSION = "v1alpha1"
# (connect, read) seconds for every request but watches: a stalled apiserver connection fails
# the call, and the loop retries, instead of hanging the round.
REQUEST_TIMEOUT = (5.0, 30.0)
PLURALS = {"LLMTrainingJob": "llmtrainingjobs", "LLMInferenceJob": "llminferencejobs"}
Obj = dict[str, Any]


class _Loaded:
    """An unread urllib3 response as ApiException wants it (status, reason, data)."""

    def __init__(self, resp: Any) -> None:
        self.status, self.reason, self.data = resp.status, resp.reason, resp.data
        self.headers = resp.headers

    def getheaders(self) -> Any:
        return self.headers


class WatchExpired(Exception):
    """The watch's resourceVersion is gone from the apiserver's window: list again."""


def load_config(kubeconfig: str | None = None) -> None:
    """--kubeconfig, then $KUBECONFIG / ~/.kube/config, then the in-cluster service account."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path or os.path.exists(os.path.expanduser("~/.kube/config")):
        config.load_kube_config(config_file=path)  # type: ignore[no-untyped-call]
    else:
        config.load_incluster_config()  # type: ignore[no-untyped-call]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kube:
    """Thin typed wrapper over the client: list, create, patch, delete, events, leases."""

    def __init__(
        self,
        api_client: client.ApiClient | None = None,
        threads: int = 48,
        user_agent: str | None = None,
        timeout: tuple[float, float] = REQUEST_TIMEOUT,
    ) -> None:
        conn = api_client or client.ApiClient()
        if user_agent:  # tells this replica's requests apart in the apiserver's audit log
            conn.user_agent = user_agent
        # every call has a deadline: a hung connection must not stall the planning loop
        self.timeout = timeout
        # A burst is hundreds of small writes, each waiting on the apiserver rather than on
        # CPU: 48 in flight gave 385 pod creates/s here, 16 gave 150 (hack/bench_operator.py).
        # One connection per worker thread.
        # (+ 8: the informers' long-lived watches must not take the writers' connections)
        conn.rest_client.pool_manager.connection_pool_kw["maxsize"] = threads + 8
        # Any: the APIs are fed and read as plain dicts, not the client's model classes
        self.core: Any = client.CoreV1Api(conn)
        self.custom: Any = client.CustomObjectsApi(conn)
        self.coordination: Any = client.CoordinationV1Api(conn)
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube")

    # -- the fast path: many small requests per round, so skip the generated client's
    # argument validation and model (de)serialization and send JSON directly.
    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> Any:
        api = self.core.api_client
        headers = {
            "Content-Type": content_type,
            "Accept": "application/json",
            "User-Agent": api.user_agent,
        }
        api.update_params_for_auth(headers, [], ["BearerToken"], path, method, body)
        url = api.configuration.host + path + (f"?{urlencode(query)}" if query else "")
        try:
            resp = api.rest_client.request(
                method, url, headers=headers, body=body, _request_timeout=timeout or self.timeout
            )
        except urllib3.exceptions.HTTPError:
            self.drop_idle_connections()
            raise
        return resp.response  # urllib3's, unread: `.data` reads it, iterating streams it

    def drop_idle_connections(self) -> None:
        """A request that timed out or broke: the pooled connections opened in the same period
        are likely as dead (a stalled apiserver, a dropped middlebox), and each would cost a
        read timeout of its own. Drop them all; requests in flight keep theirs."""
        self.core.api_client.rest_client.pool_manager.clear()

    def _dropping_on_error(self, resp: Any) -> Iterator[bytes]:
        try:
            yield from resp
        except urllib3.exceptions.HTTPError:
            self.drop_idle_connections()
            raise

    def _send(
        self, method: str, path: str, body: Any, content_type: str = "application/json"
    ) -> tuple[int, str | None]:
        """The HTTP status and the written object's resourceVersion (None when there is no
        object: 404/409). Raises ApiException for other errors."""
        resp = self._request(method, path, body, content_type)
        status = int(resp.status)
        if status >= 400 and status not in (404, 409):
            raise ApiException(http_resp=_Loaded(resp))
        data = resp.data
        if status >= 400 or not data:
            return status, None
        written = json.loads(data)
        version = (written.get("metadata") or {}).get("resourceVersion")
        return status, str(version) if version else None

    # -- reads (raw JSON: much faster than building client models for thousands of pods)
    @staticmethod
    def _items(response: Any, kind: str) -> list[Obj]:
        return Kube._listing(response, kind)[0]

    @staticmethod
    def _listing(response: Any, kind: str) -> tuple[list[Obj], str]:
        """A LIST's items and its resourceVersion."""
        listing = json.loads(response.data)
        items: list[Obj] = listing["items"]
        for item in items:
            item.setdefault("kind", kind)
            # server-side-apply bookkeeping: often half an object, never read here
            item.get("metadata", {}).pop("managedFields", None)
        return items, str(listing["metadata"]["resourceVersion"])

    def list_resource(
        self, path: str, kind: str, label_selector: str | None = None
    ) -> tuple[list[Obj], str]:
        """Every object at a collection `path` (e.g. /api/v1/pods) and the list's version."""
        query = [("labelSelector", label_selector)] if label_selector else []
        resp = self._request("GET", path, query=query)
        if resp.status >= 400:
            raise ApiException(http_resp=_Loaded(resp))
        return self._listing(resp, kind)

    def watch_resource(
        self, path: str, resource_version: str, timeout_seconds: int, label_selector: str | None
    ) -> Iterator[Obj]:
        """Raw watch events ({"type", "object"}) at `path` after `resource_version`, with
        bookmarks, until the server ends the stream. Raises WatchExpired (410): list again."""
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if label_selector:
            query.append(("labelSelector", label_selector))
        # the read timeout outlives the server's own end of the stream: a silent connection
        # (stalled apiserver) fails instead of hanging the watch forever
        resp = self._request("GET", path, query=query, timeout=(5, timeout_seconds + 10))
        if resp.status == 410:
            raise WatchExpired("resource version too old")
        if resp.status >= 400:
            raise ApiException(http_resp=_Loaded(resp))
        try:
            for line in self._dropping_on_error(resp):
                event: Obj = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    if status.get("code") == 410:
                        raise WatchExpired(status.get("message", "resource version too old"))
                    raise ApiException(status=status.get("code"), reason=status.get("message"))
                obj = event.get("object") or {}
                (obj.get("metadata") or {}).pop("managedFields", None)
                yield event
        finally:
            resp.close()  # also when abandoned mid-stream: never reuse a half-read one

    def list_nodes(self) -> list[Obj]:
        return self._items(
            self.core.list_node(_preload_content=False, _request_timeout=self.timeout), "Node"
        )

    def list_pods(self) -> list[Obj]:
        """Every pod in the cluster: unmanaged pods also use GPUs."""
        return self.list_pods_versioned()[0]

    def list_pods_versioned(self) -> tuple[list[Obj], str]:
        """Every pod, and the list's resourceVersion (where a watch picks up)."""
        return self._listing(
            self.core.list_pod_for_all_namespaces(
                _preload_content=False, _request_timeout=self.timeout
            ),
            "Pod",
        )

    def watch_pods(self, resource_version: str, timeout_seconds: int) -> Iterator[Obj]:
        """Raw watch events of every pod after `resource_version` (see watch_resource)."""
        return self.watch_resource("/api/v1/pods", resource_version, timeout_seconds, None)

    def list_jobs(self) -> list[Obj]:
        jobs: list[Obj] = []
        for kind, plural in PLURALS.items():
            resp = self.custom.list_cluster_custom_object(
                GROUP, VERSION, plural, _preload_content=False, _request_timeout=self.timeout
            )
            jobs.extend(self._items(resp, kind))
        return jobs

    def get_policy(self, name: str = "default") -> Obj | None:
        try:
            resp = self.custom.get_cluster_custom_object(
                GROUP,
                VERSION,
                "allocationpolicies",
                name,
                _preload_content=False,
                _request_timeout=self.timeout,
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        policy: Obj = json.loads(resp.data)
        return policy

    # -- writes
    # writes return the written object's resourceVersion (None: it exists already, or is
    # gone), so the next round can wait until its watches have seen its own writes
    def create_pod(self, pod: Obj) -> str | None:
        """None if it already exists (adopted, never duplicated)."""
        ns = pod["metadata"]["namespace"]
        return self._send("POST", f"/api/v1/namespaces/{ns}/pods", pod)[1]

    def create_service(self, svc: Obj) -> str | None:
        """Creates it unless it exists (409)."""
        ns = svc["metadata"]["namespace"]
        return self._send("POST", f"/api/v1/namespaces/{ns}/services", svc)[1]

    def json_patch_pod(self, namespace: str, name: str, ops: list[Obj]) -> str | None:
        return self._send(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/{name}",
            ops,
            "application/json-patch+json",
        )[1]

    def evict_pod(self, namespace: str, name: str, grace_seconds: int) -> bool:
        """The Eviction API, so PodDisruptionBudgets are respected: False when a budget
        refuses it now (429); True when evicted or already gone."""
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
            "deleteOptions": {"gracePeriodSeconds": grace_seconds},
        }
        resp = self._request("POST", f"/api/v1/namespaces/{namespace}/pods/{name}/eviction", body)
        if resp.status == 429:
            return False
        if resp.status >= 400 and resp.status != 404:
            raise ApiException(http_resp=_Loaded(resp))
        return True

    def delete_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> None:
        try:
            self.core.delete_namespaced_pod(
                name,
                namespace,
                grace_period_seconds=grace_seconds,
                _preload_content=False,
                _request_timeout=self.timeout,
            )
        except ApiException as err:
            if err.status != 404:
                raise

    def patch_job_status(self, kind: str, namespace: str, name: str, status: Obj) -> str | None:
        """A merge patch of the status subresource (a 404 means it was deleted meanwhile)."""
        return self._send(
            "PATCH",
            f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURALS[kind]}/{name}/status",
            {"status": status},
            "application/merge-patch+json",
        )[1]

    def patch_policy_status(self, name: str, status: Obj) -> None:
        try:
            self.custom.patch_cluster_custom_object_status(
                GROUP,
                VERSION,
                "allocationpolicies",
                name,
                {"status": status},
                _request_timeout=self.timeout,
            )
        except ApiException as err:
            if err.status != 404:
                raise

    def patch_queue_status(self, name: str, status: Obj) -> None:
        """A merge patch of a GPUQueue's status subresource (a 404: deleted meanwhile)."""
        self._send(
            "PATCH",
            f"/apis/{GROUP}/{VERSION}/gpuqueues/{name}/status",
            {"status": status},
            "application/merge-patch+json",
        )

    def event(self, obj: Obj, reason: str, message: str, type_: str = "Normal") -> None:
        """A core/v1 Event on `obj`, as `kubectl describe` shows them."""
        meta = obj["metadata"]
        stamp = now()
        namespace = meta.get("namespace", "default")
        self._send(
            "POST",
            f"/api/v1/namespaces/{namespace}/events",
            {
                "metadata": {
                    "generateName": f"{meta['name']}.",
                    "namespace": meta.get("namespace", "default"),
                },
                "involvedObject": {
                    "apiVersion": obj.get("apiVersion"),
                    "kind": obj.get("kind"),
                    "name": meta["name"],
                    "namespace": meta.get("namespace"),
                    "uid": meta.get("uid"),
                },
                "reason": reason,
                "message": message[:1024],
                "type": type_,
                "source": {"component": "gpualloc"},
                "reportingComponent": "gpualloc",
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            },
        )

    # -- leases (leader election)
    def read_lease(self, namespace: str, name: str) -> Obj | None:
        try:
            resp = self.coordination.read_namespaced_lease(
                name, namespace, _preload_content=False, _request_timeout=self.timeout
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        lease: Obj = json.loads(resp.data)
        return lease

    def create_lease(self, namespace: str, lease: Obj) -> bool:
        try:
            self.coordination.create_namespaced_lease(
                namespace, lease, _request_timeout=self.timeout
            )
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        return True

    def replace_lease(self, namespace: str, name: str, lease: Obj) -> bool:
        """Optimistic: False when someone else changed it first (resourceVersion)."""
        try:
            self.coordination.replace_namespaced_lease(
                name, namespace, lease, _request_timeout=self.timeout
            )
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        return True

    def map(self, fn: Any, items: list[Any], in_flight: int | None = None) -> Iterator[Any]:
        """Run `fn` over items on the worker threads (many small API calls at once); with
        `in_flight`, on a smaller pool of its own so other requests keep the apiserver."""
        if in_flight is None:
            return self.pool.map(fn, items)
        with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="kube-slow") as pool:
            return iter(list(pool.map(fn, items)))
