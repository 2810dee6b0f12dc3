"""A small client of the engine's HTTP API on urllib (no other HTTP library): one request,
its JSON answer, and errors as the API says them."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Iterable, Mapping, Optional

DEFAULT_URL = "http://127.0.0.1:7071"
KEY_HEADER = "x-functions-key"
TIMEOUT_SECONDS = 30.0
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class ApiError(Exception):
    """The API answered with an error status: its body as it said it."""

    def __init__(self, status: int, method: str, url: str, body: Any):
        self.status, self.method, self.url, self.body = status, method, url, body
        message = body.get("error") if isinstance(body, dict) else None
        self.message = str(message) if message is not None else (
            body if isinstance(body, str) and body else f"HTTP {status}")
        super().__init__(self.message)


class ConnectionFailed(Exception):
    """Nothing answered at the URL (refused, unknown host, timed out)."""

    def __init__(self, url: str, reason: str):
        self.url, self.reason = url, reason
        super().__init__(f"cannot reach {url}: {reason}")


def normalize_base_url(url: str) -> str:
    """http://host:7071, http://host:7071/ and http://host:7071/api are the same base."""
    url = url.strip().rstrip("/")
    if url.endswith("/api"):
        url = url[: -len("/api")]
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    return url


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror or exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def query_string(params: Mapping[str, Any]) -> str:
    """None and empty values left out; lists comma-separated (the API takes either form)."""
    pairs = []
    for name, value in params.items():
        if value is None or value == [] or value == ():
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        pairs.append((name, str(value)))
    return urllib.parse.urlencode(pairs)


class Client:
    def __init__(self, url: str = DEFAULT_URL, key: Optional[str] = None,
                 timeout: float = TIMEOUT_SECONDS):
        self.base = normalize_base_url(url)
        self.key = key or None
        self.timeout = timeout
        host = urllib.parse.urlsplit(self.base).hostname or ""
        # A proxy from the environment would be asked for the local host too.
        handlers = [urllib.request.ProxyHandler({})] if host in _LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)

    def request(self, method: str, path: str, query: Optional[Mapping[str, Any]] = None,
                body: Any = None) -> Any:
        """The answer's JSON (None for an empty body); ApiError for a status of 400 or more,
        ConnectionFailed when nothing answers."""
        url = f"{self.base}/api/{path.lstrip('/')}"
        if query:
            encoded = query_string(query)
            if encoded:
                url = f"{url}?{encoded}"
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.key:
            headers[KEY_HEADER] = self.key
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._opener.open(req, timeout=self.timeout) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            raise ApiError(exc.code, method, url, _decode(raw)) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ConnectionFailed(self.base, _reason(exc)) from None
        decoded = _decode(raw)
        if raw and not isinstance(decoded, (dict, list)):
            raise ApiError(status, method, url,
                           {"error": f"the answer is not JSON: {str(decoded)[:200]}"})
        return decoded

    # -- the routes -----------------------------------------------------------------------
    def submit(self, job_type: str, parameters: dict) -> dict:
        return self.request("POST", f"jobs/submit/{_segment(job_type)}", body=parameters)

    def status(self, job_id: str) -> dict:
        return self.request("GET", f"jobs/status/{_segment(job_id)}")

    def list_jobs(self, filters: Mapping[str, Any]) -> dict:
        return self.request("GET", "jobs", query=filters)

    def summary(self, filters: Mapping[str, Any]) -> dict:
        return self.request("GET", "jobs/summary", query=filters)

    def tasks(self, job_id: str, filters: Mapping[str, Any]) -> dict:
        return self.request("GET", f"jobs/{_segment(job_id)}/tasks", query=filters)

    def cancel(self, job_id: str, reason: Optional[str] = None) -> dict:
        return self.request("POST", f"jobs/{_segment(job_id)}/cancel",
                            body={"reason": reason} if reason else {})

    def rerun(self, job_id: str, from_start: bool = False) -> dict:
        return self.request("POST", f"jobs/{_segment(job_id)}/rerun",
                            body={"from": "start"} if from_start else {})

    def purge(self, job_id: str) -> Any:
        return self.request("DELETE", f"jobs/{_segment(job_id)}")

    def bulk(self, action: str, body: dict) -> dict:
        """POST /api/jobs/{cancel,rerun,purge}: filters and dry_run in the body."""
        return self.request("POST", f"jobs/{action}", body=body)

    def pages(self, path_kind: str, filters: Mapping[str, Any], job_id: str = "",
              ) -> Iterable[dict]:
        """Every page of the job list ("jobs") or a job's tasks ("tasks"), following
        continuation tokens."""
        query = dict(filters)
        while True:
            page = (self.list_jobs(query) if path_kind == "jobs"
                    else self.tasks(job_id, query))
            yield page
            token = page.get("continuation_token")
            if not token:
                return
            query["continuation_token"] = token


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text
