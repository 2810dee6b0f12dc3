"""Task failures end to end (issue "Reliability", point 1): a transient or unknown failure
runs again after min(base * 2**retry, cap) seconds through a scheduled message; past its
retries, or at once for a permanent or contract failure, the task and its job fail, the
job's queued tasks are cancelled, and nothing is left queued or processing."""

from __future__ import annotations

import logging
import threading

import psycopg
import pytest

from config import JOBS_QUEUE, TASKS_QUEUE, reset_settings
from core.orchestration_manager import task_id_for
from exceptions import ContractViolationError
from infrastructure.repositories import TaskRepository
from tests.integration.sample_jobs import ITEMS_HANDLERS, SAMPLE_JOBS, ItemsJob


class TimedItemsJob(ItemsJob):
    """Items without the fan-in stage; stage 2 may run 0.2 s per task."""

    job_type = "timed_items"
    stages = [ItemsJob.stages[0], {**ItemsJob.stages[1], "timeout_seconds": 0.2}]


def items_engine(engine, **handlers):
    return engine.with_jobs({**SAMPLE_JOBS, "timed_items": TimedItemsJob},
                            {**ITEMS_HANDLERS, **handlers})


def set_env(monkeypatch, **values) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, str(value))
    reset_settings()


def tasks_of(database, job_id: str, stage: int) -> list[dict]:
    with database.connection() as conn:
        return TaskRepository().list_tasks(conn, job_id, stage)


def queued_rows(database, queue_name: str) -> list[dict]:
    with database.connection() as conn:
        return conn.execute(
            "SELECT message_id, enqueued_at, visible_at, visible_at > now() AS in_future"
            " FROM app.queue_messages WHERE queue_name = %s ORDER BY id", (queue_name,)
        ).fetchall()


def make_scheduled_messages_due(database) -> None:
    """Skip the wait of a scheduled retry (the wait itself is the queue's business)."""
    with database.connection() as conn:
        conn.execute("UPDATE app.queue_messages SET visible_at = now()")


def unfinished(database) -> dict[str, int]:
    with database.connection() as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM app.jobs WHERE status IN ('queued', 'processing'))"
            "  ::int AS jobs,"
            " (SELECT count(*) FROM app.tasks WHERE status IN ('queued', 'processing'))"
            "  ::int AS tasks").fetchone()


def open_stage_two(eng) -> None:
    eng.deliver(JOBS_QUEUE), eng.deliver(TASKS_QUEUE), eng.deliver(JOBS_QUEUE)


def test_a_transient_failure_is_retried_by_a_scheduled_message_with_backoff(
        database, engine, monkeypatch):
    # Given a 2 s base and a 3 s cap, and a handler that fails twice with an OSError,
    set_env(monkeypatch, TASK_RETRY_BASE_SECONDS=2, TASK_RETRY_CAP_SECONDS=3)
    retries_seen = []

    def process(params, context):
        retries_seen.append(context["retry"])
        if len(retries_seen) < 3:
            raise OSError("share unreachable")
        return {"processed": params["item"]}

    eng = items_engine(engine, process_item=process)
    job_id = eng.submit("items", {"count": 1})["job_id"]
    open_stage_two(eng)
    task_id = task_id_for(job_id, 2, 0)
    for retry, delay in ((1, 2.0), (2, 3.0)):  # 2 * 2**0, then min(2 * 2**1, 3)
        # When the task fails,
        assert eng.deliver(TASKS_QUEUE) == 1
        # Then it is queued again with one more retry and the error as its result,
        [task] = tasks_of(database, job_id, 2)
        assert (task["status"], task["retry_count"]) == ("queued", retry)
        assert task["result_data"] == {"error": "OSError: share unreachable",
                                       "error_type": "OSError",
                                       "error_category": "transient", "retryable": True}
        # And its one message has a new id and is scheduled between half of `delay` and
        # `delay` seconds ahead (equal jitter).
        [row] = queued_rows(database, TASKS_QUEUE)
        assert row["message_id"] == f"{task_id}:a1:r{retry}"
        assert row["in_future"]
        ahead = (row["visible_at"] - row["enqueued_at"]).total_seconds()
        assert delay / 2 - 0.05 <= ahead < delay + 2.0, ahead
        assert eng.deliver(TASKS_QUEUE) == 0  # not visible before its time
        # And the status view counts the waiting retry as queued.
        stage = eng.status(job_id)["stages"][1]
        assert (stage["queued"], stage["processing"], stage["failed"]) == (1, 0, 0)
        make_scheduled_messages_due(database)
    eng.drain()
    job = eng.status(job_id)
    assert job["status"] == "completed", job["error_details"]
    assert retries_seen == [0, 1, 2]
    assert tasks_of(database, job_id, 2)[0]["retry_count"] == 2


