"""Opening a stage: the builder runs outside any transaction (so it may do I/O, with core's
resources), its transient failures re-send the job message after a backoff, and a stage
too large for one transaction opens in chunks from a stored list that a crash resumes."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from config import JOBS_QUEUE, TASKS_QUEUE, reset_settings
from core.state_manager import StateManager
from core.sweeper import Sweeper
from exceptions import TransientError
from jobs.base import JobBase
from jobs.mixins import JobBaseMixin
from tests.integration.sample_jobs import ITEMS_HANDLERS, ItemsJob


def one(database, sql: str, *params) -> Any:
    with database.connection() as conn:
        row = conn.execute(sql, params).fetchone()
    return next(iter(row.values())) if row else None


class CountingItemsJob(ItemsJob):
    """ItemsJob, counting its builder's calls by stage."""

    job_type = "counting_items"
    calls: list[int] = []

    @staticmethod
    def create_tasks_for_stage(stage, job_params, job_id, previous_results=None):
        CountingItemsJob.calls.append(stage)
        return ItemsJob.create_tasks_for_stage(stage, job_params, job_id, previous_results)


class FlakyBuilderJob(ItemsJob):
    """Stage 2's builder fails transiently the first `flaky` times it is called."""

    job_type = "flaky_builder"
    parameters_schema = {**ItemsJob.parameters_schema,
                         "flaky": {"type": "int", "min": 0, "default": 1}}
    calls: list[int] = []

    @staticmethod
    def create_tasks_for_stage(stage, job_params, job_id, previous_results=None):
        FlakyBuilderJob.calls.append(stage)
        if stage == 2 and FlakyBuilderJob.calls.count(2) <= job_params["flaky"]:
            raise TransientError("the item list is not readable yet")
        return ItemsJob.create_tasks_for_stage(stage, job_params, job_id, previous_results)


@pytest.fixture
def jobs(engine):
    CountingItemsJob.calls = []
    FlakyBuilderJob.calls = []
    return engine.with_jobs({"counting_items": CountingItemsJob, "flaky_builder": FlakyBuilderJob,
                             "io_builder": IoBuilderJob}, ITEMS_HANDLERS)


def test_a_builder_failing_transiently_once_is_retried_under_a_new_message_id(database, jobs):
    # Given a stage 2 builder whose first call raises TransientError,
    job = jobs.submit("flaky_builder", {"count": 3, "flaky": 1})
    jobs.deliver(JOBS_QUEUE)  # stage 1 opens
    jobs.deliver(TASKS_QUEUE)  # its task closes it: stage 2's message goes out
    # When stage 2's message is handled,
    assert jobs.deliver(JOBS_QUEUE) == 1
    # Then the job waits on a job message sent again, under a new id, scheduled later,
    ids = [r["message_id"] for r in rows(database, JOBS_QUEUE)]
    assert ids == [f"{job['job_id']}:a1:s2:b1"]
    assert one(database, "SELECT metadata->'stage_build_retries' AS r FROM app.jobs"
                         " WHERE job_id = %s", job["job_id"]) == {"2": 1}
    # and when it comes due, the builder runs again and the job completes.
    jobs.drain()
    final = jobs.status(job["job_id"])
    assert final["status"] == "completed", final["error_details"]
    assert FlakyBuilderJob.calls == [1, 2, 2]  # stage 3 is fan_in: core builds it
    assert [s["completed"] for s in final["stages"]] == [1, 3, 1]


def rows(database, queue_name: str) -> list[dict]:
    with database.connection() as conn:
        return conn.execute("SELECT * FROM app.queue_messages WHERE queue_name = %s"
                            " ORDER BY id", (queue_name,)).fetchall()


def test_a_builder_failing_transiently_past_its_retries_fails_the_job_naming_the_stage(
        database, jobs, monkeypatch):
    monkeypatch.setenv("TASK_MAX_RETRIES", "2")
    reset_settings()
    # Given a builder that always fails transiently, When the job runs,
    final = jobs.run("flaky_builder", {"count": 3, "flaky": 99})
    # Then it is called once and retried twice, and the job fails naming the stage.
    assert FlakyBuilderJob.calls.count(2) == 3
    assert final["status"] == "failed"
    assert final["error_details"] == (
        "Stage 2: FlakyBuilderJob.create_tasks_for_stage failed after 2 retries: "
        "TransientError: the item list is not readable yet")
    assert [s["total"] for s in final["stages"]] == [1, 0, 0]


