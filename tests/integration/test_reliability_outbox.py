"""Sending through the outbox (issue "Reliability", point 8): when the queue is down, a
submit answers 503, yet the job and its first message are stored; a resubmit or the
sweeper sends that message later with the same message_id, and the job completes. The
sweeper's timer trigger runs the sweep."""

from __future__ import annotations

import time

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from config import JOBS_QUEUE, TASKS_QUEUE, reset_settings
from core.machine import CoreMachine
from core.models import TaskQueueMessage
from core.orchestration_manager import task_id_for
from core.sweeper import Sweeper
from exceptions import QueueError
from infrastructure.outbox import Outbox
from infrastructure.queues import QueueSender, set_queue
from jobs.hello_world import HelloWorldJob
from tests.harness import EngineHarness
from tests.http_calls import submit_json
from tests.integration.sample_jobs import ITEMS_HANDLERS, SAMPLE_JOBS
from triggers import sweeper

SWEEP_FN = sweeper.sweep.build().get_user_function()
PARAMS = {"n": 2}


class RecordingFlakyQueue(QueueSender):
    """The real queue, except that the next `failures` sends to one queue fail, as a
    Service Bus outage would; every attempted send's message ids are recorded. It has no
    send_in, so the engine stores messages in app.outbox and sends them after commit."""

    def __init__(self, inner: QueueSender, fail_on: str, failures: int = 1):
        self.inner, self.fail_on, self.failures = inner, fail_on, failures
        self.attempts: list[tuple[str, list[str], bool]] = []

    def send(self, queue_name, messages):
        failing = queue_name == self.fail_on and self.failures > 0
        self.attempts.append((queue_name, [m.message_id for m in messages], not failing))
        if failing:
            self.failures -= 1
            raise QueueError(f"{queue_name}: service unavailable")
        self.inner.send(queue_name, messages)


def rows(database, table: str) -> list[dict]:
    with database.connection() as conn:
        return conn.execute(f"SELECT queue_name, message_id FROM app.{table} ORDER BY id"
                            ).fetchall()


def hello_job_id(params: dict) -> str:
    return HelloWorldJob.generate_job_id(HelloWorldJob.validate_job_parameters(params))


@pytest.fixture
def outage(engine) -> RecordingFlakyQueue:
    """The process's queue fails its next send to the jobs queue."""
    flaky = RecordingFlakyQueue(engine.queue, fail_on=JOBS_QUEUE)
    set_queue(flaky)
    return flaky


def submitted_during_an_outage(database) -> str:
    # When a job is submitted over HTTP while the queue is down,
    code, body = submit_json("hello_world", PARAMS)
    # Then the caller is told to try again, but the job and its first message are stored.
    assert code == 503, body
    job_id = hello_job_id(PARAMS)
    with database.connection() as conn:
        job = conn.execute("SELECT status, attempt FROM app.jobs WHERE job_id = %s",
                           (job_id,)).fetchone()
    assert job == {"status": "queued", "attempt": 1}
    assert rows(database, "outbox") == [{"queue_name": JOBS_QUEUE,
                                         "message_id": f"{job_id}:a1:s1"}]
    assert rows(database, "queue_messages") == []
    return job_id


def test_a_resubmit_after_a_failed_send_sends_the_stored_message(database, engine, outage):
    job_id = submitted_during_an_outage(database)
    # When the caller submits again once the queue is back,
    code, body = submit_json("hello_world", PARAMS)
    assert code == 200 and body["job_id"] == job_id and body["status"] == "queued"
    # Then the stored message is sent, with its id, and the job runs to the end.
    assert rows(database, "outbox") == []
    assert rows(database, "queue_messages") == [{"queue_name": JOBS_QUEUE,
                                                 "message_id": f"{job_id}:a1:s1"}]
    engine.drain()
    assert engine.status(job_id)["status"] == "completed"


def test_the_sweeper_sends_a_message_a_failed_send_left(database, engine, outage,
                                                         monkeypatch):
    job_id = submitted_during_an_outage(database)
    machine = engine.machine
    # A sweep leaves a message younger than SWEEP_AFTER_SECONDS (default 60 s) alone;
    assert Sweeper(machine).sweep()["messages_sent"] == 0
    assert len(rows(database, "outbox")) == 1
    # once it is older (the setting must be > 0), the sweep sends it, with its id.
    monkeypatch.setenv("SWEEP_AFTER_SECONDS", "0.001")
    reset_settings()
    assert Sweeper(machine).sweep() == {
        "stranded_jobs_resent": 0, "messages_sent": 1, "lapsed_tasks": 0,
        "orphans_cancelled": 0, "stale_tasks_resent": 0, "jobs_finalized": 0,
        "stage_openings_resumed": 0, "jobs_purged": 0}
    assert rows(database, "outbox") == []
    assert [r["message_id"] for r in rows(database, "queue_messages")] == [
        f"{job_id}:a1:s1"]
    engine.drain()
    assert engine.status(job_id)["status"] == "completed"


