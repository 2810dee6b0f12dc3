"""Queue messages: ids and a format version only, round-tripping through JSON, and parse
turning anything unusable into a MessageFormatError (the trigger drops those)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from core.models import (
    MESSAGE_FORMAT_VERSION, JobQueueMessage, TaskDefinition, TaskQueueMessage,
)
from core.orchestration_manager import task_id_for
from exceptions import MessageFormatError

JOB_ID = "a" * 64
TASK_ID = task_id_for(JOB_ID, 2, 999_999)


@pytest.mark.parametrize("message", [
    JobQueueMessage(job_id=JOB_ID, stage=2, attempt=1),
    TaskQueueMessage(job_id=JOB_ID, stage=2, attempt=1, task_id=TASK_ID, retry=2),
], ids=["job", "task"])
def test_messages_round_trip_through_json(message):
    body = message.to_json()
    assert type(message).parse(body) == message
    assert type(message).parse(body.encode("utf-8")) == message
    assert json.loads(body)["version"] == MESSAGE_FORMAT_VERSION


def test_a_task_message_parses_from_what_the_engine_sends():
    body = json.dumps({"version": 1, "job_id": JOB_ID, "stage": 1, "task_id": TASK_ID})
    message = TaskQueueMessage.parse(body)
    assert (message.job_id, message.stage, message.task_id, message.attempt, message.retry) == (
        JOB_ID, 1, TASK_ID, 1, 0)


@pytest.mark.parametrize(
    "body, problem",
    [
        (b"not json", "body is not JSON"),
        (b"\xff\xfe\x00", "body is not JSON"),
        ("", "body is not JSON"),
        ("[1, 2]", "body is not a JSON object"),
        ('"text"', "body is not a JSON object"),
        ("null", "body is not a JSON object"),
        ('{"job_id": "j", "stage": 1, "task_id": "t"}', "unsupported format version None"),
        ('{"version": 99, "job_id": "j", "stage": 1, "task_id": "t"}',
         "unsupported format version 99; supported: [1, 2]"),
        ('{"version": "1", "job_id": "j", "stage": 1, "task_id": "t"}',
         "unsupported format version '1'"),
        ('{"version": 1, "stage": 1, "task_id": "t"}', "Field required"),
        ('{"version": 1, "job_id": "j", "task_id": "t"}', "Field required"),
        ('{"version": 1, "job_id": "j", "stage": 1}', "Field required"),
        ('{"version": 1, "job_id": "j", "stage": "two", "task_id": "t"}', "valid integer"),
    ],
    ids=["text", "bad-utf8", "empty", "array", "string", "null", "no-version", "version-99",
         "version-as-string", "no-job-id", "no-stage", "no-task-id", "stage-not-int"],
)
def test_unusable_task_messages_are_message_format_errors(body, problem):
    with pytest.raises(MessageFormatError) as raised:
        TaskQueueMessage.parse(body)
    assert problem in str(raised.value)
    assert str(raised.value).startswith("TaskQueueMessage: ")


def test_a_job_message_without_a_stage_is_a_message_format_error():
    with pytest.raises(MessageFormatError, match="JobQueueMessage: Field required"):
        JobQueueMessage.parse('{"version": 1, "job_id": "j"}')


def test_messages_carry_no_parameters():
    # Parameters live in the database; a message that brings some has them ignored.
    for model in (JobQueueMessage, TaskQueueMessage):
        assert "parameters" not in model.model_fields
    body = json.dumps({"version": 1, "job_id": "j", "stage": 1, "task_id": "t",
                       "parameters": {"huge": "x" * 10_000}})
    assert "parameters" not in TaskQueueMessage.parse(body).to_json()


def test_messages_stay_small_with_the_longest_ids():
    # Service Bus allows 256 KB; the engine's messages stay under 1 KB whatever the job.
    assert len(TASK_ID) <= 128
    task = TaskQueueMessage(job_id=JOB_ID, stage=99, attempt=99, task_id=TASK_ID, retry=99)
    job = JobQueueMessage(job_id=JOB_ID, stage=99, attempt=99)
    assert len(task.to_json().encode()) < 1024
    assert len(job.to_json().encode()) < 1024


def test_messages_are_immutable():
    message = JobQueueMessage(job_id="j", stage=1)
    with pytest.raises(ValidationError, match="frozen"):
        message.stage = 2  # type: ignore[misc]
    assert message.stage == 1


def test_a_task_definition_refuses_unknown_fields():
    with pytest.raises(ValidationError, match="priority"):
        TaskDefinition(task_id="t", task_type="x", stage=1, task_index=0, priority=1)
