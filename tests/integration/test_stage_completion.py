"""The engine's central guarantee: however many workers complete a stage's tasks at once,
and however often each completion is delivered, exactly one completion closes the stage.

Each call below is StateManager.complete_task in its own pooled connection and transaction,
as concurrent task triggers run it."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.models import JobRecord, JobStatus, TaskDefinition, TaskStatus
from core.orchestration_manager import task_id_for
from core.state_manager import StageClosure, StateManager
from infrastructure.repositories import JobRepository, TaskRepository
from jobs import ALL_JOBS

WORKERS = 16


def seed_stage(database, job_id: str, count: int, pre_completed: int = 0) -> list[str]:
    """A hello_world job at stage 1 with `count` tasks, the first `pre_completed` done."""
    ids = [task_id_for(job_id, 1, i) for i in range(count)]
    with database.transaction() as conn:
        JobRepository().insert_job(conn, JobRecord(
            job_id=job_id, job_type="hello_world", total_stages=2, status="processing"))
        TaskRepository().insert_tasks(conn, job_id, "hello_world", [
            TaskDefinition(task_id=t, task_type="hello_world_greeting", stage=1, task_index=i)
            for i, t in enumerate(ids)])
        TaskRepository().create_stage(conn, job_id, 1, count)
        for t in ids[:pre_completed]:
            TaskRepository().complete_task(conn, t, "completed", {}, None)
    return ids


def stage_row(database, job_id: str) -> dict:
    with database.connection() as conn:
        return TaskRepository().get_stage(conn, job_id, 1)


def run_together(calls_per_worker: list[list], complete) -> list:
    """Start every worker at the same moment; return every call's result."""
    barrier = threading.Barrier(len(calls_per_worker))

    def work(calls):
        barrier.wait()
        return [complete(*call) for call in calls]

    with ThreadPoolExecutor(len(calls_per_worker)) as pool:
        return [r for results in pool.map(work, calls_per_worker) for r in results]


def deliver_all_at_once(database, job_id, failing_every):
    """200 tasks, each delivered 2 or 3 times, in shuffled order, by 16 workers at once."""
    task_ids = seed_stage(database, job_id, 200)
    rng = random.Random(7)
    outcome = {t: (TaskStatus.FAILED if failing_every and i % failing_every == 3
                   else TaskStatus.COMPLETED) for i, t in enumerate(task_ids)}
    calls = [(t, outcome[t]) for t in task_ids for _ in range(rng.choice((2, 3)))]
    rng.shuffle(calls)
    manager = StateManager(ALL_JOBS)

    def complete(task_id, status):
        if status is TaskStatus.FAILED:
            return manager.complete_task(task_id, status, None, f"{task_id} broke")
        return manager.complete_task(task_id, status, {"task": task_id}, None)

    results = run_together([calls[w::WORKERS] for w in range(WORKERS)], complete)
    return task_ids, outcome, [r for r in results if r is not None], manager


def test_many_workers_with_duplicates_close_the_stage_exactly_once(database):
    # Given 200 tasks delivered 2-3 times each, when 16 workers complete them at once,
    job_id = "c" * 64
    task_ids, outcome, closures, manager = deliver_all_at_once(database, job_id, None)
    # then exactly one call closed the stage and moved the job on,
    assert closures == [StageClosure("next", job_id, 1, next_stage=2)]
    row = stage_row(database, job_id)
    assert (row["pending"], row["failed"], row["task_count"]) == (0, 0, 200)
    assert row["completed_at"] is not None
    job = manager.get_job(job_id)
    assert job["status"] == "processing" and job["stage"] == 2
    # the stage's summary was stored once, with the right counts,
    assert list(job["stage_results"]) == ["1"]
    summary = job["stage_results"]["1"]
    assert (summary["tasks"], summary["completed"], summary["failed"]) == (200, 200, 0)
    # and every task kept the outcome of its first delivery.
    with database.connection() as conn:
        stored = {t["task_id"]: t for t in TaskRepository().list_tasks(conn, job_id)}
    assert all(stored[t]["status"] == "completed" for t in task_ids)


def test_failures_among_concurrent_duplicates_fail_the_job_exactly_once(database):
    # Given the same, with every tenth task failing,
    job_id = "d" * 64
    task_ids, outcome, closures, manager = deliver_all_at_once(database, job_id, 10)
    # then the first failure failed the job, once, naming its task,
    assert closures == [StageClosure("failed", job_id, 1)]
    job = manager.get_job(job_id)
    assert job["status"] == "failed" and job["stage"] == 1
    assert job["stage_results"] == {}  # the stage never closed: the job ended first
    failing = [t for t in task_ids if outcome[t] is TaskStatus.FAILED]
    assert any(job["error_details"] == f"{t} broke" for t in failing)
    # and every task ended: with its own outcome, or cancelled before it ran.
    with database.connection() as conn:
        stored = {t["task_id"]: t for t in TaskRepository().list_tasks(conn, job_id)}
    assert all(stored[t]["status"] in (outcome[t].value, "cancelled") for t in task_ids)
    assert sum(stored[t]["status"] == "failed" for t in failing) >= 1


@pytest.mark.parametrize("duplicated", [False, True], ids=["one-each", "both-each"])
def test_the_last_two_tasks_finishing_together_close_the_stage_once(database, duplicated):
    manager = StateManager(ALL_JOBS)
    rounds = 30
    for n in range(rounds):
        # Given a stage of 5 tasks of which 3 are done,
        job_id = f"{n:02d}" + "d" * 62
        task_ids = seed_stage(database, job_id, 5, pre_completed=3)
        last_two = task_ids[3:]
        # When two workers finish the last two at the same moment (or each finishes both,
        # in opposite orders, as duplicate deliveries would),
        if duplicated:
            work = [[(last_two[0],), (last_two[1],)], [(last_two[1],), (last_two[0],)]]
        else:
            work = [[(last_two[0],)], [(last_two[1],)]]
        results = run_together(
            work, lambda t: manager.complete_task(t, TaskStatus.COMPLETED, {"t": t}, None))
        # Then exactly one of them closes the stage and the job moves to stage 2 once.
        closures = [r for r in results if r is not None]
        assert closures == [StageClosure("next", job_id, 1, next_stage=2)], f"round {n}"
        assert stage_row(database, job_id)["pending"] == 0
        job = manager.get_job(job_id)
        assert job["stage"] == 2 and job["stage_results"]["1"]["completed"] == 5


def test_completing_a_task_of_an_ended_job_closes_nothing(database):
    # Given a job that ended (a sibling failed it) while its last task was running,
    job_id = "e" * 64
    task_ids = seed_stage(database, job_id, 2, pre_completed=1)
    manager = StateManager(ALL_JOBS)
    assert manager.end_job(job_id, JobStatus.FAILED, None, "ended elsewhere")
    # When the last task completes, the stage's count reaches zero but the job stays ended.
    assert manager.complete_task(task_ids[1], TaskStatus.COMPLETED, {}, None) is None
    job = manager.get_job(job_id)
    assert (job["status"], job["stage"], job["stage_results"]) == ("failed", 1, {})
    assert stage_row(database, job_id)["pending"] == 0

