"""Resubmission (issue "Reliability", point 7): a failed job's parameters run it again as a
new attempt of the same job, keeping the previous error; messages of the old attempt are
ignored; a completed or running job is returned as it is; concurrent resubmits start one
attempt."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from config import JOBS_QUEUE, TASKS_QUEUE, reset_settings
from core.models import JobQueueMessage, TaskQueueMessage
from core.orchestration_manager import task_id_for
from core.submission import submit_job
from infrastructure.repositories import TaskRepository
from jobs import ALL_JOBS
from services import ALL_HANDLERS
from tests.http_calls import submit_json

FAILING = {"n": 2, "failure_rate": 1.0}


@pytest.fixture
def no_retries(monkeypatch):
    monkeypatch.setenv("TASK_MAX_RETRIES", "0")
    reset_settings()


def job_messages(database) -> list[str]:
    with database.connection() as conn:
        return [r["message_id"] for r in conn.execute(
            "SELECT message_id FROM app.queue_messages WHERE queue_name = %s ORDER BY id",
            (JOBS_QUEUE,)).fetchall()]


def failed_job(engine) -> dict:
    job = engine.run("hello_world", FAILING)
    assert job["status"] == "failed" and job["attempt"] == 1
    return job


def test_a_failed_jobs_parameters_run_it_again_as_attempt_2(database, engine, no_retries):
    # Given a job that failed,
    first = failed_job(engine)
    # When its parameters are submitted again,
    outcome = submit_job(engine.machine, "hello_world", FAILING)
    # Then the same job runs again as attempt 2, from stage 1, its old tasks gone,
    assert (outcome.created, outcome.rerun) == (True, True)
    job = engine.status(first["job_id"])
    assert (job["job_id"], job["attempt"], job["status"], job["stage"]) == (
        first["job_id"], 2, "queued", 1)
    assert (job["error_details"], job["result_data"], job["stage_results"]) == (None, None, {})
    assert [s["total"] for s in job["stages"]] == [0, 0]
    assert job_messages(database) == [f"{first['job_id']}:a2:s1"]
    # And the previous attempt's error is kept in the job's metadata.
    [previous] = engine.machine.state_manager.get_job(first["job_id"])["metadata"][
        "previous_attempts"]
    assert (previous["attempt"], previous["error_details"]) == (1, first["error_details"])


def test_a_rerun_completes_once_the_cause_of_the_failure_is_gone(database, engine,
                                                                  no_retries):
    broken = threading.Event()
    broken.set()

    def greeting(params, context):
        if broken.is_set():
            raise OSError("greeting service down")
        return ALL_HANDLERS["hello_world_greeting"](params, context)

    eng = engine.with_jobs(ALL_JOBS, {**ALL_HANDLERS, "hello_world_greeting": greeting})
    first = eng.run("hello_world", {"n": 2})
    assert first["status"] == "failed"
    # When the cause is fixed and the job is submitted again,
    broken.clear()
    assert submit_job(eng.machine, "hello_world", {"n": 2}).rerun
    eng.drain()
    # Then attempt 2 completes, its result whole.
    job = eng.status(first["job_id"])
    assert (job["status"], job["attempt"]) == ("completed", 2)
    assert len(job["result_data"]["replies"]) == 2


def test_a_rerun_uses_the_resubmitted_id_excluded_parameters(database, engine, no_retries):
    first = failed_job(engine)
    # When it is resubmitted with failure_rate 0.0 (left out of the id: the same job),
    outcome = submit_job(engine.machine, "hello_world", {**FAILING, "failure_rate": 0.0})
    assert outcome.rerun and outcome.job["job_id"] == first["job_id"]
    engine.drain()
    # Then attempt 2 runs with it, and completes.
    job = engine.status(first["job_id"])
    assert (job["attempt"], job["parameters"]["failure_rate"]) == (2, 0.0)
    assert job["status"] == "completed", job["error_details"]


def test_messages_of_the_previous_attempt_are_ignored(database, engine, no_retries):
    calls = []

    def greeting(params, context):
        calls.append(params["index"])
        return ALL_HANDLERS["hello_world_greeting"](params, context)

    eng = engine.with_jobs(ALL_JOBS, {**ALL_HANDLERS, "hello_world_greeting": greeting})
    job_id = failed_job(engine)["job_id"]
    submit_job(eng.machine, "hello_world", FAILING)
    calls.clear()
    # Given attempt 2's stage 1 open (its tasks queued),
    eng.deliver(JOBS_QUEUE)
    before = eng.status(job_id)
    stale_job = JobQueueMessage(job_id=job_id, stage=1, attempt=1)
    stale_task = TaskQueueMessage(job_id=job_id, stage=1, attempt=1,
                                  task_id=task_id_for(job_id, 1, 0))
    # When attempt 1's job and task messages arrive late,
    machine = eng.machine
    assert machine.handle_message(JOBS_QUEUE, stale_job.to_json().encode(), "old-1"
                                  ).startswith("stale message")
    assert machine.handle_message(TASKS_QUEUE, stale_task.to_json().encode(), "old-2"
                                  ) == "stale attempt"
    # Then they are ignored: no task ran, nothing changed, nothing dead-lettered.
    assert calls == []
    assert eng.status(job_id) == before
    assert machine.state_manager.dead_letter_count() == 0


def test_a_late_message_for_a_task_the_new_attempt_has_not_made_yet_is_ignored(
        database, engine, no_retries):
    job_id = failed_job(engine)["job_id"]
    submit_job(engine.machine, "hello_world", FAILING)  # attempt 2, stage 1 not yet opened
    stale = TaskQueueMessage(job_id=job_id, stage=2, attempt=1,
                             task_id=task_id_for(job_id, 2, 0))
    outcome = engine.machine.handle_message(TASKS_QUEUE, stale.to_json().encode(), "old-3")
    assert outcome == "stale attempt"
    assert engine.machine.state_manager.dead_letter_count() == 0


def test_over_http_a_rerun_is_201_and_an_existing_job_200(database, engine, no_retries):
    # A failed job's parameters: 201, attempt 2.
    job_id = failed_job(engine)["job_id"]
    code, body = submit_json("hello_world", FAILING)
    assert code == 201, body
    assert (body["job_id"], body["attempt"], body["idempotent"]) == (job_id, 2, False)
    assert "running again as attempt 2" in body["message"]
    # The same parameters while it runs: 200 with its status.
    engine.deliver(JOBS_QUEUE)
    code, body = submit_json("hello_world", FAILING)
    assert code == 200, body
    assert (body["status"], body["attempt"], body["idempotent"]) == ("processing", 2, True)
    # A completed job's parameters: 200 with its result.
    done = engine.run("hello_world", {"n": 1})
    code, body = submit_json("hello_world", {"n": 1})
    assert code == 200, body
    assert (body["job_id"], body["status"]) == (done["job_id"], "completed")
    assert body["result_data"] == done["result_data"]


def test_concurrent_resubmits_of_a_failed_job_start_exactly_one_attempt(
        database, engine, no_retries):
    job_id = failed_job(engine)["job_id"]
    threads = 8
    barrier = threading.Barrier(threads)

    def resubmit(_):
        barrier.wait()
        return submit_job(engine.machine, "hello_world", FAILING)

    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(resubmit, range(threads)))
    assert sum(o.rerun for o in outcomes) == 1
    assert sum(o.created for o in outcomes) == 1
    assert {o.job["job_id"] for o in outcomes} == {job_id}
    job = engine.machine.state_manager.get_job(job_id)
    assert job["attempt"] == 2 and len(job["metadata"]["previous_attempts"]) == 1
    assert job_messages(database) == [f"{job_id}:a2:s1"]
    with database.connection() as conn:
        assert TaskRepository().list_tasks(conn, job_id) == []
