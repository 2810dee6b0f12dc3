"""Messages that can never succeed (issue "Reliability", point 2): each is recorded once in
app.dead_letters and completed (the function returns), and nothing else changes; a job or
handler removed by a deploy fails its job with the cause instead of leaving it hanging."""

from __future__ import annotations

import json

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage

from config import JOBS_QUEUE, TASKS_QUEUE
from core.machine import CoreMachine
from core.models import JobQueueMessage, TaskQueueMessage
from core.orchestration_manager import task_id_for
from infrastructure.repositories import TaskRepository
from jobs import ALL_JOBS
from jobs.hello_world import HelloWorldJob
from services import ALL_HANDLERS
from tests.harness import EngineHarness
from tests.integration.sample_jobs import ITEMS_HANDLERS, SAMPLE_JOBS
from triggers import health, queue_triggers

JOB_FN = queue_triggers.process_job_message.build().get_user_function()
TASK_FN = queue_triggers.process_task_message.build().get_user_function()
BATCH_FN = queue_triggers.process_task_batch.build().get_user_function()
DETAILS_FN = health.health_details.build().get_user_function()
UNKNOWN_JOB = "0" * 64


def service_bus_message(body: bytes, message_id: str) -> ServiceBusMessage:
    return ServiceBusMessage(body=body, message_id=message_id, application_properties={},
                             user_properties={}, delivery_count=1)


def dead_letters(database) -> list[dict]:
    with database.connection() as conn:
        return conn.execute("SELECT queue_name, message_id, body, reason"
                            " FROM app.dead_letters ORDER BY id").fetchall()


def snapshot(database) -> dict[str, list]:
    """Everything the engine keeps, but the dead letters."""
    with database.connection() as conn:
        return {table: conn.execute(f"SELECT * FROM app.{table} ORDER BY 1, 2").fetchall()
                for table in ("jobs", "tasks", "job_stages", "outbox", "queue_messages")}


def tasks_of(database, job_id: str) -> list[dict]:
    with database.connection() as conn:
        return TaskRepository().list_tasks(conn, job_id)


def body(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (JobQueueMessage, TaskQueueMessage)):
        return value.to_json().encode()
    return json.dumps(value).encode()


POISON = {
    "not-json": (JOBS_QUEUE, b"{not json", "body is not JSON"),
    "not-utf8": (TASKS_QUEUE, b"\xff\xfe\x00", "body is not JSON"),
    "array": (JOBS_QUEUE, b"[1, 2]", "body is not a JSON object"),
    "string": (TASKS_QUEUE, b'"run task 1"', "body is not a JSON object"),
    "version-99": (JOBS_QUEUE, {"version": 99, "job_id": UNKNOWN_JOB, "stage": 1},
                   "unsupported format version 99"),
    "no-version": (TASKS_QUEUE, {"job_id": UNKNOWN_JOB, "stage": 1, "task_id": "t"},
                   "unsupported format version None"),
    "no-job-id": (JOBS_QUEUE, {"version": 1, "stage": 1}, "JobQueueMessage: Field required"),
    "no-task-id": (TASKS_QUEUE, {"version": 1, "job_id": UNKNOWN_JOB, "stage": 1},
                   "TaskQueueMessage: Field required"),
    "job-id-a-number": (JOBS_QUEUE, {"version": 1, "job_id": 7, "stage": 1},
                        "Input should be a valid string"),
    "unknown-job": (JOBS_QUEUE, JobQueueMessage(job_id=UNKNOWN_JOB, stage=1),
                    f"job message for unknown job {UNKNOWN_JOB}"),
    "unknown-task": (TASKS_QUEUE, TaskQueueMessage(job_id=UNKNOWN_JOB, stage=1,
                                                   task_id="no-such-task"),
                     "task message for unknown task no-such-task"),
}


@pytest.fixture
def busy(engine):
    """A job in progress (stage 1 opened, its tasks queued), so "nothing else changes"
    has something to change."""
    job_id = engine.submit("hello_world", {"n": 2})["job_id"]
    engine.deliver(JOBS_QUEUE)
    return job_id


@pytest.mark.parametrize("via", ["machine", "trigger"])
def test_each_poison_message_is_dead_lettered_once_and_changes_nothing(
        database, engine, busy, via):
    before = snapshot(database)
    for number, (case, (queue_name, value, reason)) in enumerate(POISON.items(), start=1):
        raw, message_id = body(value), f"poison-{case}"
        # When the message arrives, through CoreMachine or through the real trigger,
        if via == "machine":
            outcome = engine.machine.handle_message(queue_name, raw, message_id)
            assert outcome == "dead-lettered", case
        else:
            function = JOB_FN if queue_name == JOBS_QUEUE else TASK_FN
            # the function returns: the host completes the message
            assert function(service_bus_message(raw, message_id)) is None, case
        # Then it is recorded once, with its queue, id, body and why,
        rows = dead_letters(database)
        assert len(rows) == number, case
        assert (rows[-1]["queue_name"], rows[-1]["message_id"], bytes(rows[-1]["body"])) == (
            queue_name, message_id, raw), case
        assert reason in rows[-1]["reason"], (case, rows[-1]["reason"])
    # And nothing else changed.
    assert snapshot(database) == before


