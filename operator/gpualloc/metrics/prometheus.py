"""A small client for Prometheus' HTTP query API (`/api/v1/query`), standard library only.

It returns plain samples (labels, value) and raises one error type, PrometheusError, whose
`reason` says what kind of failure it was (Unreachable, QueryFailed, BadResponse), so callers
can fall back and report it without knowing about HTTP.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

UNREACHABLE = "Unreachable"
QUERY_FAILED = "QueryFailed"
BAD_RESPONSE = "BadResponse"


class PrometheusError(Exception):
    """A query that gave no usable answer; `reason` is one of the constants above."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class PrometheusClient:
    """Instant queries against one Prometheus server.

    Proxies from the environment are not used: Prometheus lives next to the operator (in the
    cluster or on this host), never behind the egress proxy a machine may have configured.
    """

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def query(self, promql: str) -> list[Sample]:
        """Evaluate `promql` now: one Sample per series (a scalar gives one unlabelled sample).
        NaN values are dropped."""
        data = urllib.parse.urlencode({"query": promql}).encode()
        request = urllib.request.Request(
            f"{self.url}/api/v1/query",
            data=data,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as err:
            # 400/422: the query is wrong; Prometheus explains why in the JSON body
            detail = _error_text(err.read())
            reason = QUERY_FAILED if err.code in (400, 422) else UNREACHABLE
            raise PrometheusError(reason, f"HTTP {err.code} for {promql!r}: {detail}") from None
        except (urllib.error.URLError, OSError) as err:
            why = getattr(err, "reason", err)
            raise PrometheusError(UNREACHABLE, f"{self.url} unreachable: {why}") from None
        return parse_response(body, promql)


def _error_text(body: bytes) -> str:
    try:
        payload = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace")
    return str(payload.get("error") or payload)[:300]


def parse_response(body: bytes, promql: str = "") -> list[Sample]:
    """The samples of a `/api/v1/query` response body. Pure."""
    try:
        payload: Any = json.loads(body)
    except ValueError:
        raise PrometheusError(BAD_RESPONSE, f"not JSON: {body[:120]!r}") from None
    if not isinstance(payload, dict) or payload.get("status") != "success":
        error = payload.get("error") if isinstance(payload, dict) else payload
        raise PrometheusError(QUERY_FAILED, f"{promql!r}: {error}")
    result_type = payload["data"]["resultType"]
    result = payload["data"]["result"]
    if result_type == "vector":
        samples = [Sample(dict(s.get("metric") or {}), float(s["value"][1])) for s in result]
    elif result_type == "scalar":
        samples = [Sample({}, float(result[1]))]
    else:
        raise PrometheusError(
            BAD_RESPONSE, f"{promql!r} gives a {result_type}, not an instant vector"
        )
    return [s for s in samples if not math.isnan(s.value)]
