"""Bulk cancel, rerun and purge over real HTTP on the local host (issue 17, point 3): by
the list's filters (at least one), with and without dry_run, over thousands of jobs, each
request well within an HTTP timeout (the jobs go through in chunks of 500, one
transaction each)."""

from __future__ import annotations

import http.client
import json
import os
import time

import pytest

from local_host import LocalHost

# BULK_JOBS=20000 measures tens of thousands (docs: about N / 1000 s per request).
N = int(os.environ.get("BULK_JOBS", "3000"))


@pytest.fixture
def host(database):
    with LocalHost(port=0, close_database=False, banner=False) as running:
        yield running


def post(host, path, payload, timeout=120.0):
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=timeout)
    conn.request("POST", path, body=json.dumps(payload).encode(),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read() or b"{}")
    conn.close()
    return resp.status, data


def timed(host, path, payload):
    started = time.monotonic()
    code, body = post(host, path, payload)
    seconds = time.monotonic() - started
    print(f"POST {path} {payload}: {seconds:.2f} s")
    return code, body, seconds


def counts(database):
    with database.connection() as conn:
        rows = conn.execute("SELECT status, attempt, count(*)::int AS n FROM app.jobs"
                            " GROUP BY status, attempt").fetchall()
    return {(r["status"], r["attempt"]): r["n"] for r in rows}


def insert_jobs(database, n):
    """n queued hello_world jobs (n=1 each), as submits would store them but without
    their first messages, created a millisecond apart."""
    with database.connection() as conn:
        conn.execute(
            "INSERT INTO app.jobs (job_id, job_type, parameters, status, stage, total_stages,"
            " attempt, created_at, updated_at, queued_at)"
            " SELECT encode(sha256(('bulk ' || i)::bytea), 'hex'), 'hello_world',"
            " jsonb_build_object('n', 1, 'message', 'bulk ' || i, 'failure_rate', 0,"
            " 'sleep_seconds', 0), 'queued', 1, 2, 1,"
            " now() - make_interval(secs => i / 1000.0), now(), now()"
            " FROM generate_series(1, %s) AS i", (n,))


def test_bulk_cancel_rerun_and_purge_over_thousands_of_jobs(host, database):
    insert_jobs(database, N)
    # A bare call is a 400, never "every job"
    for action in ("cancel", "rerun", "purge"):
        code, body = post(host, f"/api/jobs/{action}", {})
        assert code == 400 and body["parameter"] == "filters", body
    code, body = post(host, "/api/jobs/cancel", {"status": "nope"})
    assert code == 400 and body["parameter"] == "status"
    code, body = post(host, "/api/jobs/rerun", {"status": "failed", "reason": "x"})
    assert code == 400 and body["parameter"] == "reason"
    # Dry run: counted, nothing changed
    code, body, _ = timed(host, "/api/jobs/cancel", {"status": "queued", "dry_run": True})
    assert code == 200 and body == {"matched": N, "acted_on": 0, "dry_run": True}
    assert counts(database) == {("queued", 1): N}
    # Cancel them all
    code, body, seconds = timed(host, "/api/jobs/cancel",
                                {"status": ["queued", "processing"], "reason": "bulk"})
    assert code == 200 and body == {"matched": N, "acted_on": N, "dry_run": False}
    assert seconds < 60 * max(N / 3000, 1), seconds
    assert counts(database) == {("cancelled", 1): N}
    # Again: matched by type, nothing left to cancel
    code, body = post(host, "/api/jobs/cancel", {"job_type": "hello_world"})
    assert body == {"matched": N, "acted_on": 0, "dry_run": False}
    # Rerun: dry run, then every one as attempt 2 with its first message
    code, body = post(host, "/api/jobs/rerun", {"status": "cancelled", "dry_run": True})
    assert code == 200 and body == {"matched": N, "acted_on": 0, "dry_run": True}
    code, body, seconds = timed(host, "/api/jobs/rerun",
                                {"job_type": ["hello_world"], "status": "cancelled"})
    assert code == 200 and body == {"matched": N, "acted_on": N, "dry_run": False}
    assert seconds < 90 * max(N / 3000, 1), seconds
    by = counts(database)
    assert sum(by.values()) == N and all(attempt == 2 for _, attempt in by)
    assert ("cancelled", 2) not in by  # each queued with its first message, and running
    # Stop them again, then purge: a dry run, then the records of every finished one
    code, body = post(host, "/api/jobs/cancel", {"id_prefix": "", "status": "queued,processing"})
    # (a job may complete between its chunk being read and cancelled: matched, not acted on)
    assert code == 200 and 0 < body["acted_on"] <= body["matched"] <= N
    code, body = post(host, "/api/jobs/purge", {"job_type": "hello_world", "dry_run": True})
    assert code == 200 and body == {"matched": N, "acted_on": 0, "dry_run": True}
    code, body, seconds = timed(host, "/api/jobs/purge", {"job_type": "hello_world"})
    assert code == 200 and body["matched"] == N and body["acted_on"] == N, body
    assert seconds < 60 * max(N / 3000, 1), seconds
    assert counts(database) == {}
    with database.connection() as conn:
        assert conn.execute("SELECT count(*)::int AS n FROM app.purged_jobs"
                            ).fetchone()["n"] == N
