"""Cleanup tasks (core/cleanup.py): a job declaring cleanup_task_type gets that task run
once when it ends failed (a task failing for good, a tolerant stage past its failure cap,
its task builder failing), with the job's parameters, status, error and every task's
outcome in the handler's context; the outcome is recorded on the job's metadata and never
changes the job. A completed job runs none. Both trigger modes."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from config import JOBS_QUEUE, TASKS_QUEUE, reset_settings
from core.orchestration_manager import task_id_for
from core.sweeper import Sweeper
from exceptions import CleanupPendingError, PermanentError, TransientError
from jobs.base import JobBase
from jobs.mixins import JobBaseMixin


class PartsJob(JobBaseMixin, JobBase):
    """Stage 1 lists `count` parts; stage 2 processes each; the parts named in `bad` fail
    for good. On failure, drop_staging runs."""

    job_type = "parts"
    description = "list parts, process each; a failed job drops its staging table"
    stages = [
        {"number": 1, "name": "list", "task_type": "list_parts", "parallelism": "single"},
        {"number": 2, "name": "process", "task_type": "process_part",
         "parallelism": "fan_out"},
    ]
    parameters_schema = {"count": {"type": "int", "default": 3},
                         "bad": {"type": "str", "default": ""}}
    cleanup_task_type = "drop_staging"

    @staticmethod
    def create_tasks_for_stage(stage, job_params, job_id, previous_results=None):
        if stage == 1:
            return [{"parameters": {}}]
        return [{"parameters": {"index": i}} for i in range(job_params["count"])]

    @staticmethod
    def finalize_job(context):
        return {"parts": len(context.results_for_stage(2))}


class BrokenBuilderJob(PartsJob):
    job_type = "broken_builder"

    @staticmethod
    def create_tasks_for_stage(stage, job_params, job_id, previous_results=None):
        if stage == 2:
            raise ValueError("cannot read the part list")
        return PartsJob.create_tasks_for_stage(stage, job_params, job_id, previous_results)


class TolerantPartsJob(PartsJob):
    job_type = "tolerant_parts"
    stages = [PartsJob.stages[0], {**PartsJob.stages[1], "on_task_failure": "continue",
                                   "max_failed_fraction": 0.25}]


JOBS = {j.job_type: j for j in (PartsJob, BrokenBuilderJob, TolerantPartsJob)}
BROKEN = {"flag": True}  # process_part fails the parts named in "bad" while set


def list_parts(params, context):
    return {"parts": context["job_parameters"]["count"]}


def process_part(params, context):
    bad = {int(b) for b in context["job_parameters"]["bad"].split(",") if b}
    if BROKEN["flag"] and params["index"] in bad:
        raise PermanentError(f"part {params['index']} is corrupt")
    return {"index": params["index"]}


class Cleanup:
    """The cleanup handler: records every call; raises the given errors first, in turn."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.calls: list[tuple[dict, dict]] = []
        self.lock = threading.Lock()

    def __call__(self, params: dict, context: dict) -> dict:
        with self.lock:
            self.calls.append((params, dict(context)))
            if self.errors:
                raise self.errors.pop(0)
        return {"dropped": f"staging_{context['job_id'][:8]}"}


def parts_engine(runner, cleanup: Cleanup):
    BROKEN["flag"] = True
    return runner.with_jobs(JOBS, {"list_parts": list_parts, "process_part": process_part,
                                   "drop_staging": cleanup})


@pytest.fixture(params=["single", "batch"])
def eng(request, engine, batch_engine):
    return {"single": engine, "batch": batch_engine}[request.param]


def metadata(database, job_id: str) -> dict[str, Any]:
    with database.connection() as conn:
        return conn.execute("SELECT metadata FROM app.jobs WHERE job_id = %s",
                            (job_id,)).fetchone()["metadata"]


def outcomes(context: dict) -> list[tuple[int, int, str]]:
    return [(o["stage"], o["task_index"], o["status"]) for o in context["task_outcomes"]]