class IoBuilderJob(JobBaseMixin, JobBase):
    """Stage 1 makes one task per column of a table it reads through core's resources,
    and checks from another connection that it holds no lock on its job's row."""

    job_type = "io_builder"
    description = "A builder that does I/O"
    stages = [{"number": 1, "name": "columns", "task_type": "process_item",
               "parallelism": "dynamic"}]
    parameters_schema = {"table": {"type": "str", "required": True},
                         "dsn": {"type": "str", "required": True}}
    id_excluded_parameters = ("dsn",)

    @staticmethod
    def create_tasks_for_stage(stage, job_params, job_id, previous_results=None,
                               resources=None):
        with psycopg.connect(job_params["dsn"], autocommit=True) as conn:
            # NOWAIT: fails at once if the opening transaction held the job's row.
            conn.execute("SELECT 1 FROM app.jobs WHERE job_id = %s FOR UPDATE NOWAIT",
                         (job_id,))
        columns = resources.tables.columns("public", job_params["table"])
        return [{"parameters": {"item": c["name"]}} for c in columns]

    @staticmethod
    def finalize_job(context):
        return {"columns": [t.result_data["processed"] for t in context.task_results]}


def test_a_builder_runs_outside_any_transaction_and_reads_through_core_resources(
        database, database_url, jobs):
    with database.connection() as conn:
        conn.execute("CREATE TABLE public.parcels (id int, owner text, area float8)")
    final = jobs.run("io_builder", {"table": "parcels", "dsn": database_url})
    assert final["status"] == "completed", final["error_details"]
    assert final["result_data"] == {"columns": ["ID", "OWNER", "AREA"]}


@pytest.fixture
def chunked(monkeypatch):
    monkeypatch.setenv("STAGE_CHUNK_SIZE", "10")
    reset_settings()


def test_a_large_stage_opens_in_chunks_and_runs_every_task_once(database, jobs, chunked):
    final = jobs.run("counting_items", {"count": 35})
    assert final["status"] == "completed", final["error_details"]
    assert [s["completed"] for s in final["stages"]] == [1, 35, 1]
    assert CountingItemsJob.calls == [1, 2]
    assert one(database, "SELECT count(*) AS n FROM app.stage_plans") == 0


def test_the_stage_is_created_with_its_full_task_count_before_its_chunks(database, jobs,
                                                                         chunked, monkeypatch):
    # Given a stage of 35 tasks in chunks of 10, whose opener dies after storing the list
    job = opened_until_crash(jobs, monkeypatch, {"count": 35}, crash_on_call=1)
    # Then the stage exists with its count fixed, one chunk inserted and three stored;
    stage = stage_row(database, job["job_id"], 2)
    assert (stage["task_count"], stage["pending"]) == (35, 35)
    assert count_tasks(database, job["job_id"], 2) == 10
    assert one(database, "SELECT count(*) AS n FROM app.stage_plans") == 3


def stage_row(database, job_id: str, stage: int) -> dict:
    with database.connection() as conn:
        return conn.execute("SELECT * FROM app.job_stages WHERE job_id = %s AND stage = %s",
                            (job_id, stage)).fetchone()


def count_tasks(database, job_id: str, stage: int) -> int:
    return one(database, "SELECT count(*) AS n FROM app.tasks WHERE parent_job_id = %s"
                         " AND stage = %s", job_id, stage)


def opened_until_crash(jobs, monkeypatch, params: dict, crash_on_call: int) -> dict:
    """Submit, run stage 1, and handle stage 2's message with a process that dies at the
    crash_on_call-th stored chunk (the message stays undelivered, as after a crash)."""
    real = StateManager.open_next_chunk
    calls = []

    def dying(self, job_id, stage):
        calls.append(stage)
        if len(calls) == crash_on_call:
            raise SystemExit("the process died between chunks")
        return real(self, job_id, stage)

    job = jobs.submit("counting_items", params)
    jobs.deliver(JOBS_QUEUE)
    jobs.deliver(TASKS_QUEUE)
    monkeypatch.setattr(StateManager, "open_next_chunk", dying)
    with pytest.raises(SystemExit):
        jobs.deliver(JOBS_QUEUE)
    monkeypatch.setattr(StateManager, "open_next_chunk", real)
    # The dead process's lock on the message lapses (here at once, not after 5 s).
    with jobs.machine.state_manager.db.connection() as conn:
        conn.execute("UPDATE app.queue_messages SET locked_until = now() WHERE queue_name = %s",
                     (JOBS_QUEUE,))
    return job


