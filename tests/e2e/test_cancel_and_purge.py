"""Cancel and purge over real HTTP on the local host (issue 17, points 1 and 4): a job
cancelled while its handlers run ends `cancelled` with nothing left queued or running and
no stage opened after; its parameters run again as a new attempt; a purged job's records
are gone and its parameters make a new job at once (new message ids); retention purges
old finished jobs."""

from __future__ import annotations

import time

import pytest

from config import reset_settings
from core.sweeper import purge_expired
from config import get_settings
from local_host import LocalHost
from tests.e2e.host_calls import call

SLOW = {"n": 4, "message": "cancel me", "sleep_seconds": 30}


@pytest.fixture
def host(database):
    with LocalHost(port=0, close_database=False, banner=False) as running:
        yield running


def wait_for(predicate, timeout=30.0, every=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached in time")


def status(host, job_id):
    code, job = call(host, "GET", f"/api/jobs/status/{job_id}")
    assert code == 200, job
    return job


def ended(host, job_id, timeout=30.0):
    return wait_for(lambda: (lambda j: j if j["status"] in (
        "completed", "failed", "completed_with_errors", "cancelled") else None)(
        status(host, job_id)), timeout)


def task_rows(database, job_id):
    with database.connection() as conn:
        return conn.execute("SELECT stage, status FROM app.tasks WHERE parent_job_id = %s",
                            (job_id,)).fetchall()


def test_cancel_a_job_whose_handlers_run(host, database):
    code, created = call(host, "POST", "/api/jobs/submit/hello_world", SLOW)
    assert code == 201
    job_id = created["job_id"]
    # Given its greetings running (each sleeping 30 s)
    wait_for(lambda: status(host, job_id)["stages"][0]["processing"] >= 1)
    # When it is cancelled, with a reason
    started = time.monotonic()
    code, job = call(host, "POST", f"/api/jobs/{job_id}/cancel", {"reason": "wrong input"})
    # Then it answers 200 with the job cancelled, when and why
    assert code == 200, job
    assert job["status"] == "cancelled"
    assert job["cancellation"]["reason"] == "wrong input"
    assert job["cancellation"]["cancelled_at"] and job["finished_at"]
    assert job["stages"][0]["state"] == "cancelled"
    assert job["stages"][0]["queued"] == job["stages"][0]["processing"] == 0
    # and its handlers, told through their context, return at once; nothing they return
    # is recorded, nothing is queued or running, and no stage opened after
    time.sleep(1.0)
    assert time.monotonic() - started < 10
    rows = task_rows(database, job_id)
    assert rows and all(r["status"] == "cancelled" for r in rows), rows
    assert {r["stage"] for r in rows} == {1}
    job = status(host, job_id)
    assert job["status"] == "cancelled" and job["stage_results"] == {}
    assert job["stages"][1]["total"] == 0 and job["result_data"] is None
    with database.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM app.job_stages WHERE job_id = %s"
                            " AND stage = 2", (job_id,)).fetchone()["n"] == 0
    # When it is cancelled again: 200 with its state, nothing changed
    code, again = call(host, "POST", f"/api/jobs/{job_id}/cancel", {"reason": "again"})
    assert code == 200 and again["status"] == "cancelled"
    assert again["updated_at"] == job["updated_at"]
    assert again["cancellation"]["reason"] == "wrong input"
    # And the sweeper re-drives nothing of it
    from core.sweeper import Sweeper
    from triggers.runtime import core_machine
    report = Sweeper(core_machine).sweep()
    assert report["lapsed_tasks"] == report["stale_tasks_resent"] == 0
    assert all(r["status"] == "cancelled" for r in task_rows(database, job_id))
    # When its parameters are submitted again, it runs again as a new attempt
    code, rerun = call(host, "POST", "/api/jobs/submit/hello_world",
                       {**SLOW, "sleep_seconds": 0})
    assert code == 201 and rerun["job_id"] == job_id and rerun["attempt"] == 2
    assert "cancelled" in rerun["message"]
    done = ended(host, job_id)
    assert done["status"] == "completed" and "cancellation" not in done