def test_a_failing_job_runs_its_cleanup_once_with_every_outcome(database, eng):
    # Given a job of 3 parts whose part 1 fails for good, and a cleanup handler,
    cleanup = Cleanup()
    runner = parts_engine(eng, cleanup)
    # When it runs to its end,
    job = runner.run("parts", {"count": 3, "bad": "1"})
    job_id = job["job_id"]
    # Then the job failed naming the task, and its cleanup ran exactly once,
    assert job["status"] == "failed"
    assert job["error_details"].startswith(
        f"Task {task_id_for(job_id, 2, 1)} (stage 2 'process', task 1) failed: "), job
    assert "PermanentError: part 1 is corrupt" in job["error_details"]
    [(params, context)] = cleanup.calls
    # with empty params, the job's parameters, status and error,
    assert params == {}
    assert context["task_id"] == f"{job_id}-s0-t0" and context["stage"] == 0
    assert context["job_parameters"] == {"count": 3, "bad": "1"}
    assert (context["job_status"], context["job_error"]) == ("failed", job["error_details"])
    # and every task's outcome (not its own): stage 1 completed; in stage 2 part 1 failed,
    # part 0 completed, part 2 cancelled before it ran (single) or ran in the same batch.
    seen = outcomes(context)
    part_2 = "completed" if eng.batch else "cancelled"
    assert seen == [(1, 0, "completed"), (2, 0, "completed"), (2, 1, "failed"),
                    (2, 2, part_2)]
    by_index = {(o["stage"], o["task_index"]): o for o in context["task_outcomes"]}
    assert by_index[(1, 0)]["result"] == {"parts": 3}
    assert by_index[(2, 0)]["result"] == {"index": 0} and by_index[(2, 0)]["error"] is None
    assert by_index[(2, 1)]["error"] == "PermanentError: part 1 is corrupt"
    assert {o["task_type"] for o in context["task_outcomes"]} == {"list_parts",
                                                                   "process_part"}
    assert by_index[(2, 1)]["task_id"] == task_id_for(job_id, 2, 1)
    # Its outcome is recorded on the job, which is unchanged by it,
    record = metadata(database, job_id)["cleanup"]
    assert {k: record[k] for k in ("task_id", "task_type", "status", "retries", "result")} == {
        "task_id": f"{job_id}-s0-t0", "task_type": "drop_staging", "status": "completed",
        "retries": 0, "result": {"dropped": f"staging_{job_id[:8]}"}}
    assert record["finished_at"] and "error" not in record
    final = eng.status(job_id)
    assert (final["status"], final["error_details"]) == ("failed", job["error_details"])
    # and the status document's stages do not count the cleanup task.
    assert [s["total"] for s in final["stages"]] == [1, 3]
    assert sum(s["failed"] for s in final["stages"]) == final["tasks_failed"] == 1


def test_a_completed_job_runs_no_cleanup(database, eng):
    # Given the same job with no bad part,
    cleanup = Cleanup()
    job = parts_engine(eng, cleanup).run("parts", {"count": 3})
    # Then it completes, and no cleanup task was made or run.
    assert job["status"] == "completed", job["error_details"]
    assert cleanup.calls == []
    assert "cleanup" not in metadata(database, job["job_id"])
    with database.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM app.tasks WHERE parent_job_id = %s"
                            " AND stage = 0", (job["job_id"],)).fetchone()["n"] == 0


def test_a_cleanup_failing_for_good_is_recorded_and_the_job_keeps_its_error(database, eng):
    # Given a cleanup handler that raises PermanentError,
    cleanup = Cleanup(PermanentError("staging table is locked"))
    job = parts_engine(eng, cleanup).run("parts", {"count": 2, "bad": "0"})
    # Then it ran once (a permanent error is not retried) and is recorded failed,
    assert len(cleanup.calls) == 1
    original = cleanup.calls[0][1]["job_error"]
    record = metadata(database, job["job_id"])["cleanup"]
    assert (record["status"], record["retries"]) == ("failed", 0)
    assert "PermanentError: staging table is locked" in record["error"]
    assert "result" not in record
    # and the job stays failed with its original error.
    assert job["status"] == "failed"
    assert job["error_details"] == original
    assert "part 0 is corrupt" in original and "staging" not in original


def test_a_transient_cleanup_failure_is_retried(database, eng):
    # Given a cleanup handler that fails transiently once, then succeeds,
    cleanup = Cleanup(TransientError("staging database is restarting"))
    job = parts_engine(eng, cleanup).run("parts", {"count": 2, "bad": "1"})
    # Then it ran twice, the second time as retry 1, and is recorded completed.
    assert [c[1]["retry"] for c in cleanup.calls] == [0, 1]
    record = metadata(database, job["job_id"])["cleanup"]
    assert (record["status"], record["retries"]) == ("completed", 1)
    assert record["result"] == {"dropped": f"staging_{job['job_id'][:8]}"}
    assert job["status"] == "failed" and "part 1 is corrupt" in job["error_details"]


def test_a_task_builder_failing_runs_the_cleanup(database, eng):
    # Given a job whose create_tasks_for_stage raises ValueError at stage 2,
    cleanup = Cleanup()
    job = parts_engine(eng, cleanup).run("broken_builder", {"count": 2})
    error = ("Stage 2: BrokenBuilderJob.create_tasks_for_stage failed: ValueError: "
             "cannot read the part list")
    # Then the job failed naming the stage, and its cleanup ran once, seeing stage 1 only.
    assert (job["status"], job["error_details"]) == ("failed", error)
    [(_, context)] = cleanup.calls
    assert (context["job_status"], context["job_error"]) == ("failed", error)
    assert outcomes(context) == [(1, 0, "completed")]
    assert metadata(database, job["job_id"])["cleanup"]["status"] == "completed"
    assert [s["total"] for s in eng.status(job["job_id"])["stages"]] == [1, 0]


