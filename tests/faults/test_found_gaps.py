"""Crash-safety gaps the fault suite found, each reproduced deterministically in this
process. Each was an xfail(strict=True) while it was open; they are fixed now, and stay as
regression tests:

- a job message dead-lettered by the queue stranded its job: the sweeper now sends it again
  (core/sweeper.py, JobRepository.stranded);
- a worker of an earlier attempt could record its outcome on the new attempt's task of the
  same id: tasks now carry their attempt, and recording, lease renewal and retries require
  it (migration 0003_attempt_guards.sql).
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from config import JOBS_QUEUE, TASKS_QUEUE, reset_settings
from core.orchestration_manager import task_id_for
from core.submission import submit_job
from core.sweeper import Sweeper
from tests.harness import EngineHarness

pytestmark = pytest.mark.faults


def harness(world) -> EngineHarness:
    from infrastructure.queues import get_queue

    return EngineHarness(world.machine, get_queue())


def task_rows(world, job_id: str) -> dict[str, dict]:
    with world.db.connection() as conn:
        rows = conn.execute("SELECT task_id, status, stage, task_index FROM app.tasks"
                            " WHERE parent_job_id = %s", (job_id,)).fetchall()
    return {r["task_id"]: r for r in rows}


def test_a_dead_lettered_job_message_is_sent_again_by_the_sweeper(world, monkeypatch):
    monkeypatch.setenv("SWEEP_AFTER_SECONDS", "0.05")
    reset_settings()
    # Given a job whose first message went to the dead-letter queue (a host crashed in it
    # max-delivery-count times),
    job_id = submit_job(world.machine, "hello_world", {"n": 2, "message": "dead letter"}
                        ).job["job_id"]
    with world.db.connection() as conn:
        conn.execute("UPDATE app.queue_messages SET dead_lettered = true,"
                     " dead_letter_reason = 'MaxDeliveryCountExceeded'")
    # When the sweeper runs long after,
    time.sleep(0.7)
    Sweeper(world.machine).sweep()
    # Then the job's stage 1 message is live in the queue again.
    with world.db.connection() as conn:
        live = conn.execute("SELECT count(*)::int AS n FROM app.queue_messages"
                            " WHERE message_id = %s AND NOT dead_lettered",
                            (f"{job_id}:a1:s1",)).fetchone()["n"]
    assert live == 1


@pytest.mark.parametrize("mode", ["single", "batch"])
def test_a_worker_of_a_previous_attempt_cannot_complete_the_new_attempts_task(world, mode):
    engine = harness(world)
    state = world.machine.state_manager
    # Given attempt 1 with task 0 running (2 s) when task 1 fails the job,
    params = {"n": 2, "message": "attempts", "sleep_seconds": 2}
    job_id = submit_job(world.machine, "hello_world", params).job["job_id"]
    engine.deliver(JOBS_QUEUE)
    t0, t1 = task_id_for(job_id, 1, 0), task_id_for(job_id, 1, 1)
    bodies = {json.loads(m.body)["task_id"]: m.body
              for m in engine.queue.receive(TASKS_QUEUE, 10)}
    outcome: dict = {}
    run = {"single": lambda: world.machine.process_task_message(bodies[t0]),
           "batch": lambda: world.machine.handle_task_batch([(bodies[t0], "old")])}[mode]
    slow = threading.Thread(target=lambda: outcome.setdefault("task 0", run()))
    slow.start()
    try:
        world.wait_for("SELECT 1 FROM app.tasks WHERE task_id = %s AND status = 'processing'",
                       (t0,), timeout=5)
        sibling, _ = state.begin_task(t1, 1, 30)
        assert world.machine.fail_task(sibling, 1, ValueError("permanent")) == "failed"
        # And the job resubmitted: attempt 2 has opened stage 1 again,
        # (sleep_seconds is left out of the job id: attempt 2 runs without the sleep)
        assert submit_job(world.machine, "hello_world", {**params, "sleep_seconds": 0}).rerun
        engine.deliver(JOBS_QUEUE)
        assert task_rows(world, job_id)[t0]["status"] == "queued"
    finally:
        # When the worker of attempt 1 finishes,
        slow.join(10)
    # Then attempt 2's task 0 is untouched: still queued, not counted off, and attempt 2
    # is not failed by anything attempt 1 did.
    assert task_rows(world, job_id)[t0]["status"] == "queued", outcome
    with world.db.connection() as conn:
        stage = conn.execute("SELECT pending, failed FROM app.job_stages WHERE job_id = %s"
                             " AND stage = 1", (job_id,)).fetchone()
    assert stage == {"pending": 2, "failed": 0}
    assert world.machine.state_manager.get_job(job_id)["status"] == "processing"
    # And attempt 2 runs to the end.
    engine.drain()
    assert world.machine.state_manager.get_job(job_id)["status"] == "completed"