def test_a_task_failing_past_its_retries_fails_the_job_naming_task_stage_and_error(
        database, engine, monkeypatch):
    # Given at most 2 retries and a handler that always fails in an unknown way,
    set_env(monkeypatch, TASK_MAX_RETRIES=2)
    calls = []

    def process(params, context):
        calls.append(context["retry"])
        raise RuntimeError("flaky backend")

    job = items_engine(engine, process_item=process).run("items", {"count": 1})
    # Then it ran 1 + 2 times, and the job failed with the task, stage and error named.
    assert calls == [0, 1, 2]
    task_id = task_id_for(job["job_id"], 2, 0)
    assert job["status"] == "failed"
    assert job["error_details"] == (f"Task {task_id} (stage 2 'process', task 0) failed "
                                    "after 2 retries: RuntimeError: flaky backend")
    [task] = tasks_of(database, job["job_id"], 2)
    assert (task["status"], task["retry_count"]) == ("failed", 2)
    assert task["result_data"]["error_category"] == "unknown"
    assert task["result_data"]["retryable"] is True
    assert [s["total"] for s in job["stages"]] == [1, 1, 0]  # stage 3 never opened
    assert [s["state"] for s in job["stages"]] == ["done", "failed", "not run"]
    assert unfinished(database) == {"jobs": 0, "tasks": 0}


@pytest.mark.parametrize("error", [
    ValueError("bad item"), KeyError("item"), AttributeError("no attribute 'x'"),
    psycopg.errors.UniqueViolation("duplicate key value"),
], ids=lambda e: type(e).__name__)
def test_a_permanent_failure_fails_at_once_and_cancels_the_queued_tasks(
        database, engine, error):
    calls = []

    # Given stage 2's task 1 failing permanently among four,
    def process(params, context):
        calls.append(params["item"])
        if params["item"] == "item-1":
            raise error
        return {"processed": params["item"]}

    job = items_engine(engine, process_item=process).run("items", {"count": 4})
    # Then it ran once, never retried, and the job failed at once with its cause,
    task_id = task_id_for(job["job_id"], 2, 1)
    assert job["status"] == "failed"
    assert job["error_details"] == (f"Task {task_id} (stage 2 'process', task 1) failed: "
                                    f"{type(error).__name__}: {error}")
    assert calls == ["item-0", "item-1"]  # tasks 2 and 3 never ran
    tasks = tasks_of(database, job["job_id"], 2)
    assert [(t["status"], t["retry_count"]) for t in tasks] == [
        ("completed", 0), ("failed", 0), ("cancelled", 0), ("cancelled", 0)]
    assert tasks[1]["result_data"] == {
        "error": f"{type(error).__name__}: {error}", "error_type": type(error).__name__,
        "error_category": "permanent", "retryable": False}
    assert (job["stages"][1]["cancelled"], job["stages"][1]["queued"]) == (2, 0)
    assert unfinished(database) == {"jobs": 0, "tasks": 0}


