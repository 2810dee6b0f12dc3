"""context["cancelled"]: the engine asks a running handler to stop when it no longer wants
its run (its timeout passed, or its job failed meanwhile), in both task triggers. Python
cannot stop a thread; a handler that checks the event returns early instead of running on."""

from __future__ import annotations

import threading

import pytest

from config import JOBS_QUEUE, TASKS_QUEUE, reset_settings
from core.orchestration_manager import task_id_for
from tests.integration.sample_jobs import ITEMS_HANDLERS, SAMPLE_JOBS
from tests.integration.test_reliability_retries import TimedItemsJob, tasks_of


@pytest.fixture(params=["single", "batch"])
def harness(request, engine, batch_engine):
    return engine if request.param == "single" else batch_engine


def deliver(harness, message) -> None:
    """Handle one received task message as its trigger would."""
    if harness.batch:
        harness.machine.handle_task_batch([(message.body, message.message_id)])
    else:
        harness.machine.handle_message(TASKS_QUEUE, message.body, message.message_id)
    harness.queue.complete(message)


def test_a_handler_past_its_timeout_is_asked_to_stop(database, harness):
    # Given a stage with a 0.2 s timeout whose first run waits to be told to stop,
    told_to_stop, first_run_ended = [], threading.Event()

    def process(params, context):
        if context["retry"] == 0:
            told_to_stop.append(context["cancelled"].wait(10))
            first_run_ended.set()
        return {"processed": params["item"]}

    eng = harness.with_jobs({**SAMPLE_JOBS, "timed_items": TimedItemsJob},
                            {**ITEMS_HANDLERS, "process_item": process})
    job = eng.run("timed_items", {"count": 1})
    # Then the timed-out run was told to stop (not left waiting its 10 s), and the retry
    # completed the job.
    assert first_run_ended.wait(5)
    assert told_to_stop == [True]
    assert job["status"] == "completed", job["error_details"]


def test_a_running_handler_is_asked_to_stop_when_its_job_fails(database, harness,
                                                               monkeypatch):
    # Given leases renewed every 0.1 s, and a stage of two tasks: task 0 fails for good,
    # task 1 works until it is told to stop,
    monkeypatch.setenv("TASK_LEASE_SECONDS", "0.3")
    reset_settings()
    started, told_to_stop = threading.Event(), []

    def process(params, context):
        if context["task_index"] == 0:
            raise ValueError("bad item")
        started.set()
        told_to_stop.append(context["cancelled"].wait(10))
        return {"stopped_early": told_to_stop[-1]}

    eng = harness.with_jobs(SAMPLE_JOBS, {**ITEMS_HANDLERS, "process_item": process})
    job_id = eng.submit("items", {"count": 2})["job_id"]
    eng.deliver(JOBS_QUEUE), eng.deliver(TASKS_QUEUE), eng.deliver(JOBS_QUEUE)
    messages = {m.message_id.split(":")[0]: m for m in eng.queue.receive(TASKS_QUEUE, 10)}
    assert len(messages) == 2
    # When task 1 is running and task 0 then fails the job,
    runner = threading.Thread(target=deliver,
                              args=(eng, messages[task_id_for(job_id, 2, 1)]))
    runner.start()
    assert started.wait(10)
    assert told_to_stop == []
    deliver(eng, messages[task_id_for(job_id, 2, 0)])
    assert eng.status(job_id)["status"] == "failed"
    # Then task 1's handler is told to stop at its next lease renewal, and returns.
    runner.join(10)
    assert not runner.is_alive()
    assert told_to_stop == [True]
    # And nothing is left running.
    assert {t["status"] for t in tasks_of(database, job_id, 2)} <= {
        "failed", "completed", "cancelled"}


def test_a_handler_not_asked_to_stop_sees_the_event_unset(database, harness):
    seen = []

    def process(params, context):
        seen.append(context["cancelled"].is_set())
        return {"processed": params["item"]}

    job = harness.with_jobs(SAMPLE_JOBS, {**ITEMS_HANDLERS, "process_item": process}).run(
        "items", {"count": 3})
    assert job["status"] == "completed", job["error_details"]
    assert seen == [False] * 3
