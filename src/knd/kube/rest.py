"""Plain JSON REST calls through a `kubernetes.client.ApiClient` (its host, TLS, bearer token
and proxy settings), without the generated per-group API classes.

Why: importing `kubernetes.client.CoreV1Api` costs ~65 MB of resident memory (its module is
4.4 MB of generated source) for the two core calls the daemon makes (read a Node, create an
Event). Measured by bench/daemon.py. Errors are `kubernetes.client.exceptions.ApiException`
with the HTTP status, exactly as the generated methods raise them.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException


def request_json(
    api_client: Any,
    method: str,
    path: str,
    *,
    body: Mapping[str, Any] | None = None,
    query: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """`method path` with a JSON body; the decoded JSON answer. Raises ApiException for a
    non-2xx answer (status and reason set) and lets connection errors propagate."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    query_pairs = list((query or {}).items())
    params = api_client.param_serialize(
        method=method,
        resource_path=path,
        query_params=query_pairs,
        header_params=headers,
        body=dict(body) if body is not None else None,
        auth_settings=["BearerToken"],
    )
    resp = api_client.call_api(*params, _request_timeout=timeout_s)
    resp.read()
    if not 200 <= resp.status <= 299:
        raise ApiException(status=resp.status, reason=resp.reason, http_resp=resp)
    out: dict[str, Any] = json.loads(resp.data) if resp.data else {}
    return out


def quote(segment: str) -> str:
    """One path segment, percent-encoded (names are validated elsewhere; this is defence)."""
    return urllib.parse.quote(segment, safe="")