def test_the_outbox_keeps_message_ids_when_it_sends_again(database, engine):
    # Given the task queue failing once, when stage 2's task messages are first sent,
    flaky = RecordingFlakyQueue(engine.queue, fail_on=TASKS_QUEUE, failures=0)
    eng = EngineHarness(CoreMachine(SAMPLE_JOBS, ITEMS_HANDLERS, queue=flaky), engine.queue)
    job_id = eng.submit("items", {"count": 3})["job_id"]
    eng.deliver(JOBS_QUEUE), eng.deliver(TASKS_QUEUE)  # stage 1 ran
    flaky.failures = 1
    with pytest.raises(QueueError):
        eng.deliver(JOBS_QUEUE)  # the job message is abandoned: delivered again later
    assert len(rows(database, "outbox")) == 3
    # When the redelivered job message finds the stage opened and sends what is left,
    eng.drain()
    # Then the resend carried exactly the ids of the failed send: each message once.
    expected = [TaskQueueMessage(job_id=job_id, stage=2, task_id=task_id_for(job_id, 2, i)
                                 ).message_id for i in range(3)]
    task_sends = [(ids, ok) for queue_name, ids, ok in flaky.attempts
                  if queue_name == TASKS_QUEUE and len(ids) == 3]
    assert task_sends == [(expected, False), (expected, True)]
    assert eng.status(job_id)["status"] == "completed"


def test_the_timer_trigger_runs_a_sweep(database, engine):
    # Given a queued task whose message was lost long ago,
    job_id = engine.submit("hello_world", {"n": 1})["job_id"]
    engine.deliver(JOBS_QUEUE)
    task_id = task_id_for(job_id, 1, 0)
    with database.connection() as conn:
        conn.execute("DELETE FROM app.queue_messages")
        conn.execute("UPDATE app.tasks SET due_at = now() - interval '1 day'"
                     " WHERE task_id = %s", (task_id,))
    # When the timer fires (the function the host calls, with a real TimerRequest),
    assert SWEEP_FN(TimerRequest(past_due=True)) is None
    # Then the message is sent again and the job completes.
    assert [r["message_id"] for r in rows(database, "queue_messages")] == [
        f"{task_id}:a1:r0"]
    engine.drain()
    assert engine.status(job_id)["status"] == "completed"


def test_the_sweeper_is_registered_as_a_timer_trigger_every_minute():
    app = func.FunctionApp()
    app.register_functions(sweeper.bp)
    [function] = app.get_functions()
    [binding] = function.get_bindings_dict()["bindings"]
    assert function.get_function_name() == "sweep"
    assert (binding["type"], binding["schedule"]) == ("timerTrigger", "0 */1 * * * *")


def test_a_stage_larger_than_a_flush_chunk_is_sent_at_once(database, engine, monkeypatch):
    # Given a queue that sends after commit (as Service Bus does) and flushes of 40 messages,
    monkeypatch.setattr(Outbox, "chunk_size", 40)
    flaky = RecordingFlakyQueue(engine.queue, fail_on=TASKS_QUEUE, failures=0)
    eng = EngineHarness(CoreMachine(SAMPLE_JOBS, ITEMS_HANDLERS, queue=flaky), engine.queue)
    job_id = eng.submit("items", {"count": 100})["job_id"]
    eng.deliver(JOBS_QUEUE), eng.deliver(TASKS_QUEUE)  # stage 1 listed 100 items
    # When the job message opens stage 2 (100 tasks),
    eng.deliver(JOBS_QUEUE)
    # Then all 100 task messages are sent by that delivery, in chunks, none left behind
    # for the sweeper, and the job runs to the end.
    assert rows(database, "outbox") == []
    sends = [len(ids) for queue_name, ids, ok in flaky.attempts if queue_name == TASKS_QUEUE]
    assert sends[-3:] == [40, 40, 20]
    eng.drain()
    assert eng.status(job_id)["status"] == "completed"


def test_a_sweep_sends_every_chunk_a_failed_send_left(database, engine, monkeypatch):
    # Given 100 task messages left in the outbox by failed sends, and flushes of 40,
    monkeypatch.setattr(Outbox, "chunk_size", 40)
    flaky = RecordingFlakyQueue(engine.queue, fail_on=TASKS_QUEUE, failures=0)
    machine = CoreMachine(SAMPLE_JOBS, ITEMS_HANDLERS, queue=flaky)
    eng = EngineHarness(machine, engine.queue)
    job_id = eng.submit("items", {"count": 100})["job_id"]
    eng.deliver(JOBS_QUEUE), eng.deliver(TASKS_QUEUE)
    flaky.failures = 1
    with pytest.raises(QueueError):
        eng.deliver(JOBS_QUEUE)
    engine.queue.receive(JOBS_QUEUE, 10)  # the job message is locked: only the sweep sends
    assert len(rows(database, "outbox")) == 100
    # When one sweep finds them old enough (and their tasks not yet stale: 10 s),
    monkeypatch.setenv("SWEEP_AFTER_SECONDS", "1")
    reset_settings()
    time.sleep(1.1)
    # Then it sends them all, each once.
    assert Sweeper(machine).sweep()["messages_sent"] == 100
    assert rows(database, "outbox") == []
    sent = [m["message_id"] for m in rows(database, "queue_messages")
            if m["queue_name"] == TASKS_QUEUE]
    assert len(sent) == len(set(sent)) == 100
    eng.drain()
    assert eng.status(job_id)["status"] == "completed"
