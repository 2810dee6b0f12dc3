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

JOB_STATUSES = ["queued", "processing", "completed", "failed", "completed_with_errors",
                "cancelled"]


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


def test_a_new_attempt_has_its_own_timeline(host):
    params = {"n": 1, "failure_rate": 1.0, "message": "again"}
    first = wait_ended(host, submit(host, params))
    assert first["status"] == "failed"
    code, again = post(host, "/api/jobs/submit/hello_world", params)
    assert code == 201 and again["attempt"] == 2
    second = wait_ended(host, again["job_id"])
    assert second["attempt"] == 2 and second["created_at"] == first["created_at"]
    assert when(second["queued_at"]) >= when(first["finished_at"])
    assert when(second["started_at"]) >= when(second["queued_at"])
    assert when(second["finished_at"]) > when(first["finished_at"])
    code, page = get(host, "/api/jobs", limit=1)
    assert page["jobs"][0]["attempt"] == 2
    assert page["jobs"][0]["queued_at"] == second["queued_at"]


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


# -- GET /api/jobs ------------------------------------------------------------------------
def submit_many(host, count: int, tag: str, **params) -> list[str]:
    return [submit(host, {"n": 1, "message": f"{tag} {i}", **params}) for i in range(count)]


def test_the_list_pages_through_more_jobs_than_a_page_newest_first(host):
    ids = submit_many(host, 23, "page")
    rows = all_pages(host, "/api/jobs", "jobs", limit=5)
    assert [r["job_id"] for r in rows] == ids[::-1]  # each once, newest first
    keys = [(r["created_at"], r["job_id"]) for r in rows]
    assert keys == sorted(keys, reverse=True)
    code, first = get(host, "/api/jobs")  # default limit 50: one page
    assert code == 200 and len(first["jobs"]) == 23 and first["continuation_token"] is None
    row = first["jobs"][0]
    assert set(row) == {"job_id", "job_type", "status", "stage", "total_stages", "attempt",
                        "stages", "created_at", "updated_at", "queued_at", "started_at",
                        "finished_at", "duration_seconds", "error"}
    assert row["job_type"] == "hello_world" and row["total_stages"] == 2
    assert [s["name"] for s in row["stages"]] == ["greeting", "reply"]
    for stage in row["stages"]:
        assert set(stage) == {"stage", "name", "total", "queued", "processing", "completed",
                              "failed", "cancelled"}


def test_a_token_survives_new_submits(host):
    ids = submit_many(host, 12, "before")
    code, page = get(host, "/api/jobs", limit=5)
    assert [r["job_id"] for r in page["jobs"]] == ids[::-1][:5]
    newer = submit_many(host, 3, "after")
    rest = all_pages(host, "/api/jobs", "jobs", limit=5,
                     continuation_token=page["continuation_token"])
    assert [r["job_id"] for r in rest] == ids[::-1][5:]
    assert not set(newer) & {r["job_id"] for r in rest}
    code, top = get(host, "/api/jobs", limit=3)
    assert [r["job_id"] for r in top["jobs"]] == newer[::-1]


def test_the_list_filters_by_status_type_times_and_id_prefix(host):
    done = submit_many(host, 4, "ok")
    failed = submit_many(host, 3, "bad", failure_rate=1.0)
    for job_id in done + failed:
        wait_ended(host, job_id)
    later = submit_many(host, 2, "late")
    for job_id in later:
        wait_ended(host, job_id)

    def ids(**query):
        return [r["job_id"] for r in all_pages(host, "/api/jobs", "jobs", limit=2, **query)]

    assert ids(status="failed") == failed[::-1]
    assert ids(status="completed") == (done + later)[::-1]
    everything = (done + failed + later)[::-1]
    assert ids(status="failed,completed") == everything            # comma-separated
    assert ids(status=["completed", "failed"]) == everything        # repeated
    assert ids(status="queued") == []
    assert ids(job_type="hello_world") == everything
    assert ids(job_type="summarize_container") == []
    assert ids(job_type="hello_world", status="failed") == failed[::-1]

    code, job = get(host, f"/api/jobs/status/{failed[0]}")
    middle = job["created_at"]
    assert ids(created_after=middle) == (failed[1:] + later)[::-1]   # strictly after
    assert ids(created_before=middle) == done[::-1]                  # strictly before
    assert ids(created_after=middle, created_before=when(middle).replace(
        tzinfo=None).isoformat()) == []                               # no zone: UTC
    # +02:00 unencoded in the query arrives as a space; it still means +02:00
    shifted = when(middle).astimezone(timezone(timedelta(hours=2))).isoformat()
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=30)
    conn.request("GET", "/api/jobs?limit=100&created_before=" + shifted)
    assert [r["job_id"] for r in json.loads(conn.getresponse().read())["jobs"]] == done[::-1]
    conn.close()

    code, last = get(host, f"/api/jobs/status/{failed[-1]}")
    assert set(ids(updated_after=last["updated_at"])) <= set(later + done + failed)
    assert set(later) <= set(ids(updated_after=last["updated_at"]))

    target = failed[1]
    for length in (1, 6, 64):
        found = ids(id_prefix=target[:length])
        assert target in found and all(i.startswith(target[:length]) for i in found)
        assert found == [i for i in everything if i.startswith(target[:length])]
    assert ids(id_prefix=target[:10].upper()) == [target]

    code, page = get(host, "/api/jobs", status="failed", limit=1)
    row = page["jobs"][0]
    assert row["status"] == "failed" and row["error"] and "\n" not in row["error"]
    assert row["finished_at"] is not None and row["duration_seconds"] >= 0
    assert row["stages"][0]["failed"] >= 1