def test_poison_task_messages_in_one_batch_are_each_dead_lettered(database, engine, busy):
    cases = {case: spec for case, spec in POISON.items() if spec[0] == TASKS_QUEUE}
    before = snapshot(database)
    # When the task queue's batch trigger gets every poison task message at once,
    batch = [service_bus_message(body(value), f"poison-{case}")
             for case, (_, value, _) in cases.items()]
    assert BATCH_FN(batch) is None  # returns: the host completes them all
    # Then each is recorded once, with its id, body and why, and nothing else changed.
    rows = dead_letters(database)
    assert [(r["queue_name"], r["message_id"], bytes(r["body"])) for r in rows] == [
        (TASKS_QUEUE, f"poison-{case}", body(value)) for case, (_, value, _) in cases.items()]
    for row, (case, (_, _, reason)) in zip(rows, cases.items()):
        assert reason in row["reason"], (case, row["reason"])
    assert snapshot(database) == before


def test_an_id_postgresql_cannot_hold_is_dead_lettered(database, engine):
    # Given valid JSON whose ids hold a NUL character (written \u0000),
    for queue_name, value in (
        (JOBS_QUEUE, {"version": 1, "job_id": "a\x00b", "stage": 1}),
        (TASKS_QUEUE, {"version": 1, "job_id": "a", "stage": 1, "task_id": "t\x00"}),
    ):
        raw = json.dumps(value).encode()
        # Then it is a message that can never succeed, recorded and completed.
        assert engine.machine.handle_message(queue_name, raw, queue_name) == "dead-lettered"
    assert [r["message_id"] for r in dead_letters(database)] == [JOBS_QUEUE, TASKS_QUEUE]


def test_health_details_report_the_dead_letter_count(database, engine):
    def details() -> dict:
        response = DETAILS_FN(func.HttpRequest("GET", "/api/health/details", body=b""))
        assert response.status_code == 200
        return json.loads(response.get_body())

    assert details()["dead_letters"] == 0
    for number in range(3):
        engine.machine.handle_message(TASKS_QUEUE, b"garbage", f"m-{number}")
    assert details()["dead_letters"] == 3


def test_a_job_whose_type_was_removed_fails_with_the_cause(database, engine):
    # Given an items job stored by a machine that knows it,
    job_id = engine.with_jobs(SAMPLE_JOBS, ITEMS_HANDLERS).submit("items", {"count": 2})[
        "job_id"]
    # When a machine deployed without that job type gets its message,
    after_deploy = EngineHarness(CoreMachine(ALL_JOBS, ALL_HANDLERS), engine.queue)
    after_deploy.drain()
    # Then the job fails naming the missing type; it does not wait forever.
    job = after_deploy.status(job_id)
    assert job["status"] == "failed"
    assert job["error_details"] == ("Stage 1: Unknown job type 'items'. Available: "
                                    + ", ".join(sorted(ALL_JOBS)))
    assert tasks_of(database, job_id) == [] and dead_letters(database) == []


def test_a_job_whose_type_was_removed_mid_run_fails_when_its_stage_closes(database, engine):
    # Given an items job whose stage 1 is open (its one task queued),
    eng = engine.with_jobs(SAMPLE_JOBS, ITEMS_HANDLERS)
    job_id = eng.submit("items", {"count": 2})["job_id"]
    eng.deliver(JOBS_QUEUE)
    # When a machine that still has the handlers but not the job runs the task,
    after_deploy = EngineHarness(CoreMachine({}, ITEMS_HANDLERS), engine.queue)
    after_deploy.drain()
    # Then the job fails naming the missing job type, with nothing left running.
    job = after_deploy.status(job_id)
    assert job["status"] == "failed"
    assert "items" in job["error_details"]
    assert {t["status"] for t in tasks_of(database, job_id)} <= {"completed", "failed"}


class RenamedGreetingJob(HelloWorldJob):
    """hello_world after a deploy that renamed its greeting handler."""

    stages = [{**HelloWorldJob.stages[0], "task_type": "greeting_v2"},
              HelloWorldJob.stages[1]]


def test_a_task_whose_handler_was_removed_fails_its_job_and_is_dead_lettered(
        database, engine):
    # Given hello_world's stage 1 open with two greeting tasks queued,
    job_id = engine.submit("hello_world", {"n": 2})["job_id"]
    engine.deliver(JOBS_QUEUE)
    # When a deploy without the 'hello_world_greeting' handler gets their messages,
    handlers = {"greeting_v2": ALL_HANDLERS["hello_world_greeting"],
                "hello_world_reply": ALL_HANDLERS["hello_world_reply"]}
    after_deploy = EngineHarness(
        CoreMachine({"hello_world": RenamedGreetingJob}, handlers), engine.queue)
    after_deploy.drain()
    # Then the job fails with the cause, the first message is dead-lettered,
    job = after_deploy.status(job_id)
    first = task_id_for(job_id, 1, 0)
    assert job["status"] == "failed"
    assert job["error_details"] == (
        f"Task {first} (stage 1 'greeting', task 0) failed: ContractViolationError: no "
        "handler for task type 'hello_world_greeting' in ALL_HANDLERS")
    [row] = dead_letters(database)
    assert (row["queue_name"], row["reason"]) == (
        TASKS_QUEUE, "unknown task type 'hello_world_greeting'")
    assert row["message_id"].startswith(f"{first}:a1:r0")
    # And the other task, never run, is cancelled: nothing is left queued or running.
    assert [t["status"] for t in tasks_of(database, job_id)] == ["failed", "cancelled"]
    assert engine.queue.counts(TASKS_QUEUE)["active"] == 0
