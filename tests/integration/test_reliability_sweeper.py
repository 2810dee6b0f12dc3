"""The sweeper (issue "Reliability", point 8): what a stopped process leaves between two
steps is re-driven: a task whose lease lapsed runs again as a retry (or fails its job past
its retries), a queued task whose message was lost gets it again, a job whose last stage
closed unfinalized is finalized; several sweepers at once handle each item once.

Stuck states are made as a dead worker would leave them, with SQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from config import JOBS_QUEUE, TASKS_QUEUE, reset_settings
from core.machine import CoreMachine
from core.orchestration_manager import task_id_for
from core.sweeper import Sweeper
from infrastructure.repositories import TaskRepository
from jobs import ALL_JOBS
from services import ALL_HANDLERS
from tests.harness import EngineHarness
from tests.integration.sample_jobs import ITEMS_HANDLERS, SAMPLE_JOBS, ItemsJob

NOTHING = {"messages_sent": 0, "lapsed_tasks": 0, "orphans_cancelled": 0,
           "stale_tasks_resent": 0, "stranded_jobs_resent": 0, "jobs_finalized": 0,
           "stage_openings_resumed": 0, "jobs_purged": 0}


def sql(database, statement: str, *params) -> None:
    with database.connection() as conn:
        conn.execute(statement, params)


def tasks_of(database, job_id: str, stage: int | None = None) -> list[dict]:
    with database.connection() as conn:
        return TaskRepository().list_tasks(conn, job_id, stage)


def task_messages(database) -> list[str]:
    with database.connection() as conn:
        return [r["message_id"] for r in conn.execute(
            "SELECT message_id FROM app.queue_messages WHERE queue_name = %s ORDER BY id",
            (TASKS_QUEUE,)).fetchall()]


def worker_died_running(database, task_id: str, retry_count: int = 0) -> None:
    """The task was taken (its message completed) by a worker that stopped renewing it."""
    sql(database, "DELETE FROM app.queue_messages WHERE message_id LIKE %s", f"{task_id}:%")
    sql(database, "UPDATE app.tasks SET status = 'processing', retry_count = %s,"
                  " lease_expires_at = now() - interval '1 minute' WHERE task_id = %s",
        retry_count, task_id)


def message_lost(database, task_id: str) -> None:
    """The queued task's message vanished long ago."""
    sql(database, "DELETE FROM app.queue_messages WHERE message_id LIKE %s", f"{task_id}:%")
    sql(database, "UPDATE app.tasks SET due_at = now() - interval '1 day' WHERE task_id = %s",
        task_id)


def sweep_concurrently(count: int) -> list[dict[str, int]]:
    """`count` sweepers, each with its own machine, released at the same instant; their
    reports."""
    barrier = threading.Barrier(count)

    def sweep(_):
        barrier.wait()
        return Sweeper(CoreMachine(ALL_JOBS, ALL_HANDLERS)).sweep()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(sweep, range(count)))


def stage_one_open(engine, n: int) -> str:
    job_id = engine.submit("hello_world", {"n": n})["job_id"]
    engine.deliver(JOBS_QUEUE)
    return job_id


def test_a_task_whose_lease_lapsed_runs_again_as_a_retry(database, engine):
    job_id = stage_one_open(engine, 2)
    task_id = task_id_for(job_id, 1, 0)
    worker_died_running(database, task_id)
    # When the sweeper runs,
    assert Sweeper(engine.machine).sweep() == {**NOTHING, "lapsed_tasks": 1}
    # Then the task is queued again as retry 1, with a message of its own,
    [task, other] = tasks_of(database, job_id, 1)
    assert (task["status"], task["retry_count"]) == ("queued", 1)
    assert task["result_data"]["error_type"] == "WorkerLostError"
    assert f"{task_id}:a1:r1" in task_messages(database)
    # And the job completes.
    engine.drain()
    assert engine.status(job_id)["status"] == "completed"


def test_a_lapsed_task_past_its_retries_fails_the_job_with_the_cause(
        database, engine, monkeypatch):
    monkeypatch.setenv("TASK_MAX_RETRIES", "2")
    reset_settings()
    job_id = stage_one_open(engine, 2)
    task_id = task_id_for(job_id, 1, 1)
    worker_died_running(database, task_id, retry_count=2)
    assert Sweeper(engine.machine).sweep() == {**NOTHING, "lapsed_tasks": 1}
    job = engine.status(job_id)
    assert job["status"] == "failed"
    assert job["error_details"] == (
        f"Task {task_id} (stage 1 'greeting', task 1) failed after 2 retries: "
        "WorkerLostError: the task's lease lapsed: the worker running it stopped")
    assert [t["status"] for t in tasks_of(database, job_id)] == ["cancelled", "failed"]


