"""The local host itself: discovery from the app object, real HTTP, real queue delivery
semantics (abandon, dead-letter, lock renewal), timers, and the demo command."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest

from config import JOBS_QUEUE, TASKS_QUEUE, reset_settings
from infrastructure.queues import OutgoingMessage, set_queue
from infrastructure.queues.embedded import EmbeddedQueue
from local_host import LocalHost, LocalHostError
from local_host.settings import load_local_settings
from local_host.timers import CronSchedule

ROOT = Path(__file__).resolve().parents[2]


def request(method: str, url: str, payload=None) -> tuple[int, dict, dict]:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def wait_for(condition, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def host_for(app=None, **kwargs) -> LocalHost:
    return LocalHost(app=app, port=0, close_database=False, banner=False, **kwargs)


# Reads the app's functions in a fresh process: azure-functions allows one read per process.
PROBE = r"""
import json, function_app
print(json.dumps({f.get_function_name(): f.get_bindings_dict()["bindings"][0]
                  for f in function_app.app.get_functions()}, default=lambda v: v.value))
"""


def test_discovers_exactly_the_apps_functions():
    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    expected = json.loads(probe.stdout.strip().splitlines()[-1])
    host = host_for()
    assert {f.name: f.binding for f in host.functions} == expected
    routes = {f.name: (f.methods, f.route) for f in host.functions
              if f.trigger_type == "httpTrigger"}
    queues = {f.name: f.queue_name for f in host.functions
              if f.trigger_type == "serviceBusTrigger"}
    assert routes["health"] == (("GET",), "health")
    assert routes["submit"] == (("POST",), "jobs/submit/{job_type}")
    assert routes["status"] == (("GET",), "jobs/status/{job_id}")
    assert queues == {"process_job_message": JOBS_QUEUE, "process_task_message": TASKS_QUEUE,
                      "process_task_batch": TASKS_QUEUE}
    # A second host on the same app reuses what was read.
    assert [f.name for f in host_for().functions] == [f.name for f in host.functions]


def test_http_and_hello_world_end_to_end(database):
    with host_for() as host:
        code, body, _ = request("GET", f"{host.url}/api/health")
        assert code == 200, body

        code, body, _ = request("GET", f"{host.url}/api/no/such/route")
        assert code == 404 and "error" in body
        code, body, headers = request("GET", f"{host.url}/api/jobs/submit/hello_world")
        assert code == 405 and body["allowed_methods"] == ["POST"]
        assert headers["Allow"] == "POST"

        code, body, _ = request("POST", f"{host.url}/api/jobs/submit/hello_world",
                                {"n": 3, "message": "e2e"})
        assert code == 201, body
        status_url = f"{host.url}/api/jobs/status/{body['job_id']}"

        def finished():
            status = request("GET", status_url)[1]
            return status if status["status"] in ("completed", "failed") else None

        status = wait_for(finished, 20.0, "hello_world to finish")
        assert status["status"] == "completed", status
        assert [(s["total"], s["completed"]) for s in status["stages"]] == [(3, 3), (3, 3)]
        assert len(status["result_data"]["greetings"]) == 3
        assert len(status["result_data"]["replies"]) == 3


def test_http_requests_and_responses_are_the_real_azure_classes():
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    seen: list[func.HttpRequest] = []

    @app.route(route="items/{item_id}/files/{*path}", methods=["PUT"])
    def put_file(req: func.HttpRequest) -> func.HttpResponse:
        seen.append(req)
        return func.HttpResponse(b"stored", status_code=202, headers={"X-Item": "yes"})

    @app.route(route="boom", methods=["GET"])
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise ValueError("unexpected")

    with host_for(app) as host:
        req = urllib.request.Request(f"{host.url}/api/items/a%20b/files/x/y.txt?v=1&w=",
                                     data=b"payload", method="PUT",
                                     headers={"X-Test": "1"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert (resp.status, resp.read()) == (202, b"stored")
            assert resp.headers["X-Item"] == "yes"
            assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        code, body, _ = request("GET", f"{host.url}/api/boom")
        assert code == 500 and "ValueError" in body["error"]
    [got] = seen
    assert isinstance(got, func.HttpRequest) and got.method == "PUT"
    assert got.route_params == {"item_id": "a b", "path": "x/y.txt"}
    assert dict(got.params) == {"v": "1", "w": ""}
    assert got.get_body() == b"payload" and got.headers["x-test"] == "1"


def test_oversized_body_is_rejected_without_reading_it(database):
    with host_for() as host:
        conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=5)
        conn.putrequest("POST", "/api/jobs/submit/hello_world")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(17 * 1024 * 1024))
        conn.endheaders(b"{")
        resp = conn.getresponse()
        assert resp.status == 413
        assert json.loads(resp.read())["limit_bytes"] == 16 * 1024 * 1024
        conn.close()


def test_a_raising_function_is_abandoned_then_dead_lettered(database, queue):
    app = func.FunctionApp()
    deliveries: list[ServiceBusMessage] = []

    @app.service_bus_queue_trigger(arg_name="msg", queue_name="test-raises",
                                   connection="ServiceBusConnection")
    def always_raises(msg: func.ServiceBusMessage) -> None:
        deliveries.append(msg)
        raise RuntimeError("on purpose")

    with host_for(app):
        queue.send("test-raises", [OutgoingMessage(body='{"x": 1}', message_id="m-1")])
        wait_for(lambda: queue.counts("test-raises")["dead_lettered"] == 1, 10.0,
                 "the message to be dead-lettered")
    assert [m.delivery_count for m in deliveries] == [1, 2, 3]  # max delivery count 3
    first = deliveries[0]
    assert isinstance(first, ServiceBusMessage)
    assert first.get_body() == b'{"x": 1}' and first.message_id == "m-1"
    assert first.content_type == "application/json" and first.lock_token
    [dead] = queue.dead_letters("test-raises")
    assert dead["dead_letter_reason"] == "MaxDeliveryCountExceeded"


def test_lock_is_renewed_while_a_long_function_runs(database, monkeypatch):
    monkeypatch.setenv("LOCAL_TASK_CONCURRENCY", "3")
    reset_settings()
    short_lock = EmbeddedQueue(database, lock_seconds=1.0, max_delivery_count=5)
    set_queue(short_lock)
    app = func.FunctionApp()
    calls: list[int] = []
    done = threading.Event()

    @app.service_bus_queue_trigger(arg_name="msg", queue_name="test-slow",
                                   connection="ServiceBusConnection")
    def slow(msg: func.ServiceBusMessage) -> None:
        calls.append(msg.delivery_count)
        time.sleep(2.5)
        done.set()

    with host_for(app):
        short_lock.send("test-slow", [OutgoingMessage(body="{}")])
        assert done.wait(10.0)
        wait_for(lambda: not any(short_lock.counts("test-slow").values()), 5.0,
                 "the message to be completed")
        time.sleep(0.3)
    assert calls == [1]


def test_renewal_stops_at_max_auto_lock_renewal_duration(database):
    short_lock = EmbeddedQueue(database, lock_seconds=1.0, max_delivery_count=5)
    set_queue(short_lock)
    app = func.FunctionApp()
    calls: list[int] = []

    @app.service_bus_queue_trigger(arg_name="msg", queue_name="test-overrun",
                                   connection="ServiceBusConnection")
    def overruns(msg: func.ServiceBusMessage) -> None:
        calls.append(msg.delivery_count)
        time.sleep(2.0 if msg.delivery_count == 1 else 0.0)

    with host_for(app, max_lock_renewal=0.5):
        short_lock.send("test-overrun", [OutgoingMessage(body="{}")])
        wait_for(lambda: len(calls) == 2, 5.0, "a second delivery")
    assert calls == [1, 2]


def test_serve_stops_cleanly_on_sigterm(database_url, tmp_path):
    env = {**os.environ, "DATABASE_URL": database_url, "QUEUE_BACKEND": "embedded",
           # Its own Azurite, on a free port (tests/e2e/test_local_storage.py checks it).
           "AZURITE_PORT": "0", "AZURITE_LOCATION": str(tmp_path / "azurite")}
    with subprocess.Popen([sys.executable, "-m", "local_host", "serve", "--port", "0"],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        try:
            url = next((line.split()[2] for line in proc.stdout
                        if line.startswith("Listening on ")), None)
            assert url, proc.stderr.read()
            assert request("GET", f"{url}/api/health")[0] == 200
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
            assert "local host stopped" in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()


def test_timer_runs_on_startup_and_on_schedule(database):
    app = func.FunctionApp()
    fired: list[TimerRequest] = []

    @app.timer_trigger(schedule="* * * * * *", arg_name="timer", run_on_startup=True)
    def tick(timer: func.TimerRequest) -> None:
        fired.append(timer)

    with host_for(app):
        wait_for(lambda: len(fired) >= 2, 5.0, "the timer to fire twice")
    assert isinstance(fired[0], TimerRequest) and fired[0].past_due is False


def test_ncrontab_schedule():
    after = datetime(2024, 2, 28, 23, 59, 58, tzinfo=timezone.utc)
    assert CronSchedule("*/5 * * * * *").next_after(after) == \
        datetime(2024, 2, 29, tzinfo=timezone.utc)
    assert CronSchedule("0 30 9 * * 1-5").next_after(after) == \
        datetime(2024, 2, 29, 9, 30, tzinfo=timezone.utc)  # a Thursday
    assert CronSchedule("0 0 0 29 2 *").next_after(after) == \
        datetime(2024, 2, 29, tzinfo=timezone.utc)
    assert CronSchedule("15,45 * * * * 0,7").next_after(after) == \
        datetime(2024, 3, 3, 0, 0, 15, tzinfo=timezone.utc)  # the next Sunday
    with pytest.raises(ValueError):
        CronSchedule("0 */5 * * *")


def test_local_settings_values_apply_but_the_environment_wins(tmp_path):
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {
        "A_SETTING": "from file", "B_SETTING": "from file", "C_FLAG": True}}))
    environ = {"B_SETTING": "from env"}
    assert load_local_settings(path, environ) == ["A_SETTING", "C_FLAG"]
    assert environ == {"A_SETTING": "from file", "B_SETTING": "from env", "C_FLAG": "true"}


def test_refuses_to_drive_service_bus(monkeypatch):
    monkeypatch.setenv("QUEUE_BACKEND", "servicebus")
    reset_settings()
    app = func.FunctionApp()

    @app.service_bus_queue_trigger(arg_name="msg", queue_name="q", connection="Conn")
    def consume(msg: func.ServiceBusMessage) -> None:
        pass

    try:
        with pytest.raises(LocalHostError, match="only the embedded queue"):
            host_for(app).start()
    finally:
        monkeypatch.delenv("QUEUE_BACKEND")
        reset_settings()


def test_demo_command_runs_to_completion(database_url, tmp_path):
    env = {**os.environ, "DATABASE_URL": database_url, "QUEUE_BACKEND": "embedded",
           "AZURITE_PORT": "0", "AZURITE_LOCATION": str(tmp_path / "azurite")}
    env.pop("ServiceBusConnection", None)
    result = subprocess.run(
        [sys.executable, "-m", "local_host", "demo"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # the geojobs command line submits and watches it
    assert "$ geojobs submit hello_world --param n=5" in result.stdout
    assert "submitted hello_world: job " in result.stdout
    assert "stage 2 reply: 5/5 done" in result.stdout
    assert "completed" in result.stdout
    assert '"greetings"' in result.stdout