def test_a_tolerant_stage_past_its_failure_cap_runs_the_cleanup(database, eng):
    # Given a tolerant stage (max_failed_fraction 0.25) where 2 of 4 parts fail,
    cleanup = Cleanup()
    job = parts_engine(eng, cleanup).run("tolerant_parts", {"count": 4, "bad": "1,2"})
    # Then the job failed past its cap, and the cleanup ran once with both failures seen.
    assert job["status"] == "failed"
    assert "more than its max_failed_fraction 0.25 allows" in job["error_details"]
    [(_, context)] = cleanup.calls
    assert context["job_error"] == job["error_details"]
    stage_2 = [status for stage, _, status in outcomes(context) if stage == 2]
    assert len(stage_2) == 4 and stage_2[1:3] == ["failed", "failed"]
    assert stage_2[0] == "completed" and stage_2[3] in ("completed", "cancelled")
    assert metadata(database, job["job_id"])["cleanup"]["status"] == "completed"


def test_resubmitting_the_failed_job_moves_its_cleanup_record(database, eng):
    # Given a job that failed and ran its cleanup,
    cleanup = Cleanup()
    runner = parts_engine(eng, cleanup)
    first = runner.run("parts", {"count": 2, "bad": "1"})
    record = metadata(database, first["job_id"])["cleanup"]
    # When its parameters are submitted again (the bad part now fixed),
    BROKEN["flag"] = False
    again = runner.submit("parts", {"count": 2, "bad": "1"})
    # Then attempt 2 starts, the cleanup record moved under the previous attempt,
    assert (again["job_id"], again["attempt"]) == (first["job_id"], 2)
    meta = metadata(database, first["job_id"])
    assert "cleanup" not in meta
    [previous] = meta["previous_attempts"]
    assert previous["attempt"] == 1 and previous["cleanup"] == record
    assert previous["error_details"] == first["error_details"]
    # and attempt 2 completes without running the cleanup again.
    runner.drain()
    final = runner.status(first["job_id"])
    assert final["status"] == "completed", final["error_details"]
    assert len(cleanup.calls) == 1
    assert metadata(database, first["job_id"])["previous_attempts"][0]["cleanup"] == record


def test_a_failed_job_is_not_run_again_while_its_cleanup_is_pending(database, engine, queue):
    # Given a failed job whose cleanup has not run yet (its message waits),
    cleanup = Cleanup()
    runner = parts_engine(engine, cleanup)
    job_id, message = failed_with_cleanup_waiting(runner, queue)
    queue.abandon(message)
    # When its parameters are submitted again, Then that is refused (409 over HTTP):
    # the cleanup must never run beside, or be lost to, a new attempt;
    with pytest.raises(CleanupPendingError, match="cleanup task is still running"):
        runner.submit("parts", {"count": 1, "bad": "0"})
    assert runner.status(job_id)["attempt"] == 1
    # and once the cleanup has run, the same submit starts attempt 2.
    runner.drain()
    assert len(cleanup.calls) == 1
    BROKEN["flag"] = False
    assert runner.submit("parts", {"count": 1, "bad": "0"})["attempt"] == 2
    runner.drain()
    assert runner.status(job_id)["status"] == "completed"


def failed_with_cleanup_waiting(runner, queue) -> tuple[str, Any]:
    """A one-part job that failed; its cleanup message, received from the tasks queue."""
    job_id = runner.submit("parts", {"count": 1, "bad": "0"})["job_id"]
    runner.deliver(JOBS_QUEUE), runner.deliver(TASKS_QUEUE), runner.deliver(JOBS_QUEUE)
    runner.deliver(TASKS_QUEUE)
    assert runner.status(job_id)["status"] == "failed"
    [message] = queue.receive(TASKS_QUEUE, 10)
    body = message.body.decode() if isinstance(message.body, bytes) else message.body
    assert f"{job_id}-s0-t0" in body
    return job_id, message