@pytest.mark.parametrize("crash_on_call", [1, 2])
def test_a_crash_between_chunks_resumes_from_the_stored_list(database, jobs, chunked,
                                                             monkeypatch, crash_on_call):
    job = opened_until_crash(jobs, monkeypatch, {"count": 35}, crash_on_call)
    inserted = count_tasks(database, job["job_id"], 2)
    assert inserted == 10 * crash_on_call
    # When the tasks inserted so far all run, the stage still cannot close (the last-task
    # rule counts all 35),
    jobs.deliver(TASKS_QUEUE, batch=100)
    stage = stage_row(database, job["job_id"], 2)
    assert stage["pending"] == 35 - inserted and stage["completed_at"] is None
    assert jobs.status(job["job_id"])["stage"] == 2
    # and when the job message comes again, the rest is inserted from the stored list,
    # never by calling the builder again, and every task runs once.
    final_status = drain_and_status(jobs, job["job_id"])
    assert final_status["status"] == "completed", final_status["error_details"]
    assert CountingItemsJob.calls == [1, 2]
    assert [s["completed"] for s in final_status["stages"]] == [1, 35, 1]
    assert len(final_status["result_data"]["processed"]) == 35


def drain_and_status(jobs, job_id: str) -> dict:
    jobs.drain()
    return jobs.status(job_id)


def test_the_sweeper_resumes_a_stage_whose_opener_died(database, jobs, chunked,
                                                       monkeypatch):
    job = opened_until_crash(jobs, monkeypatch, {"count": 35}, crash_on_call=1)
    # Given the job message is gone (dead-lettered, say),
    with database.connection() as conn:
        conn.execute("DELETE FROM app.queue_messages WHERE queue_name = %s", (JOBS_QUEUE,))
    monkeypatch.setenv("SWEEP_AFTER_SECONDS", "0.001")
    reset_settings()
    # When the sweeper runs, Then it inserts the stored chunks,
    assert Sweeper(jobs.machine).sweep()["stage_openings_resumed"] == 1
    assert count_tasks(database, job["job_id"], 2) == 35
    # and the job completes without its builder being called again.
    final = drain_and_status(jobs, job["job_id"])
    assert final["status"] == "completed", final["error_details"]
    assert CountingItemsJob.calls == [1, 2]


def test_a_job_failing_while_chunks_wait_drops_them(database, jobs, chunked, monkeypatch):
    job = opened_until_crash(jobs, monkeypatch, {"count": 35}, crash_on_call=1)
    # Given a task of the inserted chunk that fails for good,
    failing = engine_with(jobs, process_item=lambda p, c: (_ for _ in ()).throw(
        ValueError("bad item")))
    failing.deliver(TASKS_QUEUE, batch=1)
    assert failing.status(job["job_id"])["status"] == "failed"
    # Then no stored chunk is left to insert, and a late job message inserts nothing.
    assert one(database, "SELECT count(*) AS n FROM app.stage_plans") == 0
    failing.drain()
    assert count_tasks(database, job["job_id"], 2) == 10


def engine_with(jobs, **handlers):
    return jobs.with_jobs(jobs.machine.jobs_registry, {**ITEMS_HANDLERS, **handlers})


def test_a_large_stage_in_chunks_runs_in_batch_mode_too(database, batch_engine, chunked):
    CountingItemsJob.calls = []
    eng = batch_engine.with_jobs({"counting_items": CountingItemsJob}, ITEMS_HANDLERS)
    final = eng.run("counting_items", {"count": 47})
    assert final["status"] == "completed", final["error_details"]
    assert [s["completed"] for s in final["stages"]] == [1, 47, 1]


def test_an_empty_stage_still_closes_at_once(database, jobs, chunked):
    final = jobs.run("counting_items", {"count": 0})
    assert final["status"] == "completed", final["error_details"]
    assert [s["total"] for s in final["stages"]] == [1, 0, 1]