@pytest.mark.parametrize("query, parameter, says", [
    ({"status": "done"}, "status", "allowed are queued, processing, completed, failed, "
                                   "completed_with_errors, cancelled"),
    ({"status": "failed,nope"}, "status", "Unknown status 'nope'"),
    ({"job_type": "no_such_job"}, "job_type", "allowed are "),
    ({"created_after": "yesterday"}, "created_after", "ISO 8601"),
    ({"created_before": "2026-13-01"}, "created_before", "ISO 8601"),
    ({"updated_after": "1"}, "updated_after", "ISO 8601"),
    ({"limit": "0"}, "limit", "from 1 to 500"),
    ({"limit": "501"}, "limit", "from 1 to 500"),
    ({"limit": "ten"}, "limit", "from 1 to 500"),
    ({"id_prefix": "xyz"}, "id_prefix", "hex"),
    ({"id_prefix": "a" * 65}, "id_prefix", "hex"),
    ({"continuation_token": "not a token"}, "continuation_token", "Malformed"),
    ({"continuation_token": base64.urlsafe_b64encode(b'{"k": [1], "f": "x"}').decode()},
     "continuation_token", "Malformed"),
    ({"sort": "created_at"}, "sort", "Unknown query parameter"),
])
def test_bad_list_parameters_are_400_naming_them(host, query, parameter, says):
    for path in ("/api/jobs", "/api/jobs/summary"):
        if path.endswith("summary") and parameter in ("limit", "continuation_token"):
            continue
        code, body = get(host, path, **query)
        assert code == 400, body
        assert body["parameter"] == parameter and says in body["error"], body


def test_a_token_used_with_other_filters_is_400(host):
    submit_many(host, 4, "token")
    code, page = get(host, "/api/jobs", limit=2, job_type="hello_world")
    token = page["continuation_token"]
    assert token
    code, body = get(host, "/api/jobs", limit=2, continuation_token=token)
    assert code == 400 and body["parameter"] == "continuation_token"
    assert "other filters" in body["error"]
    # the limit may change between pages
    code, body = get(host, "/api/jobs", limit=10, job_type="hello_world",
                     continuation_token=token)
    assert code == 200 and len(body["jobs"]) == 2


# -- GET /api/jobs/summary ----------------------------------------------------------------
def test_the_summary_counts_by_status_and_type(host):
    done = submit_many(host, 3, "sum ok")
    failed = submit_many(host, 2, "sum bad", failure_rate=1.0)
    for job_id in done + failed:
        wait_ended(host, job_id)
    code, summary = get(host, "/api/jobs/summary")
    assert code == 200
    assert summary == {"total": 5, "by_status": {
        "queued": 0, "processing": 0, "completed": 3, "failed": 2,
        "completed_with_errors": 0, "cancelled": 0}, "by_job_type": {"hello_world": 5}}
    code, only = get(host, "/api/jobs/summary", status="failed")
    assert only["total"] == 2 and only["by_status"]["failed"] == 2
    assert only["by_status"]["completed"] == 0
    code, job = get(host, f"/api/jobs/status/{failed[0]}")
    code, after = get(host, "/api/jobs/summary", created_after=job["created_at"])
    assert after["total"] == 1
    code, none = get(host, "/api/jobs/summary", job_type="list_container_contents")
    assert none["total"] == 0 and none["by_job_type"] == {}


