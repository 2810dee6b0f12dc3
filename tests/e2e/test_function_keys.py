"""Function keys on the local host (LOCAL_CHECK_KEYS): off by default, like func start; on,
each auth level is checked as Azure checks it, from x-functions-key or ?code=."""

from __future__ import annotations

import http.client
import json

import azure.functions as func
import pytest

from config import reset_settings
from local_host import LocalHost
from local_host.host import LocalHostError

FUNCTION_KEY = "function-key-0123"
MASTER_KEY = "master-key-4567"


def get(host, path: str, headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=30)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    body = json.loads(resp.read() or b"{}")
    conn.close()
    return resp.status, body


@pytest.fixture
def keys_on(monkeypatch):
    monkeypatch.setenv("LOCAL_CHECK_KEYS", "true")
    monkeypatch.setenv("LOCAL_FUNCTION_KEY", FUNCTION_KEY)
    monkeypatch.setenv("LOCAL_MASTER_KEY", MASTER_KEY)
    reset_settings()
    yield
    monkeypatch.delenv("LOCAL_CHECK_KEYS")
    reset_settings()


def levels_app() -> func.FunctionApp:
    """One route per auth level."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    for name, level in (("open", func.AuthLevel.ANONYMOUS), ("keyed", func.AuthLevel.FUNCTION),
                        ("admin_only", func.AuthLevel.ADMIN)):
        def handler(req: func.HttpRequest, _name: str = name) -> func.HttpResponse:
            return func.HttpResponse(json.dumps({"route": _name}), mimetype="application/json")
        handler.__name__ = name
        app.route(route=f"levels/{name}", methods=["GET"], auth_level=level)(handler)
    return app


LEVELS_APP = levels_app()


def test_keys_are_not_checked_by_default(database):
    with LocalHost(port=0, close_database=False, banner=False) as host:
        assert get(host, "/api/jobs")[0] == 200
        assert get(host, "/api/health/details")[0] == 200
    with LocalHost(LEVELS_APP, port=0, close_database=False, banner=False) as host:
        assert get(host, "/api/levels/admin_only")[0] == 200


@pytest.mark.parametrize("path, headers, status", [
    ("/api/levels/open", {}, 200),
    ("/api/levels/keyed", {}, 401),
    ("/api/levels/keyed", {"x-functions-key": "wrong"}, 401),
    ("/api/levels/keyed", {"x-functions-key": FUNCTION_KEY}, 200),
    ("/api/levels/keyed", {"X-Functions-Key": MASTER_KEY}, 200),
    (f"/api/levels/keyed?code={FUNCTION_KEY}", {}, 200),
    ("/api/levels/keyed?code=wrong", {}, 401),
    ("/api/levels/admin_only", {}, 401),
    ("/api/levels/admin_only", {"x-functions-key": FUNCTION_KEY}, 401),
    (f"/api/levels/admin_only?code={FUNCTION_KEY}", {}, 401),
    ("/api/levels/admin_only", {"x-functions-key": MASTER_KEY}, 200),
    (f"/api/levels/admin_only?code={MASTER_KEY}", {}, 200),
])
def test_each_auth_level_is_checked_when_asked(keys_on, path, headers, status):
    with LocalHost(LEVELS_APP, port=0, close_database=False, banner=False) as host:
        code, body = get(host, path, headers)
    assert code == status, body
    if status == 401:
        assert "key" in body["error"]


def test_the_apps_routes_need_the_function_key(keys_on, database):
    with LocalHost(port=0, close_database=False, banner=False) as host:
        assert get(host, "/api/health")[0] == 200  # anonymous
        for path in ("/api/jobs", "/api/jobs/summary", "/api/health/details",
                     "/api/jobs/status/" + "a" * 64, "/api/openapi.json"):
            code, body = get(host, path)
            assert code == 401, (path, body)
        assert get(host, "/api/jobs", {"x-functions-key": FUNCTION_KEY})[0] == 200
        # ?code= reaches the function too, and is not taken for a filter
        code, body = get(host, f"/api/jobs?code={FUNCTION_KEY}&limit=5")
        assert code == 200 and body["jobs"] == []
        code, body = get(host, f"/api/jobs/summary?code={MASTER_KEY}")
        assert code == 200 and body["total"] == 0


def test_checking_keys_without_them_refuses_to_start(monkeypatch, database):
    monkeypatch.setenv("LOCAL_CHECK_KEYS", "true")
    monkeypatch.delenv("LOCAL_FUNCTION_KEY", raising=False)
    monkeypatch.setenv("LOCAL_MASTER_KEY", MASTER_KEY)
    reset_settings()
    with pytest.raises(LocalHostError, match="LOCAL_FUNCTION_KEY is not set"):
        LocalHost(port=0, close_database=False, banner=False).start()
    reset_settings()
