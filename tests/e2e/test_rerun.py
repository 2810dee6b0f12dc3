"""Rerun over real HTTP on the local host (issue 17, point 2): a job that failed in its
second stage runs again from it, stage 1 kept with its results and only the failed and
cancelled tasks of stage 2 running again; a job cancelled mid stage 2 likewise; a
completed job only with {"from": "start"}; a running job is a 409."""

from __future__ import annotations

import pytest

from local_host import LocalHost
from tests.e2e.host_calls import call
from tests.e2e.test_cancel_and_purge import ended, status, wait_for
from tests.integration.test_cleanup import BROKEN, list_parts, process_part
from tests.integration.test_job_control import PlainPartsJob
from triggers.runtime import core_machine

CALLS: list[int] = []


def counting_part(params, context):
    CALLS.append(params["index"])
    return process_part(params, context)


@pytest.fixture
def host(database):
    """The local host, with a test job type whose stage 2 fails the parts named in `bad`
    (registered in this process's CoreMachine for the test only)."""
    jobs, handlers = core_machine.jobs_registry, core_machine.handlers_registry
    jobs["plain_parts"] = PlainPartsJob
    handlers.update(list_parts=list_parts, process_part=counting_part)
    BROKEN["flag"] = True
    CALLS.clear()
    try:
        with LocalHost(port=0, close_database=False, banner=False) as running:
            yield running
    finally:
        jobs.pop("plain_parts", None)
        handlers.pop("list_parts", None)
        handlers.pop("process_part", None)


def tasks_by_key(database, job_id):
    with database.connection() as conn:
        return {(r["stage"], r["task_index"]): r for r in conn.execute(
            "SELECT * FROM app.tasks WHERE parent_job_id = %s", (job_id,)).fetchall()}


def test_rerun_from_a_failed_second_stage_keeps_stage_1(host, database):
    code, created = call(host, "POST", "/api/jobs/submit/plain_parts", {"count": 4, "bad": "2"})
    assert code == 201
    job_id = created["job_id"]
    job = ended(host, job_id)
    assert job["status"] == "failed" and job["stage"] == 2
    assert [s["state"] for s in job["stages"]] == ["done", "failed"]
    before = tasks_by_key(database, job_id)
    again = sorted(i for (s, i), t in before.items() if s == 2 and t["status"] != "completed")
    assert 2 in again
    CALLS.clear()
    BROKEN["flag"] = False  # the part is mended
    code, rerun = call(host, "POST", f"/api/jobs/{job_id}/rerun")
    assert code == 200, rerun
    assert (rerun["from_stage"], rerun["kept_stages"], rerun["attempt"]) == (2, [1], 2)
    assert rerun["tasks_queued"] == len(again) and "stage 2" in rerun["reason"]
    done = ended(host, job_id)
    assert done["status"] == "completed" and done["attempt"] == 2
    assert done["result_data"] == {"parts": 4}
    # stage 1 kept: its task not run again, its summary as it was
    after = tasks_by_key(database, job_id)
    assert after[(1, 0)]["started_at"] == before[(1, 0)]["started_at"]
    assert after[(1, 0)]["result_data"] == before[(1, 0)]["result_data"]
    assert done["stage_results"]["1"] == job["stage_results"]["1"]
    # only stage 2's failed and cancelled tasks ran again
    assert sorted(CALLS) == again
    assert all(after[(2, i)]["status"] == "completed" for i in range(4))
    # the previous attempt's error is kept
    with database.connection() as conn:
        meta = conn.execute("SELECT metadata FROM app.jobs WHERE job_id = %s",
                            (job_id,)).fetchone()["metadata"]
    assert meta["previous_attempts"][-1]["status"] == "failed"
    assert "part 2 is corrupt" in meta["previous_attempts"][-1]["error_details"]
    # A completed job: a 409, unless from the start
    code, body = call(host, "POST", f"/api/jobs/{job_id}/rerun")
    assert code == 409 and body["status"] == "completed" and "start" in body["error"]
    code, rerun = call(host, "POST", f"/api/jobs/{job_id}/rerun", {"from": "start"})
    assert code == 200 and rerun["from_stage"] == 1 and rerun["attempt"] == 3
    assert ended(host, job_id)["status"] == "completed"
    code, body = call(host, "POST", f"/api/jobs/{job_id}/rerun", {"from": "middle"})
    assert code == 400 and body["parameter"] == "from"


def test_rerun_a_job_cancelled_in_its_second_stage(host, database):
    params = {"n": 2, "message": "rerun me", "sleep_seconds": 1.5}
    code, created = call(host, "POST", "/api/jobs/submit/hello_world", params)
    job_id = created["job_id"]
    # A running job is a 409
    code, body = call(host, "POST", f"/api/jobs/{job_id}/rerun")
    assert code == 409 and body["status"] in ("queued", "processing")
    # Given it cancelled while its replies (stage 2) run
    wait_for(lambda: status(host, job_id)["stages"][1]["processing"] >= 1, timeout=30)
    code, job = call(host, "POST", f"/api/jobs/{job_id}/cancel")
    assert code == 200 and job["stages"][0]["state"] == "done"
    assert job["stages"][1]["state"] == "cancelled"
    greetings = {k: t["started_at"] for k, t in tasks_by_key(database, job_id).items()
                 if k[0] == 1}
    # When it is rerun: from stage 2, stage 1 kept
    code, rerun = call(host, "POST", f"/api/jobs/{job_id}/rerun")
    assert code == 200 and rerun["from_stage"] == 2 and rerun["kept_stages"] == [1]
    done = ended(host, job_id)
    assert done["status"] == "completed" and done["attempt"] == 2
    assert len(done["result_data"]["replies"]) == 2
    assert [s["completed"] for s in done["stages"]] == [2, 2]
    assert "cancellation" not in done
    # the greetings were not run again
    assert {k: t["started_at"] for k, t in tasks_by_key(database, job_id).items()
            if k[0] == 1} == greetings and len(greetings) == 2