# -- GET /api/jobs/{job_id}/tasks ---------------------------------------------------------
def test_a_job_with_thousands_of_tasks_pages_through_them(host):
    job_id = submit(host, {"n": 1000, "message": "many"})
    job = wait_ended(host, job_id, timeout=120)
    assert job["status"] == "completed"
    tasks = all_pages(host, f"/api/jobs/{job_id}/tasks", "tasks", limit=300)
    assert len(tasks) == 2000 == len({t["task_id"] for t in tasks})
    assert [(t["stage"], t["task_index"]) for t in tasks] == [
        (s, i) for s in (1, 2) for i in range(1000)]
    first = tasks[0]
    assert set(first) == {"task_id", "task_type", "stage", "task_index", "status", "retries",
                          "started_at", "finished_at", "duration_seconds", "error"}
    assert first["status"] == "completed" and first["retries"] == 0
    assert first["error"] is None
    assert when(first["started_at"]) <= when(first["finished_at"])
    assert first["duration_seconds"] >= 0

    second = all_pages(host, f"/api/jobs/{job_id}/tasks", "tasks", stage=2, limit=500)
    assert [t["task_index"] for t in second] == list(range(1000))
    assert all(t["stage"] == 2 for t in second)
    code, page = get(host, f"/api/jobs/{job_id}/tasks", stage=1, limit=2,
                     include="parameters,result")
    assert code == 200 and len(page["tasks"]) == 2
    assert isinstance(page["tasks"][0]["parameters"], dict)
    assert page["tasks"][0]["result"] is not None
    code, page = get(host, f"/api/jobs/{job_id}/tasks", include=["result"], limit=1)
    assert "result" in page["tasks"][0] and "parameters" not in page["tasks"][0]
    code, page = get(host, f"/api/jobs/{job_id}/tasks", status="failed")
    assert code == 200 and page["tasks"] == [] and page["continuation_token"] is None


def test_a_failed_jobs_tasks_by_status(host):
    job_id = submit(host, {"n": 3, "failure_rate": 1.0, "message": "tasks fail"})
    wait_ended(host, job_id)
    failed = all_pages(host, f"/api/jobs/{job_id}/tasks", "tasks", status="failed")
    assert failed and all(t["status"] == "failed" and t["error"] for t in failed)
    assert all(t["finished_at"] is not None for t in failed)
    both = all_pages(host, f"/api/jobs/{job_id}/tasks", "tasks",
                     status=["failed", "cancelled"])
    assert {t["status"] for t in both} <= {"failed", "cancelled"} and len(both) >= len(failed)


@pytest.mark.parametrize("query, parameter", [
    ({"stage": "3"}, "stage"), ({"stage": "-1"}, "stage"), ({"stage": "one"}, "stage"),
    ({"status": "done"}, "status"), ({"include": "everything"}, "include"),
    ({"limit": "1000"}, "limit"), ({"continuation_token": "%%%"}, "continuation_token"),
    ({"job_type": "hello_world"}, "job_type"),
])
def test_bad_task_parameters_are_400_naming_them(host, query, parameter):
    job_id = submit(host, {"n": 1, "message": "bad task query"})
    code, body = get(host, f"/api/jobs/{job_id}/tasks", **query)
    assert code == 400 and body["parameter"] == parameter, body


def test_task_tokens_belong_to_their_job_and_filters(host):
    one = submit(host, {"n": 4, "message": "tokens one"})
    two = submit(host, {"n": 4, "message": "tokens two"})
    wait_ended(host, one)
    code, page = get(host, f"/api/jobs/{one}/tasks", limit=2)
    token = page["continuation_token"]
    code, body = get(host, f"/api/jobs/{two}/tasks", continuation_token=token)
    assert code == 400 and body["parameter"] == "continuation_token"
    code, body = get(host, f"/api/jobs/{one}/tasks", stage=1, continuation_token=token)
    assert code == 400


def test_tasks_of_a_malformed_or_unknown_job(host):
    code, body = get(host, "/api/jobs/xyz/tasks")
    assert code == 400 and "64 lowercase hex" in body["error"]
    code, body = get(host, "/api/jobs/" + "a" * 64 + "/tasks")
    assert code == 404