def test_a_queued_task_whose_message_was_lost_gets_it_again(database, engine):
    job_id = stage_one_open(engine, 2)
    task_id = task_id_for(job_id, 1, 1)
    message_lost(database, task_id)
    # A task due only recently is left alone; one due long ago is sent again.
    sql(database, "UPDATE app.tasks SET due_at = now() WHERE task_id = %s",
        task_id_for(job_id, 1, 0))
    assert Sweeper(engine.machine).sweep() == {**NOTHING, "stale_tasks_resent": 1}
    assert task_messages(database) == [f"{task_id_for(job_id, 1, 0)}:a1:r0",
                                       f"{task_id}:a1:r0"]
    engine.drain()
    assert engine.status(job_id)["status"] == "completed"


class CountingFinalizeJob(ItemsJob):
    """ItemsJob whose finalize_job counts its calls and, when `gate` is set, waits for a
    second concurrent call (up to a bound), so an overlap cannot be missed."""

    job_type = "counting_finalize"
    calls: list[str] = []
    gate: threading.Event | None = None

    @staticmethod
    def finalize_job(context):
        CountingFinalizeJob.calls.append(context.job_id)
        gate = CountingFinalizeJob.gate
        if gate is not None:
            if len(CountingFinalizeJob.calls) > 1:
                gate.set()
            else:
                gate.wait(1.0)
        return ItemsJob.finalize_job(context)


@pytest.fixture
def counting():
    CountingFinalizeJob.calls, CountingFinalizeJob.gate = [], None
    yield CountingFinalizeJob
    CountingFinalizeJob.calls, CountingFinalizeJob.gate = [], None


def closed_but_not_finalized(database, engine, count: int = 2) -> tuple[EngineHarness, str]:
    """A job whose last stage closed, by the machine, in a process that stopped before
    finalizing it. (The engine finalizes in the transaction that closes the last stage;
    a job left like this comes from a version that did it in a transaction of its own,
    so the machine is made to do that here.)"""
    eng = engine.with_jobs({**SAMPLE_JOBS, "counting_finalize": CountingFinalizeJob},
                           ITEMS_HANDLERS)
    eng.machine.state_manager.finalizer = None  # finalize after the closing commit,
    eng.machine.finalize = lambda job_id: None  # which never comes: the process stops
    job_id = eng.submit("counting_finalize", {"count": count})["job_id"]
    eng.drain()
    del eng.machine.finalize
    eng.machine.state_manager.finalizer = eng.machine._conclude
    job = eng.status(job_id)
    assert (job["status"], job["stage"], sorted(job["stage_results"])) == (
        "processing", 3, ["1", "2", "3"])
    return eng, job_id


def test_a_job_whose_last_stage_closed_unfinalized_is_finalized(database, engine, counting):
    eng, job_id = closed_but_not_finalized(database, engine)
    # A stage closed only now is not yet the sweeper's business,
    assert Sweeper(eng.machine).sweep() == NOTHING
    # one closed long ago is.
    sql(database, "UPDATE app.job_stages SET completed_at = now() - interval '1 hour'")
    assert Sweeper(eng.machine).sweep() == {**NOTHING, "jobs_finalized": 1}
    job = eng.status(job_id)
    assert job["status"] == "completed", job["error_details"]
    assert job["result_data"]["processed"] == ["ITEM-0", "ITEM-1"]
    assert counting.calls == [job_id]
    assert Sweeper(eng.machine).sweep() == NOTHING


def test_concurrent_sweeps_resend_each_lost_message_once(database, engine):
    job_ids = [stage_one_open(engine, n) for n in (3, 4)]
    lost = [task_id_for(j, 1, i) for j, n in zip(job_ids, (3, 4)) for i in range(n)]
    for task_id in lost:
        message_lost(database, task_id)
    # When six sweepers run at once,
    reports = sweep_concurrently(6)
    # Then each lost message was sent again by exactly one of them,
    assert sum(r["stale_tasks_resent"] for r in reports) == 7
    assert sorted(task_messages(database)) == sorted(f"{t}:a1:r0" for t in lost)
    # And both jobs complete.
    engine.drain()
    assert {engine.status(j)["status"] for j in job_ids} == {"completed"}


