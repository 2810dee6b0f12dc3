"""Cancel and rerun on the engine itself (core/job_control.py), against the real
PostgreSQL, both trigger modes: a cancelled job's cleanup task runs; a handler of a
cancelled job that returns late records nothing and opens no stage; a rerun keeps the
stages before the first failed one and runs only that stage's failed and cancelled tasks
again; a job whose cleanup ran reruns from stage 1."""

from __future__ import annotations

import pytest

from config import TASKS_QUEUE
from core.job_control import JobConflict, JobControl
from core.models import TaskQueueMessage, TaskStatus
from core.orchestration_manager import task_id_for
from tests.integration.test_cleanup import BROKEN, JOBS, PartsJob, list_parts, process_part

CALLS: list[int] = []


class PlainPartsJob(PartsJob):
    """PartsJob without a cleanup task."""

    job_type = "plain_parts"
    cleanup_task_type = None


def counting_part(params, context):
    CALLS.append(params["index"])
    return process_part(params, context)


@pytest.fixture(params=["single", "batch"])
def eng(request, engine, batch_engine):
    runner = {"single": engine, "batch": batch_engine}[request.param]
    BROKEN["flag"] = True
    CALLS.clear()
    jobs = {**JOBS, "plain_parts": PlainPartsJob}
    return runner.with_jobs(jobs, {"list_parts": list_parts, "process_part": counting_part,
                                   "drop_staging": lambda p, c: {"dropped": c["job_status"]}})


def tasks(database, job_id):
    with database.connection() as conn:
        return {(r["stage"], r["task_index"]): r for r in conn.execute(
            "SELECT * FROM app.tasks WHERE parent_job_id = %s", (job_id,)).fetchall()}


def test_a_cancelled_job_runs_its_cleanup_and_reruns_from_stage_1(database, eng):
    control = JobControl(eng.machine)
    job = eng.submit("parts", {"count": 3})
    eng.deliver("geospatial-jobs")  # stage 1 opened, its task queued
    done, view = control.cancel(job["job_id"], "not wanted")
    assert done and view["status"] == "cancelled"
    assert view["cancellation"]["reason"] == "not wanted"
    eng.drain()
    final = eng.status(job["job_id"])
    assert final["status"] == "cancelled" and final["stage"] == 1
    assert final["cleanup"]["status"] == "completed"
    assert final["cleanup"]["result"] == {"dropped": "cancelled"}
    assert tasks(database, job["job_id"])[(1, 0)]["status"] == "cancelled"
    # A cancelled job whose cleanup ran reruns from stage 1, and says so
    rerun = control.rerun(job["job_id"], from_start=False)
    assert rerun.from_stage == 1 and rerun.attempt == 2 and "cleanup" in rerun.reason
    eng.drain()
    final = eng.status(job["job_id"])
    assert final["status"] == "completed"
    assert final["attempt"] == 2 and "cleanup" not in final


def test_a_late_outcome_of_a_cancelled_jobs_task_is_dropped(database, eng):
    control = JobControl(eng.machine)
    job = eng.submit("plain_parts", {"count": 2})
    job_id = job["job_id"]
    eng.deliver("geospatial-jobs")
    # Given stage 1's task claimed by a worker (processing) when the job is cancelled
    state = eng.machine.state_manager
    task, why = state.begin_task(task_id_for(job_id, 1, 0), 1, 60.0, job_id)
    assert why == "claimed"
    control.cancel(job_id, None)
    # When the worker records its outcome late, nothing is counted and no stage opens
    assert state.complete_task(task["task_id"], TaskStatus.COMPLETED, {"parts": 2}, None,
                               attempt=1) is None
    eng.drain()
    final = eng.status(job_id)
    assert final["status"] == "cancelled" and final["stage_results"] == {}
    assert [s["total"] for s in final["stages"]] == [1, 0]
    assert tasks(database, job_id)[(1, 0)]["status"] == "cancelled"
    # and its message delivered again is ignored
    message = TaskQueueMessage(job_id=job_id, task_id=task["task_id"], stage=1, attempt=1)
    assert eng.machine.process_task_message(message.to_json()) == "job already cancelled"
    with pytest.raises(JobConflict):
        control.cancel(eng.run("plain_parts", {"count": 1})["job_id"], None)


def test_a_rerun_keeps_stage_1_and_runs_only_the_failed_tasks(database, eng):
    control = JobControl(eng.machine)
    job = eng.run("plain_parts", {"count": 4, "bad": "1"})
    job_id = job["job_id"]
    assert job["status"] == "failed" and job["stage"] == 2
    before = tasks(database, job_id)
    stage_1 = before[(1, 0)]
    CALLS.clear()
    BROKEN["flag"] = False  # the part is mended
    rerun = control.rerun(job_id, from_start=False)
    assert (rerun.from_stage, rerun.kept_stages, rerun.attempt) == (2, [1], 2)
    again = {k for k, t in before.items() if k[0] == 2 and t["status"] != "completed"}
    assert rerun.tasks_queued == len(again) and (2, 1) in again
    eng.drain()
    final = eng.status(job_id)
    assert final["status"] == "completed" and final["attempt"] == 2
    assert final["result_data"] == {"parts": 4}
    after = tasks(database, job_id)
    # stage 1's task kept as it was (not run again), its result and summary kept
    assert after[(1, 0)]["result_data"] == stage_1["result_data"]
    assert after[(1, 0)]["started_at"] == stage_1["started_at"]
    assert final["stage_results"]["1"] == job["stage_results"]["1"]
    # only the failed and cancelled tasks of stage 2 ran again
    assert sorted(CALLS) == sorted(i for _, i in again)
    assert all(after[(2, i)]["status"] == "completed" for i in range(4))
    previous = eng.machine.state_manager.get_job(job_id)["metadata"]["previous_attempts"]
    assert previous[-1]["status"] == "failed" and "part 1" in previous[-1]["error_details"]
    # a completed job reruns only from the start
    with pytest.raises(JobConflict):
        control.rerun(job_id, from_start=False)
    rerun = control.rerun(job_id, from_start=True)
    assert rerun.from_stage == 1 and rerun.attempt == 3
    eng.drain()
    assert eng.status(job_id)["status"] == "completed"
    with database.connection() as conn:
        ids = [r["message_id"] for r in conn.execute(
            "SELECT message_id FROM app.queue_message_ids WHERE queue_name = %s",
            (TASKS_QUEUE,)).fetchall()]
    assert len(ids) == len(set(ids))


def test_migration_0009_lets_a_job_be_cancelled_and_nothing_else(database):
    with database.connection() as conn:
        conn.execute("INSERT INTO app.jobs (job_id, job_type, status, total_stages)"
                     " VALUES ('j1', 'hello_world', 'cancelled', 2)")
        with pytest.raises(Exception, match="jobs_status_check"):
            conn.execute("UPDATE app.jobs SET status = 'stopped' WHERE job_id = 'j1'")
    with database.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM app.purged_jobs").fetchone()["n"] == 0
