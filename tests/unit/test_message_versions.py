"""Messages in flight survive a deploy: the engine reads the previous format version and
writes the current one."""

import json

import pytest

from core.models import (
    MESSAGE_FORMAT_VERSION, SUPPORTED_MESSAGE_VERSIONS, JobQueueMessage, TaskQueueMessage,
)
from exceptions import MessageFormatError

JOB = "a" * 64


def test_the_engine_writes_the_current_version():
    body = json.loads(JobQueueMessage(job_id=JOB, stage=1).to_json())
    assert body["version"] == MESSAGE_FORMAT_VERSION == 2
    assert body["sent_at"] is not None


def test_a_version_1_message_still_reads():
    # Given bodies as the previous release wrote them (no sent_at),
    job_v1 = json.dumps({"version": 1, "job_id": JOB, "stage": 2, "attempt": 3})
    task_v1 = json.dumps({"version": 1, "job_id": JOB, "stage": 1, "attempt": 1,
                          "task_id": JOB + "-s1-t0", "retry": 2})
    # When the current engine reads them, then they mean what they meant.
    job = JobQueueMessage.parse(job_v1)
    task = TaskQueueMessage.parse(task_v1)
    assert (job.job_id, job.stage, job.attempt, job.sent_at) == (JOB, 2, 3, None)
    assert (task.task_id, task.retry, task.message_id) == (
        JOB + "-s1-t0", 2, f"{JOB}-s1-t0:a1:r2")
    assert 1 in SUPPORTED_MESSAGE_VERSIONS


@pytest.mark.parametrize("body", [
    {"version": True, "job_id": JOB, "stage": 1},
    {"version": 3, "job_id": JOB, "stage": 1},
    {"version": "2", "job_id": JOB, "stage": 1},
    {"version": 2, "job_id": JOB, "stage": True},
    {"version": 2, "job_id": JOB, "stage": "1"},
    {"version": 2, "job_id": 5, "stage": 1},
])
def test_versions_and_ids_are_strict(body):
    with pytest.raises(MessageFormatError):
        JobQueueMessage.parse(json.dumps(body))
