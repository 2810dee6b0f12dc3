"""Batch mode (the task trigger's cardinality "many"): the same guarantees as one message
at a time, with every outcome of a batch recorded in one transaction."""

from __future__ import annotations

import json
import threading

import pytest

from config import TASKS_QUEUE, reset_settings
from core.models import TaskQueueMessage
from core.orchestration_manager import task_id_for
from jobs.base import JobBase
from jobs.mixins import JobBaseMixin
from tests.integration.sample_jobs import ITEMS_HANDLERS, SAMPLE_JOBS


def stored(database, job_id, stage):
    with database.connection() as conn:
        return conn.execute(
            "SELECT * FROM app.tasks WHERE parent_job_id = %s AND stage = %s"
            " ORDER BY task_index", (job_id, stage)).fetchall()


def commits(database) -> int:
    with database.connection() as conn:
        return conn.execute("SELECT xact_commit FROM pg_stat_database"
                            " WHERE datname = current_database()").fetchone()["xact_commit"]


def test_hello_world_in_batches(batch_engine):
    job = batch_engine.run("hello_world", {"n": 40})
    assert job["status"] == "completed"
    assert [(s["total"], s["completed"]) for s in job["stages"]] == [(40, 40), (40, 40)]
    # Lineage: each reply answers its own greeting.
    assert job["result_data"]["replies"] == [
        f"Replying to: Hello World from task {i}!" for i in range(40)]


def test_every_stage_kind_in_batches(batch_engine):
    job = batch_engine.with_jobs(SAMPLE_JOBS, ITEMS_HANDLERS).run("items", {"count": 12})
    assert job["status"] == "completed", job["error_details"]
    assert job["result_data"]["collected"]["task_indexes"] == list(range(12))


def test_one_failing_task_does_not_fail_its_batch_mates(database, batch_engine, monkeypatch):
    # Given a batch in which one task fails for good (a permanent error),
    monkeypatch.setenv("TASK_MAX_RETRIES", "0")
    reset_settings()
    calls = []

    def process(params, context):
        calls.append(params["item"])
        if params["item"] == "item-3":
            raise ValueError("item-3 is malformed")
        return {"processed": params["item"].upper()}

    eng = batch_engine.with_jobs(SAMPLE_JOBS, {**ITEMS_HANDLERS, "process_item": process})
    job = eng.run("items", {"count": 8})
    # then the job failed naming that task, its batch-mates were recorded as they ran,
    assert job["status"] == "failed"
    assert "(stage 2 'process', task 3) failed: ValueError: item-3 is malformed" in (
        job["error_details"])
    tasks = stored(database, job["job_id"], 2)
    assert {t["task_index"]: t["status"] for t in tasks} == {
        i: ("failed" if i == 3 else "completed") for i in range(8)}
    assert tasks[3]["result_data"]["error_category"] == "permanent"
    # and nothing ran twice.
    assert sorted(calls) == sorted(f"item-{i}" for i in range(8))


def test_transient_failures_retry_alone(database, batch_engine):
    failures = {"item-1": 2}
    lock = threading.Lock()

    def process(params, context):
        with lock:
            if failures.get(params["item"], 0) > 0:
                failures[params["item"]] -= 1
                raise ConnectionError("the storage account blinked")
        return {"processed": params["item"].upper()}

    eng = batch_engine.with_jobs(SAMPLE_JOBS, {**ITEMS_HANDLERS, "process_item": process})
    job = eng.run("items", {"count": 4})
    assert job["status"] == "completed"
    tasks = stored(database, job["job_id"], 2)
    assert [t["retry_count"] for t in tasks] == [0, 2, 0, 0]


def test_a_batch_delivered_twice_counts_each_task_once(database, batch_engine):
    job_id = batch_engine.submit("hello_world", {"n": 10})["job_id"]
    batch_engine.deliver("geospatial-jobs")
    messages = batch_engine.queue.receive(TASKS_QUEUE, 50)
    bodies = [(m.body, m.message_id) for m in messages]
    # When the same batch is handled twice (a redelivery after a lost lock),
    first = batch_engine.machine.handle_task_batch(bodies)
    second = batch_engine.machine.handle_task_batch(bodies)
    batch_engine.queue.complete_many(messages)
    assert first == ["completed"] * 10
    assert second == ["task already completed"] * 10
    batch_engine.drain()
    job = batch_engine.status(job_id)
    assert job["status"] == "completed"
    assert job["stage_results"]["1"]["completed"] == 10


def test_poison_in_a_batch_is_dead_lettered_alone(database, batch_engine):
    job_id = batch_engine.submit("hello_world", {"n": 2})["job_id"]
    batch_engine.deliver("geospatial-jobs")
    messages = batch_engine.queue.receive(TASKS_QUEUE, 50)
    unknown = TaskQueueMessage(job_id=job_id, stage=1, task_id=task_id_for(job_id, 1, 7))
    outcomes = batch_engine.machine.handle_task_batch(
        [(b"not json", "m-1")] + [(m.body, m.message_id) for m in messages]
        + [(unknown.to_json().encode(), "m-2")])
    assert outcomes == ["dead-lettered", "completed", "completed", "dead-lettered"]
    assert batch_engine.machine.state_manager.dead_letter_count() == 2


