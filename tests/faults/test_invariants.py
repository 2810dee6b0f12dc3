"""The invariant checks themselves: on a database where a job ran cleanly they find
nothing; each corruption a crash could cause is found and named. (A check that cannot fail
would make the fault suite pass for nothing.)"""

from __future__ import annotations

import pytest

from config import JOBS_QUEUE
from core.submission import submit_job
from tests.harness import EngineHarness

from .invariants import JobExpectation, Snapshot, continuous_violations, final_violations

pytestmark = pytest.mark.faults

PARAMS = {"n": 3, "message": "checked"}

CORRUPTIONS = {
    "a stage closed with a task not done (another counted off twice)": (
        "UPDATE app.tasks SET status = 'queued' WHERE stage = 1 AND task_index = 0",
        "counted off twice"),
    "a stage counter that missed a task": (
        "UPDATE app.job_stages SET pending = pending + 1 WHERE stage = 2",
        "counted off twice, or never"),
    "a stage advanced twice": (
        "INSERT INTO public.faults_sent (queue_name, message_id, body, app)"
        " SELECT queue_name, message_id, body, 'faults-host-1' FROM public.faults_sent"
        " WHERE message_id LIKE '%:s2'", "sent 2 times"),
    "a message for a stage the job never reached": (
        "INSERT INTO public.faults_sent (queue_name, message_id, body, app)"
        " SELECT queue_name, replace(message_id, ':s2', ':s3'), body, app"
        " FROM public.faults_sent WHERE message_id LIKE '%:s2'", "never reached"),
    "a task's result from another task": (
        "UPDATE app.tasks SET result_data = jsonb_set(result_data, '{task_index}', '7')"
        " WHERE stage = 2 AND task_index = 1", "is not its own"),
    "a reply to another greeting (lineage)": (
        "UPDATE app.tasks SET result_data = jsonb_set(result_data, '{reply}',"
        " '\"Replying to: checked from task 0!\"') WHERE stage = 2 AND task_index = 2",
        "is not its own"),
    "a job result short of a greeting": (
        "UPDATE app.jobs SET result_data = jsonb_set(result_data, '{greetings}',"
        " (result_data->'greetings') - 0)", "greetings and replies"),
    "a job left processing": (
        "UPDATE app.jobs SET status = 'processing'", "not completed or failed"),
    "a task left processing": (
        "UPDATE app.tasks SET status = 'processing', lease_expires_at = now() + interval"
        " '1 hour' WHERE task_index = 0 AND stage = 1", "task_count"),
    "a message left in the queue": (
        "INSERT INTO app.queue_messages (queue_name, message_id, body)"
        " VALUES ('geospatial-tasks', 'left-over', '\\x7b7d')", "still in the queues"),
    "a message left in the outbox": (
        "INSERT INTO app.outbox (job_id, queue_name, message_id, body)"
        " SELECT job_id, 'geospatial-jobs', 'left-over', '{}' FROM app.jobs",
        "left in app.outbox"),
    "a dead letter nobody injected": (
        "INSERT INTO app.dead_letters (queue_name, message_id, body, reason)"
        " VALUES ('geospatial-tasks', 'lost-one', '\\x7b7d', 'why')", "only injected"),
    "a dead-lettered message without a reason": (
        "INSERT INTO app.queue_messages (queue_name, message_id, body, dead_lettered)"
        " VALUES ('geospatial-tasks', 'no-reason', '\\x7b7d', true)", "has no reason"),
}


@pytest.fixture
def finished(world):
    from infrastructure.queues import get_queue

    job = EngineHarness(world.machine, get_queue()).run("hello_world", PARAMS)
    assert job["status"] == "completed"
    return world, [JobExpectation(job["job_id"], PARAMS)]


def test_a_clean_run_has_no_violations(finished):
    world, expected = finished
    snap = Snapshot.take(world.db, full=True)
    assert final_violations(snap, expected) == []
    assert continuous_violations(snap) == []


class Rollback(Exception):
    pass


def test_each_corruption_a_crash_could_cause_is_found(finished):
    world, expected = finished
    missed = {}
    for corruption, (sql, finding) in sorted(CORRUPTIONS.items()):
        # Each corruption alone, read in its own transaction and rolled back.
        try:
            with world.db.transaction() as conn:
                conn.execute(sql)
                found = final_violations(Snapshot.read(conn, full=True), expected)
                raise Rollback
        except Rollback:
            pass
        if not any(finding in f for f in found):
            missed[corruption] = found
    assert missed == {}


def test_an_active_job_whose_message_is_lost_is_found_at_once(world):
    # Given a submitted job whose first message disappears from the queue,
    submit_job(world.machine, "hello_world", PARAMS)
    assert continuous_violations(Snapshot.take(world.db)) == []
    with world.db.connection() as conn:
        conn.execute("DELETE FROM app.queue_messages WHERE queue_name = %s", (JOBS_QUEUE,))
    # Then the continuous check reports it.
    found = continuous_violations(Snapshot.take(world.db))
    assert any("no live message will open it" in f for f in found), found


def test_a_queued_task_without_a_message_is_found_at_once(world):
    from infrastructure.queues import get_queue

    submit_job(world.machine, "hello_world", PARAMS)
    EngineHarness(world.machine, get_queue()).deliver(JOBS_QUEUE)
    with world.db.connection() as conn:
        conn.execute("DELETE FROM app.queue_messages WHERE message_id LIKE '%-t1:a1:r0'")
    found = continuous_violations(Snapshot.take(world.db))
    assert any("has no message" in f for f in found), found
