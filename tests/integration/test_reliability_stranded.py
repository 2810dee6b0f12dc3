"""Lost job messages (issue "Reliability", points 6 and 8): a job that reached a stage but
whose job message never opened it (the queue dead-lettered it after max delivery count)
gets that message again from the sweeper, once, with its own message id, and runs to the
end; a job whose message is merely waiting (young, or stored in the outbox) is left alone.
Poison messages delivered again are recorded once."""

from __future__ import annotations

import pytest

from config import JOBS_QUEUE, TASKS_QUEUE
from core.machine import CoreMachine
from core.sweeper import Sweeper
from exceptions import QueueError
from infrastructure.queues import set_queue
from jobs import ALL_JOBS
from services import ALL_HANDLERS
from tests.harness import EngineHarness
from tests.integration.test_reliability_outbox import RecordingFlakyQueue, hello_job_id
from tests.integration.test_reliability_sweeper import sweep_concurrently


def sql(database, statement: str, *params) -> list[dict]:
    with database.connection() as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def live_job_messages(database) -> list[str]:
    return [r["message_id"] for r in sql(
        database, "SELECT message_id FROM app.queue_messages WHERE queue_name = %s"
                  " AND NOT dead_lettered ORDER BY id", JOBS_QUEUE)]


def dead_lettered_long_ago(database, job_id: str) -> None:
    """The job's pending job message went to the dead-letter queue, and the job has waited
    an hour since it reached its stage."""
    sql(database, "UPDATE app.queue_messages SET dead_lettered = true,"
                  " dead_letter_reason = 'MaxDeliveryCountExceeded'"
                  " WHERE queue_name = %s AND NOT dead_lettered", JOBS_QUEUE)
    sql(database, "UPDATE app.jobs SET updated_at = now() - interval '1 hour'"
                  " WHERE job_id = %s", job_id)


def test_a_dead_lettered_next_stage_message_is_sent_again_and_the_job_completes(
        database, engine):
    # Given a job whose stage 1 ran and whose stage 2 message was dead-lettered,
    job_id = engine.submit("hello_world", {"n": 3})["job_id"]
    engine.deliver(JOBS_QUEUE), engine.deliver(TASKS_QUEUE)
    assert engine.status(job_id)["stage"] == 2
    dead_lettered_long_ago(database, job_id)
    assert live_job_messages(database) == []
    # When the sweeper runs,
    report = Sweeper(engine.machine).sweep()
    # Then it sends that message again, with its own id, and the job completes;
    assert report["stranded_jobs_resent"] == 1, report
    assert live_job_messages(database) == [f"{job_id}:a1:s2"]
    engine.drain()
    assert engine.status(job_id)["status"] == "completed"
    # And once the stage is open, nothing is sent again.
    assert Sweeper(engine.machine).sweep()["stranded_jobs_resent"] == 0


def test_a_job_message_lost_recently_is_left_for_later(database, engine):
    # Given a job whose first message was dead-lettered a moment ago (the default
    # SWEEP_AFTER_SECONDS of 60 s: a job message is resent after 10 minutes),
    job_id = engine.submit("hello_world", {"n": 2})["job_id"]
    sql(database, "UPDATE app.queue_messages SET dead_lettered = true")
    # When the sweeper runs, it sends nothing yet;
    assert Sweeper(engine.machine).sweep()["stranded_jobs_resent"] == 0
    # once the job has waited long enough, it sends the message once.
    dead_lettered_long_ago(database, job_id)
    assert Sweeper(engine.machine).sweep()["stranded_jobs_resent"] == 1
    assert Sweeper(engine.machine).sweep()["stranded_jobs_resent"] == 0
    assert live_job_messages(database) == [f"{job_id}:a1:s1"]


def test_concurrent_sweeps_resend_each_stranded_job_once(database, engine):
    job_ids = [engine.submit("hello_world", {"n": n})["job_id"] for n in (1, 2, 3)]
    for job_id in job_ids:
        dead_lettered_long_ago(database, job_id)
    reports = sweep_concurrently(6)
    assert sum(r["stranded_jobs_resent"] for r in reports) == 3
    assert sorted(live_job_messages(database)) == sorted(f"{j}:a1:s1" for j in job_ids)
    engine.drain()
    assert {engine.status(j)["status"] for j in job_ids} == {"completed"}


def test_ended_jobs_are_never_resent(database, engine):
    # A failed job that never opened its stage (its tasks could not be built), long ago.
    job_id = engine.submit("hello_world", {"n": 2})["job_id"]
    sql(database, "UPDATE app.jobs SET status = 'failed', error_details = 'broke',"
                  " updated_at = now() - interval '1 hour'")
    sql(database, "DELETE FROM app.queue_messages")
    assert Sweeper(engine.machine).sweep()["stranded_jobs_resent"] == 0
    assert live_job_messages(database) == []
    assert engine.status(job_id)["status"] == "failed"


def test_a_job_whose_message_waits_in_the_outbox_is_sent_once(database, engine):
    # Given the Service Bus path (messages stored in app.outbox, sent after commit) and a
    # submit whose send failed an hour ago,
    flaky = RecordingFlakyQueue(engine.queue, fail_on=JOBS_QUEUE)
    set_queue(flaky)
    eng = EngineHarness(CoreMachine(ALL_JOBS, ALL_HANDLERS), engine.queue)
    with pytest.raises(QueueError):  # submit answers 503; the job and message are stored
        eng.submit("hello_world", {"n": 2})
    job_id = hello_job_id({"n": 2})
    sql(database, "UPDATE app.outbox SET created_at = now() - interval '1 hour'")
    sql(database, "UPDATE app.jobs SET updated_at = now() - interval '1 hour'")
    # When the sweeper runs,
    report = Sweeper(eng.machine).sweep()
    # Then the stored message is sent (by the outbox step), and only that one.
    assert (report["stranded_jobs_resent"], report["messages_sent"]) == (0, 1), report
    sends = [ids for queue_name, ids, ok in flaky.attempts if queue_name == JOBS_QUEUE and ok]
    assert sends == [[f"{job_id}:a1:s1"]]
    eng.drain()
    assert eng.status(job_id)["status"] == "completed"


def test_a_poison_message_delivered_again_is_recorded_once(database, engine, batch_engine):
    body, message_id = b"{not json", "poison-twice"
    # When the same poison message arrives three times, on either trigger,
    assert engine.machine.handle_message(JOBS_QUEUE, body, message_id) == "dead-lettered"
    assert engine.machine.handle_message(JOBS_QUEUE, body, message_id) == "dead-lettered"
    assert engine.machine.handle_task_batch([(body, message_id)]) == ["dead-lettered"]
    assert engine.machine.handle_task_batch([(body, message_id)]) == ["dead-lettered"]
    # Then each queue records it once.
    rows = sql(database, "SELECT queue_name, message_id FROM app.dead_letters ORDER BY id")
    assert rows == [{"queue_name": JOBS_QUEUE, "message_id": message_id},
                    {"queue_name": TASKS_QUEUE, "message_id": message_id}]