class SelectedBeforeAnotherSweep(TaskRepository):
    """Lists lapsed leases, then lets another sweeper run a whole pass before the caller
    goes on: two sweepers whose passes overlap, made deterministic."""

    def __init__(self, other_pass):
        self.other_pass = other_pass

    def lapsed_leases(self, conn, limit):
        candidates = super().lapsed_leases(conn, limit)
        self.other_pass()
        return candidates


def test_a_lapsed_task_another_sweeper_re_drove_meanwhile_is_not_re_driven_again(
        database, engine):
    job_id = stage_one_open(engine, 3)
    lapsed = [task_id_for(job_id, 1, i) for i in range(3)]
    for task_id in lapsed:
        worker_died_running(database, task_id)
    # Given sweeper B's whole pass falls between sweeper A's listing and its claims,
    reports = {}
    sweeper_a = Sweeper(engine.machine)
    sweeper_a.tasks = SelectedBeforeAnotherSweep(
        lambda: reports.setdefault("b", Sweeper(engine.machine).sweep()))
    reports["a"] = sweeper_a.sweep()
    # Then B re-drove each task once and A, finding them re-queued, left them alone.
    assert reports["b"]["lapsed_tasks"] == 3
    assert [t["retry_count"] for t in tasks_of(database, job_id)] == [1, 1, 1]
    assert reports["a"]["lapsed_tasks"] == 0


def test_concurrent_sweeps_finalize_a_job_once(database, engine, counting):
    eng, job_id = closed_but_not_finalized(database, engine)
    sql(database, "UPDATE app.job_stages SET completed_at = now() - interval '1 hour'")
    counting.gate = threading.Event()  # a finalize waits (1 s at most) for a second one
    barrier = threading.Barrier(4)

    def sweep(_):
        barrier.wait()
        return Sweeper(eng.machine).sweep()

    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(sweep, range(4)))
    assert eng.status(job_id)["status"] == "completed"
    assert counting.calls == [job_id]
    assert sum(r["jobs_finalized"] for r in reports) == 1


def test_a_lapsed_task_of_a_failed_job_is_not_left_processing(database, engine):
    def process(params, context):
        if params["item"] == "item-1":
            raise ValueError("corrupt item")
        return {"processed": params["item"]}

    eng = engine.with_jobs(SAMPLE_JOBS, {**ITEMS_HANDLERS, "process_item": process})
    job_id = eng.submit("items", {"count": 2})["job_id"]
    eng.deliver(JOBS_QUEUE), eng.deliver(TASKS_QUEUE), eng.deliver(JOBS_QUEUE)
    # Given task 0's worker died while task 1 failed the job,
    worker_died_running(database, task_id_for(job_id, 2, 0))
    eng.drain()
    assert eng.status(job_id)["status"] == "failed"
    # When the sweeper runs, Then no task of the failed job is left processing.
    Sweeper(eng.machine).sweep()
    assert [t["status"] for t in tasks_of(database, job_id, 2)] != ["processing", "failed"]
    assert eng.status(job_id)["stages"][1]["processing"] == 0


def test_one_job_the_sweeper_cannot_finalize_does_not_stop_the_others(
        database, engine, counting):
    # Given two unfinalized jobs, one of a type the sweeping deploy no longer has,
    eng, orphan = closed_but_not_finalized(database, engine)
    eng.machine.finalize = lambda job_id: None
    hello = eng.with_jobs(ALL_JOBS, ALL_HANDLERS)
    hello.machine.finalize = lambda job_id: None
    known = hello.submit("hello_world", {"n": 1})["job_id"]
    hello.drain()
    sql(database, "UPDATE app.job_stages SET completed_at = now() - interval '1 hour'")
    # When a sweeper of that deploy runs, Then it finishes its pass and ends both jobs.
    Sweeper(CoreMachine(ALL_JOBS, ALL_HANDLERS)).sweep()
    assert eng.status(known)["status"] == "completed"
    assert eng.status(orphan)["status"] == "failed"
    assert "counting_finalize" in eng.status(orphan)["error_details"]