def test_a_contract_violation_is_never_retried_and_is_logged_with_its_traceback(
        database, engine, caplog):
    caplog.set_level(logging.INFO, logger="core.machine")
    calls = []

    def process(params, context):
        calls.append(context["retry"])
        raise ContractViolationError("wrote outside its folder")

    job = items_engine(engine, process_item=process).run("items", {"count": 1})
    assert job["status"] == "failed" and calls == [0]
    assert job["error_details"].endswith(
        "failed: ContractViolationError: wrote outside its folder")
    [record] = [r for r in caplog.records if r.getMessage().startswith("task failed")]
    assert record.levelno == logging.ERROR and record.error_category == "contract"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ContractViolationError)
    assert record.job_id == job["job_id"] and record.stage == 2


def test_a_task_already_running_finishes_without_advancing_a_failed_job(
        database, engine, queue):
    started, release = threading.Event(), threading.Event()
    calls = []

    # Given stage 2's task 0 held running, task 1 failing, task 2 still queued,
    def process(params, context):
        calls.append(params["item"])
        if params["item"] == "item-0":
            started.set()
            assert release.wait(10), "the test never released task 0"
        if params["item"] == "item-1":
            raise ValueError("corrupt item")
        return {"processed": params["item"]}

    eng = items_engine(engine, process_item=process)
    job_id = eng.submit("items", {"count": 3})["job_id"]
    open_stage_two(eng)
    messages = queue.receive(TASKS_QUEUE, 10)
    assert len(messages) == 3
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.setdefault(
        "task 0", eng.machine.process_task_message(messages[0].body)))
    runner.start()
    try:
        assert started.wait(10)
        # When task 1 fails,
        assert eng.machine.process_task_message(messages[1].body) == "failed"
        # Then the job has failed and task 2 is cancelled before it ever runs,
        assert eng.status(job_id)["status"] == "failed"
        assert [t["status"] for t in tasks_of(database, job_id, 2)] == [
            "processing", "failed", "cancelled"]
        assert eng.machine.process_task_message(messages[2].body) == "job already failed"
    finally:
        release.set()
        runner.join(10)
    # And task 0 finishes, recorded, without moving the job on or changing its error.
    assert outcome == {"task 0": "completed"}
    for message in messages:
        queue.complete(message)
    assert eng.drain() == 0
    job = eng.status(job_id)
    assert job["status"] == "failed"
    assert job["error_details"].startswith(f"Task {task_id_for(job_id, 2, 1)} (stage 2")
    assert sorted(job["stage_results"]) == ["1"] and job["result_data"] is None
    assert calls == ["item-0", "item-1"]
    assert [t["status"] for t in tasks_of(database, job_id, 2)] == [
        "completed", "failed", "cancelled"]
    assert unfinished(database) == {"jobs": 0, "tasks": 0}


def test_a_task_running_past_its_stage_timeout_fails_as_transient_and_is_retried(
        database, engine, caplog):
    caplog.set_level(logging.INFO, logger="core.machine")
    release = threading.Event()
    calls = []

    # Given a stage with a 0.2 s timeout whose first run hangs,
    def process(params, context):
        calls.append(context["retry"])
        if context["retry"] == 0:
            release.wait(10)
        return {"processed": params["item"]}

    try:
        job = items_engine(engine, process_item=process).run("timed_items", {"count": 1})
    finally:
        release.set()  # let the abandoned first run's thread end
    # Then the engine stopped waiting, retried it, and the retry completed the job.
    assert job["status"] == "completed", job["error_details"]
    assert calls == [0, 1]
    [task] = tasks_of(database, job["job_id"], 2)
    assert (task["status"], task["retry_count"]) == ("completed", 1)
    [warning] = [r for r in caplog.records if r.getMessage().startswith("task failed")]
    assert warning.error_type == "TaskTimeoutError"
    assert "(transient), retry 1" in warning.getMessage()
    assert "ran longer than its 0.2 s timeout" in warning.getMessage()
