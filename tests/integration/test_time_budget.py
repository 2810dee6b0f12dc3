"""The invocation's time budget: a task whose timeout no longer fits before
functionTimeout (less INVOCATION_RESERVE_SECONDS) is not started but handed back: queued
again at once, under a new message id, without using a retry. The embedded queue drops a
message whose id it saw within its duplicate detection window, as Service Bus does."""

from __future__ import annotations

import time

import pytest

from config import TASKS_QUEUE, reset_settings
from infrastructure.queues import OutgoingMessage, set_queue
from infrastructure.queues.embedded import EmbeddedQueue
from tests.harness import EngineHarness
from tests.integration.test_concurrency import Gauge, open_stage, run_concurrently, work_job


@pytest.fixture
def short_budget(monkeypatch):
    # A 3 s invocation with nothing reserved, and a stage whose tasks may take 2 s: a
    # task can start only in the invocation's first second.
    monkeypatch.setenv("FUNCTION_TIMEOUT_SECONDS", "3")
    monkeypatch.setenv("INVOCATION_RESERVE_SECONDS", "0")
    monkeypatch.setenv("TASK_BATCH_CONCURRENCY", "1")
    reset_settings()


def slow_first(params, context):
    if params["index"] == 0:
        time.sleep(1.5)
    return {"index": params["index"]}


def tasks_of(database, job_id):
    with database.connection() as conn:
        return conn.execute("SELECT task_index, status, retry_count FROM app.tasks"
                            " WHERE parent_job_id = %s ORDER BY task_index",
                            (job_id,)).fetchall()


def live_message_ids(database):
    with database.connection() as conn:
        return [r["message_id"] for r in conn.execute(
            "SELECT message_id FROM app.queue_messages WHERE queue_name = %s"
            " AND visible_at <= now() ORDER BY id", (TASKS_QUEUE,)).fetchall()]


def test_a_batch_hands_back_what_no_longer_fits(database, batch_engine, short_budget):
    # Given a batch of 5 tasks run one at a time, the first of which takes 1.5 s,
    eng = batch_engine.with_jobs({"timed": work_job(timeout=2, name="timed")},
                                 {"work": slow_first})
    job = open_stage(eng, 5, job_type="timed")
    messages = eng.queue.receive(TASKS_QUEUE, 5)
    original_ids = {m.message_id for m in messages}
    # when the batch runs,
    outcomes = eng.machine.handle_task_batch([(m.body, m.message_id) for m in messages])
    eng.queue.complete_many(messages)
    # then the first ran, and the other four, whose 2 s no longer fit, were handed back:
    assert outcomes == ["completed"] + ["handed back"] * 4
    # queued again with no retry used, each with a message visible now under a new id,
    rows = tasks_of(database, job["job_id"])
    assert [(r["status"], r["retry_count"]) for r in rows] == (
        [("completed", 0)] + [("queued", 0)] * 4)
    resent = live_message_ids(database)
    assert len(resent) == 4 and not set(resent) & original_ids
    assert all(":h" in message_id for message_id in resent)
    # and the next invocations run them: the job completes, no task retried.
    eng.drain()
    assert eng.status(job["job_id"])["status"] == "completed"
    assert [r["retry_count"] for r in tasks_of(database, job["job_id"])] == [0] * 5


def test_a_single_message_waiting_for_its_stage_cap_is_handed_back(
        database, engine, short_budget):
    # Given a stage capped at one task at a time whose tasks take 1.5 s of a 2 s timeout,
    gauge = Gauge()

    def slow(params, context):
        with gauge:
            time.sleep(1.5)
        return {"index": params["index"]}

    eng = engine.with_jobs({"timed": work_job(cap=1, timeout=2, name="timed")},
                           {"work": slow})
    job = open_stage(eng, 2, job_type="timed")
    # when two of its messages arrive at once, one waits for the other past the
    # point where its timeout still fits: it is handed back, not run,
    outcomes = run_concurrently(eng, 2, batch=False)
    assert sorted(outcomes) == ["completed", "handed back"]
    assert gauge.calls == 1
    # and runs in the next invocation, with no retry used.
    eng.drain()
    assert eng.status(job["job_id"])["status"] == "completed"
    assert [r["retry_count"] for r in tasks_of(database, job["job_id"])] == [0, 0]


def send(queue, *message_ids):
    queue.send(TASKS_QUEUE, [OutgoingMessage(body="{}", message_id=i) for i in message_ids])


def test_the_embedded_queue_drops_a_message_id_seen_within_its_window(database):
    queue = EmbeddedQueue(database, lock_seconds=5, duplicate_window_seconds=0.5)
    # Given a message sent, then again, and twice in one send,
    send(queue, "a")
    send(queue, "a")
    send(queue, "b", "b")
    received = queue.receive(TASKS_QUEUE, 10)
    # then one copy of each arrived;
    assert sorted(m.message_id for m in received) == ["a", "b"]
    # consumed, its id is still remembered within the window,
    queue.complete_many(received)
    send(queue, "a")
    assert queue.receive(TASKS_QUEUE, 10) == []
    # and once the window has passed, the same id is a new message again.
    time.sleep(0.6)
    send(queue, "a")
    assert [m.message_id for m in queue.receive(TASKS_QUEUE, 10)] == ["a"]


def test_expired_message_ids_are_forgotten(database):
    queue = EmbeddedQueue(database, duplicate_window_seconds=0.2)
    send(queue, "x", "y")
    time.sleep(0.3)
    send(queue, "z")
    assert queue.forget_sent_ids() == 2
    with database.connection() as conn:
        assert [r["message_id"] for r in conn.execute(
            "SELECT message_id FROM app.queue_message_ids").fetchall()] == ["z"]


def test_handed_back_tasks_pass_duplicate_detection(database, batch_engine, short_budget):
    # Given the queue's duplicate detection on (as Service Bus's: 10 minutes),
    queue = EmbeddedQueue(database, lock_seconds=5, duplicate_window_seconds=600)
    set_queue(queue)
    eng = EngineHarness(batch_engine.with_jobs(
        {"timed": work_job(timeout=2, name="timed")}, {"work": slow_first}).machine,
        queue, batch=True)
    job = open_stage(eng, 3, job_type="timed")
    messages = queue.receive(TASKS_QUEUE, 3)
    # when a batch hands two tasks back,
    outcomes = eng.machine.handle_task_batch([(m.body, m.message_id) for m in messages])
    queue.complete_many(messages)
    assert outcomes.count("handed back") == 2
    # then their new messages were not dropped (a copy under an old id would be),
    send(queue, messages[1].message_id)
    assert len(live_message_ids(database)) == 2
    eng.drain()
    assert eng.status(job["job_id"])["status"] == "completed"