def test_a_duplicate_cleanup_message_runs_it_once(database, engine, queue):
    # Given a one-part job that fails, its cleanup message waiting on the tasks queue,
    cleanup = Cleanup()
    runner = parts_engine(engine, cleanup)
    job_id, message = failed_with_cleanup_waiting(runner, queue)
    # When its body is delivered twice,
    first = runner.machine.handle_message(TASKS_QUEUE, message.body, message.message_id)
    second = runner.machine.handle_message(TASKS_QUEUE, message.body, message.message_id)
    queue.complete(message)
    # Then the handler ran once, the second delivery finding the task completed,
    assert (first, second) == ("completed", "task already completed")
    assert len(cleanup.calls) == 1
    record = metadata(database, job_id)["cleanup"]
    assert (record["status"], record["retries"]) == ("completed", 0)
    # and nothing is left to deliver.
    assert runner.drain() == 0 and len(cleanup.calls) == 1
    assert runner.status(job_id)["status"] == "failed"


def test_a_duplicate_cleanup_message_in_batches_runs_it_once(database, batch_engine, queue):
    # Given the same, in batch mode,
    cleanup = Cleanup()
    runner = parts_engine(batch_engine, cleanup)
    job_id, message = failed_with_cleanup_waiting(runner, queue)
    # When the message comes twice in one batch, and again in a later batch,
    entry = (message.body, message.message_id)
    first = runner.machine.handle_task_batch([entry, entry])
    later = runner.machine.handle_task_batch([entry])
    queue.complete(message)
    # Then the handler ran once.
    assert first == ["completed", "duplicate in batch"]
    assert later == ["task already completed"]
    assert len(cleanup.calls) == 1
    assert metadata(database, job_id)["cleanup"]["status"] == "completed"


def test_a_cleanup_failing_transiently_past_its_retries_is_recorded_failed(database, eng):
    # Given a cleanup handler that always fails transiently (TASK_MAX_RETRIES is 3),
    cleanup = Cleanup(*[TransientError("staging database is restarting")] * 4)
    job = parts_engine(eng, cleanup).run("parts", {"count": 1, "bad": "0"})
    # Then it ran 4 times and is recorded failed after 3 retries; the job is unchanged.
    assert len(cleanup.calls) == 4
    record = metadata(database, job["job_id"])["cleanup"]
    assert (record["status"], record["retries"]) == ("failed", 3)
    assert "staging database is restarting" in record["error"]
    assert job["status"] == "failed" and job["error_details"] == cleanup.calls[0][1]["job_error"]


def test_a_long_cleanup_keeps_its_lease_although_its_job_has_ended(database, eng, monkeypatch):
    # Given short leases (renewed every 0.1 s) and a cleanup that runs for 0.5 s,
    monkeypatch.setenv("TASK_LEASE_SECONDS", "0.3")
    reset_settings()
    seen = {}

    def slow_cleanup(params, context):
        time.sleep(0.5)
        seen["cancelled"] = context["cancelled"].is_set()
        return {"slept": True}

    runner = eng.with_jobs(JOBS, {"list_parts": list_parts, "process_part": process_part,
                                  "drop_staging": slow_cleanup})
    BROKEN["flag"] = True
    job = runner.run("parts", {"count": 1, "bad": "0"})
    # Then its lease renewals kept it wanted: it was not cancelled, and it is recorded.
    assert seen == {"cancelled": False}
    record = metadata(database, job["job_id"])["cleanup"]
    assert (record["status"], record["result"]) == ("completed", {"slept": True})


def sql(database, statement: str, *params) -> None:
    with database.connection() as conn:
        conn.execute(statement, params)


@pytest.mark.parametrize("mishap", ["message lost", "worker died"])
def test_the_sweeper_re_drives_a_stuck_cleanup(database, engine, queue, mishap):
    # Given a failed job whose cleanup message was lost, or whose cleanup's worker died,
    cleanup = Cleanup()
    runner = parts_engine(engine, cleanup)
    job_id, message = failed_with_cleanup_waiting(runner, queue)
    queue.complete(message)
    task_id = f"{job_id}-s0-t0"
    if mishap == "message lost":
        sql(database, "UPDATE app.tasks SET due_at = now() - interval '1 day'"
                      " WHERE task_id = %s", task_id)
    else:
        sql(database, "UPDATE app.tasks SET status = 'processing',"
                      " lease_expires_at = now() - interval '1 minute' WHERE task_id = %s",
            task_id)
    # When the sweeper runs, and its message is delivered,
    report = Sweeper(runner.machine).sweep()
    runner.drain()
    # Then the cleanup ran once (after a lost worker, as retry 1) and is recorded.
    step = {"message lost": "stale_tasks_resent", "worker died": "lapsed_tasks"}[mishap]
    assert report[step] == 1 and report["orphans_cancelled"] == 0
    assert len(cleanup.calls) == 1
    record = metadata(database, job_id)["cleanup"]
    assert (record["status"], record["retries"]) == (
        "completed", 0 if mishap == "message lost" else 1)
    assert runner.status(job_id)["status"] == "failed"