def test_cancel_answers_for_ended_unknown_and_malformed_jobs(host):
    code, created = call(host, "POST", "/api/jobs/submit/hello_world", {"n": 1})
    job = ended(host, created["job_id"])
    assert job["status"] == "completed"
    code, body = call(host, "POST", f"/api/jobs/{job['job_id']}/cancel")
    assert code == 409 and body["status"] == "completed" and "completed" in body["error"]
    assert status(host, job["job_id"])["status"] == "completed"
    code, body = call(host, "POST", f"/api/jobs/{'a' * 64}/cancel")
    assert code == 404
    code, body = call(host, "POST", "/api/jobs/xyz/cancel")
    assert code == 400 and "64 lowercase hex" in body["error"]
    code, body = call(host, "POST", f"/api/jobs/{job['job_id']}/cancel", {"why": "x"})
    assert code == 400 and body["parameter"] == "why"


def test_a_cancelled_job_is_listed_and_counted(host):
    code, created = call(host, "POST", "/api/jobs/submit/hello_world", SLOW)
    call(host, "POST", f"/api/jobs/{created['job_id']}/cancel")
    code, page = call(host, "GET", "/api/jobs?status=cancelled")
    assert code == 200 and [j["job_id"] for j in page["jobs"]] == [created["job_id"]]
    assert page["jobs"][0]["error"] == "Cancelled"
    code, summary = call(host, "GET", "/api/jobs/summary")
    assert summary["by_status"]["cancelled"] == 1


def test_purge_removes_the_records_and_the_parameters_run_again_at_once(host, database):
    params = {"n": 3, "message": "purge me"}
    code, created = call(host, "POST", "/api/jobs/submit/hello_world", params)
    job_id = created["job_id"]
    assert ended(host, job_id)["status"] == "completed"
    # When it is purged: its job, tasks, stages and messages are gone
    code, body = call(host, "DELETE", f"/api/jobs/{job_id}")
    assert code == 200 and body == {"job_id": job_id, "purged": True}
    assert call(host, "GET", f"/api/jobs/status/{job_id}")[0] == 404
    with database.connection() as conn:
        for table, column in (("jobs", "job_id"), ("tasks", "parent_job_id"),
                              ("job_stages", "job_id"), ("outbox", "job_id")):
            assert conn.execute(f"SELECT count(*) AS n FROM app.{table} WHERE {column} = %s",
                                (job_id,)).fetchone()["n"] == 0
    assert call(host, "DELETE", f"/api/jobs/{job_id}")[0] == 404
    # Then the same parameters make a new job at once, under new message ids (attempt 2:
    # attempt 1's ids are still within the duplicate detection window)
    code, again = call(host, "POST", "/api/jobs/submit/hello_world", params)
    assert code == 201 and again["job_id"] == job_id and again["attempt"] == 2
    job = ended(host, job_id, timeout=20)
    assert job["status"] == "completed" and len(job["result_data"]["replies"]) == 3


def test_purge_refuses_a_running_job_and_bulk_purge_needs_a_filter(host):
    code, created = call(host, "POST", "/api/jobs/submit/hello_world", SLOW)
    job_id = created["job_id"]
    code, body = call(host, "DELETE", f"/api/jobs/{job_id}")
    assert code == 409 and body["status"] in ("queued", "processing")
    code, body = call(host, "POST", "/api/jobs/purge", {})
    assert code == 400 and body["parameter"] == "filters"
    code, body = call(host, "POST", "/api/jobs/purge", {"status": ["queued", "processing"]})
    assert code == 200 and body["matched"] == 1 and body["acted_on"] == 0
    call(host, "POST", f"/api/jobs/{job_id}/cancel")
    code, body = call(host, "POST", "/api/jobs/purge", {"job_type": "hello_world",
                                                         "dry_run": True})
    assert code == 200 and body == {"matched": 1, "acted_on": 0, "dry_run": True}
    code, body = call(host, "POST", "/api/jobs/purge", {"job_type": "hello_world"})
    assert code == 200 and body == {"matched": 1, "acted_on": 1, "dry_run": False}
    assert call(host, "GET", f"/api/jobs/status/{job_id}")[0] == 404


