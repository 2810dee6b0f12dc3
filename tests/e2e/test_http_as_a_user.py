"""The job API over real HTTP, as an operator drives it: the local host on a loopback
port, raw request bodies, every bad input of the API getting its status code."""

from __future__ import annotations

import http.client
import json
import time

import pytest

from local_host import LocalHost


@pytest.fixture
def host(database):
    with LocalHost(port=0, close_database=False, banner=False) as running:
        yield running


def call(host, method, path, body: bytes | None = None, content_type="application/json"):
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=15)
    headers = {"Content-Type": content_type} if content_type else {}
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    payload = json.loads(resp.read() or b"{}")
    conn.close()
    return resp.status, payload


def wait_until_ended(host, job_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, job = call(host, "GET", f"/api/jobs/status/{job_id}")
        assert code == 200
        if job["status"] in ("completed", "failed", "completed_with_errors"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end: {job['status']}")


def test_submit_run_and_resubmit(host):
    # Given a running host, when hello_world is submitted, then it answers 201 at once
    code, created = call(host, "POST", "/api/jobs/submit/hello_world", b'{"n": 5}')
    assert code == 201 and created["status"] == "queued" and created["idempotent"] is False
    job = wait_until_ended(host, created["job_id"])
    assert job["status"] == "completed"
    assert [(s["total"], s["completed"]) for s in job["stages"]] == [(5, 5), (5, 5)]
    assert len(job["result_data"]["greetings"]) == 5
    # When the same parameters come again, then the same job answers with its result
    code, again = call(host, "POST", "/api/jobs/submit/hello_world", b'{"n": 5}')
    assert code == 200 and again["idempotent"] is True
    assert again["job_id"] == created["job_id"] and again["status"] == "completed"
    assert len(again["result_data"]["replies"]) == 5


@pytest.mark.parametrize("path, body, content_type, status, says", [
    ("/api/jobs/submit/nope", b"{}", "application/json", 404, "Available: hello_world"),
    ("/api/jobs/submit/hello_world", b'{"n": ', "application/json", 400, "not valid JSON"),
    ("/api/jobs/submit/hello_world", b'{"n": NaN}', "application/json", 400, "NaN"),
    ("/api/jobs/submit/hello_world", b'{"n": Infinity}', "application/json", 400, "Infinity"),
    ("/api/jobs/submit/hello_world", b'{"message": "\xc3\x28"}', "application/json", 400,
     "UTF-8"),
    ("/api/jobs/submit/hello_world", b'{"message": "\\udc00"}', "application/json", 400,
     "surrogate"),
    ("/api/jobs/submit/hello_world", b'{"message": "a\\u0000"}', "application/json", 400, "NUL"),
    ("/api/jobs/submit/hello_world", b"[1]", "application/json", 400, "JSON object"),
    ("/api/jobs/submit/hello_world", b'{"n": "3"}', "application/json", 400,
     "'n' must be an integer"),
    ("/api/jobs/submit/hello_world", b'{"n": 5000}', "application/json", 400, "<= 1000"),
    ("/api/jobs/submit/hello_world", b'{"m": 1}', "application/json", 400, "Unknown parameter"),
    ("/api/jobs/submit/hello_world", b'{"n": 2}', "text/plain", 415, "application/json"),
    ("/api/jobs/submit/hello_world", b'{"message": "' + b"x" * 1_100_000 + b'"}',
     "application/json", 413, "limit"),
    ("/api/jobs/status/xyz", None, None, 400, "64 lowercase hex"),
    ("/api/jobs/status/" + "a" * 64, None, None, 404, "No job"),
])
def test_bad_input_gets_its_status_and_leaves_nothing(host, database, path, body, content_type,
                                                     status, says):
    method = "GET" if "/status/" in path else "POST"
    code, payload = call(host, method, path, body, content_type)
    assert code == status, payload
    assert says in payload["error"]
    with database.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM app.jobs").fetchone()["n"] == 0
        assert conn.execute("SELECT count(*) AS n FROM app.queue_messages").fetchone()["n"] == 0
