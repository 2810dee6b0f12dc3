"""Pydantic v2 models: job and task records, task definitions and results, queue messages.

Queue messages carry ids (job, task, stage, attempt) and a format version, never parameters:
parameters stay in the database, so a message stays far below Service Bus's 256 KB.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Literal, Optional

from pydantic import (
    BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator,
)

from exceptions import MessageFormatError

# Version 2 added sent_at. A deploy must not strand messages already in the queues, so
# the engine reads every version in SUPPORTED_MESSAGE_VERSIONS, upgrading older bodies with
# _UPGRADES before validation, and writes only the current one.
MESSAGE_FORMAT_VERSION = 2

# What a stage declaration may say its parallelism is.
#   single          one task (the job's create_tasks_for_stage builds it)
#   fan_out         one task per item the job derives from the previous stage's results
#   fan_in          one aggregation task, built by CoreMachine, receiving all previous results
#   dynamic         a count the job computes from its parameters (hello_world's n)
#   match_previous  one task per task of the previous stage
PARALLELISM_KINDS = ("single", "fan_out", "fan_in", "dynamic", "match_previous")
SUPPORTED_MESSAGE_VERSIONS = frozenset({1, 2})


def _upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "version": 2, "sent_at": None}


_UPGRADES = {1: _upgrade_v1}


class JobStatus(str, Enum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    CANCELLED = "cancelled"  # POST /api/jobs/{job_id}/cancel

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_JOB_STATUSES


TERMINAL_JOB_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED,
                                   JobStatus.COMPLETED_WITH_ERRORS, JobStatus.CANCELLED})
# A job of these statuses may run again as a new attempt of the same job: by submitting
# its parameters again, or by POST /api/jobs/{job_id}/rerun.
RESTARTABLE_JOB_STATUSES = ("failed", "cancelled")


class TaskStatus(str, Enum):
    QUEUED = "queued"  # also while waiting to retry
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"  # not run, or its outcome dropped: its job failed or was cancelled

    @property
    def is_terminal(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


class JobRecord(BaseModel):
    job_id: str
    job_type: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    status: JobStatus = JobStatus.QUEUED
    stage: int = 1
    total_stages: int
    attempt: int = 1
    stage_results: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    result_data: Optional[dict[str, Any]] = None
    error_details: Optional[str] = None
    created_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None


class TaskRecord(BaseModel):
    task_id: str
    parent_job_id: str
    job_type: str
    task_type: str
    stage: int
    task_index: int
    parameters: dict[str, Any] = Field(default_factory=dict)
    status: TaskStatus = TaskStatus.QUEUED
    result_data: Optional[dict[str, Any]] = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    error_details: Optional[str] = None
    retry_count: int = 0
    heartbeat: Optional[datetime] = None
    created_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None


class TaskDefinition(BaseModel):
    """One task a stage will run, before it is stored. The engine assigns task ids."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    task_type: str
    stage: int
    task_index: int
    parameters: dict[str, Any] = Field(default_factory=dict)


class TaskResult(BaseModel):
    """What running a task produced: the handler's dict, or the error that stopped it."""

    task_id: str
    status: Literal[TaskStatus.COMPLETED, TaskStatus.FAILED]
    result_data: Optional[dict[str, Any]] = None
    error_details: Optional[str] = None


class _QueueMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    version: StrictInt = MESSAGE_FORMAT_VERSION
    job_id: StrictStr
    stage: StrictInt
    attempt: StrictInt = 1
    # When the message was made (None for a version 1 message).
    sent_at: Optional[datetime] = Field(default_factory=lambda: datetime.now(timezone.utc))

    @field_validator("job_id", "task_id", check_fields=False)
    @classmethod
    def _storable_id(cls, value: str) -> str:
        # PostgreSQL text cannot hold NUL: such an id can never match, so it is poison.
        if "\x00" in value or not value or len(value) > 128:
            raise ValueError("ids must be 1 to 128 characters without NUL")
        return value

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def parse(cls, body: bytes | str):
        """Parse a message body; anything unusable is a MessageFormatError."""
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MessageFormatError(f"{cls.__name__}: body is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise MessageFormatError(f"{cls.__name__}: body is not a JSON object")
        version = data.get("version")
        if type(version) is not int or version not in SUPPORTED_MESSAGE_VERSIONS:
            raise MessageFormatError(
                f"{cls.__name__}: unsupported format version {version!r}; "
                f"supported: {sorted(SUPPORTED_MESSAGE_VERSIONS)}"
            )
        while version in _UPGRADES:
            data = _UPGRADES[version](data)
            version = data["version"]
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise MessageFormatError(f"{cls.__name__}: {exc.errors()[0]['msg']}") from None


class JobQueueMessage(_QueueMessage):
    """Tells the engine to run (build and queue the tasks of) one stage of a job."""

    @property
    def message_id(self) -> str:
        """One id per logical delivery: a resend keeps it (Service Bus duplicate
        detection drops the copy); another stage or attempt gets another."""
        return f"{self.job_id}:a{self.attempt}:s{self.stage}"


class TaskQueueMessage(_QueueMessage):
    """Tells the engine to run one task."""

    task_id: StrictStr
    retry: StrictInt = 0

    @property
    def message_id(self) -> str:
        """One id per logical delivery: a retry or a new attempt gets a new one."""
        return f"{self.task_id}:a{self.attempt}:r{self.retry}"
