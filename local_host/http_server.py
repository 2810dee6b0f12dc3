"""The HTTP side: the app's httpTrigger functions at /api/<route> on loopback, each call
a real azure.functions.HttpRequest in and HttpResponse out."""

from __future__ import annotations

import hmac
import json
import logging
import re
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func

from .functions import FunctionSpec, invoke

logger = logging.getLogger("local_host.http")

ROUTE_PREFIX = "api"
MAX_BODY_BYTES = 16 * 1024 * 1024
_PARAM = re.compile(r"\{([^}]+)\}")


class BodyTooLarge(Exception):
    pass


@dataclass(frozen=True)
class Route:
    spec: FunctionSpec
    pattern: re.Pattern
    params: tuple[str, ...]

    @classmethod
    def of(cls, spec: FunctionSpec) -> "Route":
        parts, params, pos = [], [], 0
        for match in _PARAM.finditer(spec.route):
            parts.append(re.escape(spec.route[pos:match.start()]))
            # {name} or {name:constraint} is one path segment (constraints are not
            # checked); {*name} is the rest of the path.
            name = match.group(1).split(":")[0].rstrip("?")
            parts.append("(.*)" if name.startswith("*") else "([^/]+)")
            params.append(name.lstrip("*"))
            pos = match.end()
        parts.append(re.escape(spec.route[pos:]))
        prefix = f"/{ROUTE_PREFIX}/" if ROUTE_PREFIX else "/"
        pattern = re.compile(re.escape(prefix) + "".join(parts) + "/?", re.IGNORECASE)
        return cls(spec, pattern, tuple(params))


class Router:
    def __init__(self, specs: Sequence[FunctionSpec]):
        self.routes = [Route.of(s) for s in specs]

    def match(self, method: str, path: str) -> tuple[Optional[Route], dict[str, str], list[str]]:
        """(route, route params, allowed methods); route None with allowed methods: the
        path exists but not for this method; neither: no such path."""
        allowed: list[str] = []
        for route in self.routes:
            found = route.pattern.fullmatch(path)
            if not found:
                continue
            methods = route.spec.methods
            if methods is None or method in methods:
                return route, dict(zip(route.params, map(unquote, found.groups()))), []
            allowed.extend(m for m in methods if m not in allowed)
        return None, {}, allowed


def query_params(query: str) -> dict[str, str]:
    """The query as the Functions host gives it to a function: a parameter given more
    than once has its values joined with commas (?status=a&status=b: "a,b")."""
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        params[name] = f"{params[name]},{value}" if name in params else value
    return params