def _age(database, job_ids, days):
    with database.connection() as conn:
        conn.execute("UPDATE app.jobs SET updated_at = now() - make_interval(days => %s),"
                     " finished_at = now() - make_interval(days => %s)"
                     " WHERE job_id = ANY(%s)", (days, days, job_ids))


def test_retention_purges_old_finished_jobs_in_small_batches(host, database, monkeypatch):
    ids = []
    for n in range(1, 6):
        code, created = call(host, "POST", "/api/jobs/submit/hello_world", {"n": n})
        ids.append(created["job_id"])
    for job_id in ids:
        assert ended(host, job_id)["status"] == "completed"
    code, failed = call(host, "POST", "/api/jobs/submit/hello_world",
                        {"n": 1, "message": "fails", "failure_rate": 1})
    assert ended(host, failed["job_id"])["status"] == "failed"
    # Given 3 jobs completed 31 days ago, one 29 days ago, and a failure 31 days ago
    _age(database, ids[:3], 31)
    _age(database, ids[3:4], 29)
    _age(database, [failed["job_id"]], 31)
    monkeypatch.setenv("RETENTION_BATCH_SIZE", "2")
    reset_settings()
    # When the sweeper runs: at most a batch per status per sweep
    assert purge_expired(get_settings()) == 2
    assert purge_expired(get_settings()) == 1
    assert purge_expired(get_settings()) == 0
    # Then only the completed jobs past 30 days are gone; the failure (90 days) stays
    codes = {job_id: call(host, "GET", f"/api/jobs/status/{job_id}")[0] for job_id in ids}
    assert [codes[j] for j in ids] == [404, 404, 404, 200, 200]
    assert call(host, "GET", f"/api/jobs/status/{failed['job_id']}")[0] == 200
    # With 0 days, jobs are kept for ever
    _age(database, ids[3:] + [failed["job_id"]], 400)
    monkeypatch.setenv("RETENTION_COMPLETED_DAYS", "0")
    reset_settings()
    assert purge_expired(get_settings()) == 1  # the failure, now 400 days old
    assert all(call(host, "GET", f"/api/jobs/status/{j}")[0] == 200 for j in ids[3:])


def test_purge_is_at_admin_level(database, monkeypatch):
    monkeypatch.setenv("LOCAL_CHECK_KEYS", "true")
    monkeypatch.setenv("LOCAL_FUNCTION_KEY", "function-key-0123")
    monkeypatch.setenv("LOCAL_MASTER_KEY", "master-key-4567")
    reset_settings()
    import http.client
    import json

    def send(host, method, path, key, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=30)
        conn.request(method, path, body=None if body is None else json.dumps(body).encode(),
                     headers={"x-functions-key": key, "Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp.status

    try:
        with LocalHost(port=0, close_database=False, banner=False) as host:
            job = f"/api/jobs/{'a' * 64}"
            assert send(host, "DELETE", job, "function-key-0123") == 401
            assert send(host, "POST", "/api/jobs/purge", "function-key-0123",
                        {"status": "failed"}) == 401
            assert send(host, "DELETE", job, "master-key-4567") == 404
            assert send(host, "POST", "/api/jobs/purge", "master-key-4567",
                        {"status": "failed"}) == 200
            # cancel and rerun are at FUNCTION level
            assert send(host, "POST", job + "/cancel", "function-key-0123") == 404
            assert send(host, "POST", job + "/rerun", "function-key-0123") == 404
    finally:
        monkeypatch.delenv("LOCAL_CHECK_KEYS")
        reset_settings()
