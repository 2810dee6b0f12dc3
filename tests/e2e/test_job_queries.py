"""The job API's read side over real HTTP on the local host, against the real PostgreSQL:
the status document's timeline, GET /api/jobs (filters, keyset pages, tokens), its
summary, and a job's tasks (GET /api/jobs/{job_id}/tasks)."""

from __future__ import annotations

import base64
import http.client
import json
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest

from local_host import LocalHost

from tests.e2e.host_calls import TERMINAL

JOB_STATUSES = ["queued", "processing", "completed", "failed", "completed_with_errors"]


@pytest.fixture
def host(database):
    with LocalHost(port=0, close_database=False, banner=False) as running:
        yield running


def get(host, path: str, **query) -> tuple[int, dict]:
    """GET path?query (a list value: the parameter repeated)."""
    if query:
        path += "?" + urlencode(query, doseq=True)
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=30)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = json.loads(resp.read() or b"{}")
    conn.close()
    return resp.status, body


def post(host, path: str, payload: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=30)
    conn.request("POST", path, body=json.dumps(payload).encode(),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    body = json.loads(resp.read() or b"{}")
    conn.close()
    return resp.status, body


def submit(host, params: dict, job_type: str = "hello_world") -> str:
    code, body = post(host, f"/api/jobs/submit/{job_type}", params)
    assert code == 201, body
    return body["job_id"]


def wait_ended(host, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, job = get(host, f"/api/jobs/status/{job_id}")
        assert code == 200, job
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end: {job['status']}")


def all_pages(host, path: str, rows: str, **query) -> list[dict]:
    found, token, pages = [], None, 0
    while True:
        params = dict(query, **({"continuation_token": token} if token else {}))
        code, page = get(host, path, **params)
        assert code == 200, page
        found.extend(page[rows])
        pages += 1
        token = page["continuation_token"]
        if token is None:
            return found
        assert pages < 1000


def when(value: str) -> datetime:
    return datetime.fromisoformat(value)


# -- the status document's timeline ---------------------------------------------------------
def test_the_status_document_has_the_jobs_and_each_stages_times(host):
    job_id = submit(host, {"n": 3, "message": "timeline"})
    job = wait_ended(host, job_id)
    assert job["status"] == "completed"
    queued, started, finished = (when(job[k]) for k in ("queued_at", "started_at",
                                                        "finished_at"))
    assert job["queued_at"].endswith("+00:00") and job["created_at"] == job["queued_at"]
    assert queued <= started <= finished
    assert job["duration_seconds"] == pytest.approx((finished - queued).total_seconds(),
                                                    abs=0.002)
    stages = job["stages"]
    assert [s["state"] for s in stages] == ["done", "done"]
    for stage in stages:
        begin, end = when(stage["started_at"]), when(stage["finished_at"])
        assert started <= begin <= end <= finished
        assert stage["duration_seconds"] == pytest.approx((end - begin).total_seconds(),
                                                          abs=0.002)
    assert when(stages[0]["finished_at"]) <= when(stages[1]["started_at"])
    # the fields the document had are all still there
    for key in ("job_id", "job_type", "status", "stage", "total_stages", "attempt",
                "parameters", "stage_results", "result_data", "error_details", "created_at",
                "updated_at", "tasks_failed", "stages"):
        assert key in job


def test_a_failed_jobs_timeline_ends_where_it_stopped(host):
    job = wait_ended(host, submit(host, {"n": 2, "failure_rate": 1.0, "message": "fails"}))
    assert job["status"] == "failed"
    assert job["finished_at"] is not None and job["duration_seconds"] >= 0
    first, second = job["stages"]
    assert first["state"] == "failed" and first["finished_at"] == job["finished_at"]
    assert second["state"] == "not run"
    assert second["started_at"] is None and second["duration_seconds"] is None


def test_a_queued_job_has_no_start_or_end_yet(database):
    # No host runs it: the job stays queued.
    from tests.http_calls import status, submit_json

    code, created = submit_json("hello_world", {"n": 1, "message": "waits"})
    assert code == 201
    code, job = status(created["job_id"])
    assert job["queued_at"] is not None
    assert job["started_at"] is None and job["finished_at"] is None
    assert job["duration_seconds"] is None
    assert all(s["started_at"] is None and s["finished_at"] is None for s in job["stages"])