def _json(status: int, payload: dict[str, Any], headers: Optional[dict] = None):
    return func.HttpResponse(json.dumps(payload), status_code=status, headers=headers,
                             mimetype="application/json", charset="utf-8")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "local_host"
    timeout = 120  # an idle keep-alive connection does not hold a thread for ever
    # TCP_NODELAY: the headers and the body go out in two sends; with Nagle's algorithm
    # the body waited for the client's delayed ACK, about 40 ms per keep-alive request.
    disable_nagle_algorithm = True
    server: "LocalHttpServer"

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, made-up ones) is routed too: a 405 naming the allowed
        # methods, or a 404, never the base class's 501 page.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def _dispatch(self) -> None:
        started = time.monotonic()
        try:
            body = self._read_body()
        except BodyTooLarge as exc:
            # The rest of the body is never read, so the connection cannot be reused.
            self.close_connection = True
            self._send(_json(413, {"error": str(exc), "limit_bytes": MAX_BODY_BYTES}), started)
            return
        except ValueError as exc:
            self.close_connection = True
            self._send(_json(400, {"error": str(exc)}), started)
            return
        split = urlsplit(self.path)
        route, route_params, allowed = self.server.router.match(self.command, split.path)
        if route is None:
            if allowed:
                response = _json(405, {"error": f"Method {self.command} is not allowed for "
                                                f"{split.path}", "allowed_methods": allowed},
                                 headers={"Allow": ", ".join(allowed)})
            else:
                response = _json(404, {"error": f"No function is bound to {split.path}"})
            self._send(response, started)
            return
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        refused = self.server.keys.refuse(route.spec.auth_level, headers, split.query)
        if refused is not None:
            self._send(_json(401, {"error": refused}), started)
            return
        request = func.HttpRequest(
            self.command, f"http://{self.headers.get('Host') or self.server.authority}"
                          f"{self.path}",
            headers=headers, params=query_params(split.query),
            route_params=route_params, body=body,
        )
        try:
            result = invoke(route.spec, request, "This function was called by an HTTP request")
        except Exception as exc:  # logged by invoke; the caller gets a 500 naming it
            response = _json(500, {"error": f"Function '{route.spec.name}' failed: "
                                            f"{type(exc).__name__}; see the host log"})
        else:
            try:
                response = self._as_response(route.spec, result)
            except TypeError as exc:
                logger.error("%s", exc)
                response = _json(500, {"error": str(exc)})
        self._send(response, started)

    @staticmethod
    def _as_response(spec: FunctionSpec, result: Any) -> func.HttpResponse:
        if isinstance(result, func.HttpResponse):
            return result
        if isinstance(result, (str, bytes)):
            return func.HttpResponse(result)
        if result is None:
            return func.HttpResponse(status_code=204)
        raise TypeError(f"function {spec.name} returned {type(result).__name__}, "
                        "not an HttpResponse")

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        raw = self.headers.get("Content-Length")
        if not raw:
            return b""
        try:
            length = int(raw)
        except ValueError:
            raise ValueError(f"Invalid Content-Length: {raw[:40]}") from None
        if length < 0:
            raise ValueError(f"Invalid Content-Length: {length}")
        if length > MAX_BODY_BYTES:
            raise BodyTooLarge(f"Request body is {length} bytes; the limit is "
                               f"{MAX_BODY_BYTES}")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise ValueError("Malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise BodyTooLarge(f"Request body exceeds the limit of {MAX_BODY_BYTES} bytes")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _send(self, response: func.HttpResponse, started: float) -> None:
        body = response.get_body() or b""
        self.send_response(response.status_code)
        names = set()
        for name, value in response.headers.items():
            if name.lower() in ("content-length", "transfer-encoding", "connection"):
                continue
            names.add(name.lower())
            self.send_header(name, value)
        if "content-type" not in names and (body or response.status_code not in (204, 304)):
            content_type = response.mimetype or "text/plain"
            if response.charset:
                content_type += f"; charset={response.charset}"
            self.send_header("Content-Type", content_type)
        if self.close_connection:
            self.send_header("Connection", "close")
        no_body = self.command == "HEAD" or response.status_code in (204, 304)
        self.send_header("Content-Length", "0" if response.status_code in (204, 304)
                         else str(len(body)))
        self.end_headers()
        if not no_body:
            self.wfile.write(body)
        logger.info("%s %s -> %d (%d ms)", self.command, self.path, response.status_code,
                    (time.monotonic() - started) * 1000)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass  # _send logs each request with its duration

    def log_message(self, format: str, *args: Any) -> None:
        # Only the base class's own notes (malformed requests, idle timeouts) come here.
        logger.debug("%s: %s", self.address_string(), format % args)


class KeyCheck:
    """Function keys as the Functions host checks them, when asked (LOCAL_CHECK_KEYS):
    a FUNCTION level route takes the function key or the master key, an ADMIN level
    route only the master key, from the x-functions-key header or the code query
    parameter; an ANONYMOUS route takes anything. Off: every request passes, as with
    func start."""

    def __init__(self, function_key: Optional[str] = None, master_key: Optional[str] = None):
        self.enabled = function_key is not None or master_key is not None
        self.function_key, self.master_key = function_key, master_key

    @classmethod
    def from_settings(cls) -> "KeyCheck":
        from config import get_settings

        settings = get_settings()
        if not settings.local_check_keys:
            return cls()
        missing = [name for name, value in (("LOCAL_FUNCTION_KEY", settings.local_function_key),
                                            ("LOCAL_MASTER_KEY", settings.local_master_key))
                   if not value]
        if missing:
            raise ValueError(f"LOCAL_CHECK_KEYS is true but {' and '.join(missing)} "
                             f"{'is' if len(missing) == 1 else 'are'} not set")
        return cls(settings.local_function_key, settings.local_master_key)

    def refuse(self, auth_level: str, headers: dict[str, str], query: str) -> Optional[str]:
        """None when the request may go on; else why not (a 401)."""
        level = auth_level.lower()
        if not self.enabled or level == "anonymous":
            return None
        given = next((v for k, v in headers.items() if k.lower() == "x-functions-key"), None)
        if given is None:
            given = query_params(query).get("code")
        if not given:
            return (f"This function's auth level is {level}: pass a key in the "
                    "x-functions-key header or the code query parameter")
        accepted = [self.master_key] if level == "admin" else [self.function_key,
                                                               self.master_key]
        if any(k and hmac.compare_digest(given.encode(), k.encode()) for k in accepted):
            return None
        return (f"The key is not valid for this function (auth level {level}"
                + (": only the master key" if level == "admin" else "") + ")")


class LocalHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, router: Router, port: int, keys: Optional[KeyCheck] = None):
        self.router = router
        self.keys = keys or KeyCheck()
        super().__init__(("127.0.0.1", port), _Handler)
        self.authority = f"127.0.0.1:{self.server_address[1]}"
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (BrokenPipeError, ConnectionResetError)):
            logger.debug("client %s went away", client_address)
        else:
            logger.exception("error handling a request from %s", client_address)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="http-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
        self.server_close()