def test_a_batch_of_tasks_costs_a_fixed_number_of_commits(database, batch_engine):
    # Given stage 1 of a 50-task job opened,
    batch_engine.submit("hello_world", {"n": 50})
    batch_engine.deliver("geospatial-jobs")
    messages = batch_engine.queue.receive(TASKS_QUEUE, 50)
    before = commits(database)
    # when the 50 messages run as one batch,
    batch_engine.machine.handle_task_batch([(m.body, m.message_id) for m in messages])
    # then the engine committed a handful of transactions, not one or two per task:
    # the claim, the recording (which closes the stage and queues stage 2), and what the
    # closing stage sends after it.
    assert commits(database) - before <= 4


class SlowJob(JobBaseMixin, JobBase):
    job_type = "slow"
    description = "one stage whose tasks may outrun a short timeout"
    stages = [{"number": 1, "name": "work", "task_type": "slow_task", "parallelism": "single",
               "timeout_seconds": 0.3}]
    parameters_schema = {"count": {"type": "int", "default": 3}}

    @staticmethod
    def create_tasks_for_stage(stage, job_params, job_id, previous_results=None):
        return [{"parameters": {"index": i}} for i in range(job_params["count"])]

    @staticmethod
    def finalize_job(context):
        return {"done": len(context.task_results)}


def test_a_task_past_its_timeout_fails_alone_and_retries(database, batch_engine, monkeypatch):
    monkeypatch.setenv("TASK_MAX_RETRIES", "1")
    reset_settings()
    release = threading.Event()
    runs = []

    def slow(params, context):
        runs.append((params["index"], context["retry"]))
        if params["index"] == 1 and context["retry"] == 0:
            release.wait(5)  # the first run of task 1 hangs past the timeout
        return {"index": params["index"]}

    eng = batch_engine.with_jobs({"slow": SlowJob}, {"slow_task": slow})
    try:
        job = eng.run("slow", {"count": 3})
    finally:
        release.set()
    assert job["status"] == "completed"
    tasks = stored(database, job["job_id"], 1)
    assert [t["retry_count"] for t in tasks] == [0, 1, 0]
    assert (1, 1) in runs and (2, 0) in runs


@pytest.mark.parametrize("stage", [1, 2])
def test_a_batch_costs_two_engine_transactions_lineage_included(
        database, database_url, batch_engine, tmp_path, monkeypatch, stage):
    from infrastructure import db as db_module, sql_stats
    from infrastructure.db import Database

    # Given a 40-task hello_world job at the given stage (stage 2 reads lineage),
    job_id = batch_engine.submit("hello_world", {"n": 40})["job_id"]
    batch_engine.deliver("geospatial-jobs")
    if stage == 2:
        batch_engine.deliver(TASKS_QUEUE)
        batch_engine.deliver("geospatial-jobs")
    messages = batch_engine.queue.receive(TASKS_QUEUE, 20)  # half: the stage stays open
    assert {json.loads(m.body)["stage"] for m in messages} == {stage}
    # When the 20 messages run as one batch on a connection that counts,
    sql_stats.reset()
    counted = Database(database_url, min_size=1, max_size=2,
                       stats_file=str(tmp_path / "sql")).open()
    monkeypatch.setattr(db_module, "_database", counted)  # the engine's, not the queue's
    try:
        outcomes = batch_engine.machine.handle_task_batch(
            [(m.body, m.message_id) for m in messages])
        stats = sql_stats.snapshot()
    finally:
        monkeypatch.setattr(db_module, "_database", database)
        counted.close()
        sql_stats.reset(stop=True)
    # Then the engine committed exactly two transactions: the claim (which reads the
    # predecessors' results too) and the recording.
    assert outcomes == ["completed"] * 20
    assert stats["transactions"]["engine"] == 2, stats["by_statement"]
    replies = batch_engine.status(job_id)["stages"][stage - 1]
    assert replies["completed"] == 20


def test_a_batch_names_only_a_recorded_failure_as_its_jobs_cause(database, batch_engine):
    from core.models import TaskStatus
    from jobs import ALL_JOBS
    from services import ALL_HANDLERS

    machine = batch_engine.machine

    def greet(params, context):
        if context["task_index"] == 0:
            # Another worker (its lease had lapsed) finished task 0 meanwhile.
            machine.state_manager.complete_task(context["task_id"], TaskStatus.COMPLETED,
                                                {"by": "another worker"}, None, attempt=1)
        raise ValueError(f"task {context['task_index']} broke")

    eng = batch_engine.with_jobs(ALL_JOBS, {**ALL_HANDLERS, "hello_world_greeting": greet})
    machine = eng.machine
    job_id = eng.submit("hello_world", {"n": 2})["job_id"]
    eng.deliver("geospatial-jobs")
    # When both tasks fail in one batch, but only task 1's failure is recorded,
    eng.deliver(TASKS_QUEUE)
    job = eng.status(job_id)
    # Then the job fails naming task 1, not task 0 (which completed).
    assert job["status"] == "failed"
    assert task_id_for(job_id, 1, 1) in job["error_details"], job["error_details"]
    assert task_id_for(job_id, 1, 0) not in job["error_details"], job["error_details"]
    assert job["stages"][0]["completed"] == 1 and job["stages"][0]["failed"] == 1
