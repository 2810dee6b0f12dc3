"""The HTTP API's response documents as pydantic v2 models: the routes check what they
answer against them (triggers/http_utils.py `document`), and GET /api/openapi.json is
generated from them (core/openapi.py). Timestamps stay the strings the engine writes
(ISO 8601 in UTC, `+00:00`), described as JSON Schema's date-time; fields a document may
leave out have a default."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

JobStatusName = Literal["queued", "processing", "completed", "failed", "completed_with_errors",
                        "cancelled"]
TaskStatusName = Literal["queued", "processing", "completed", "failed", "cancelled"]
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Seconds = Annotated[Optional[float], Field(description="seconds; null until it ended")]


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorResponse(BaseModel):
    """Every 4xx and 503: `error` says what was wrong and what is allowed; the other
    fields name the parameter, the allowed values, the resource and so on."""

    model_config = ConfigDict(extra="allow")
    error: str
    parameter: Optional[str] = None
    allowed: Optional[list[str]] = None


class SubmitResponse(Document):
    job_id: str
    job_type: str
    status: JobStatusName
    idempotent: bool
    attempt: int
    stage: int
    total_stages: int
    parameters: dict[str, Any]
    status_url: str
    message: Optional[str] = None
    result_data: Optional[dict[str, Any]] = None
    error_details: Optional[str] = None


class StageCounts(Document):
    """A stage's task counts by status."""

    stage: int
    name: Optional[str] = Field(default=None, description="absent for a job type no "
                                                            "longer registered")
    total: int
    queued: int
    processing: int
    completed: int
    failed: int
    cancelled: int


class StageStatus(StageCounts):
    state: Literal["pending", "running", "done", "failed", "cancelled", "not run"]
    started_at: Optional[Timestamp]
    finished_at: Optional[Timestamp]
    duration_seconds: Seconds


class Cancellation(Document):
    cancelled_at: Timestamp
    reason: Optional[str]


class JobStatusDocument(Document):
    job_id: str
    job_type: str
    status: JobStatusName
    stage: int
    total_stages: int
    attempt: int
    parameters: dict[str, Any]
    stage_results: dict[str, Any]
    result_data: Optional[dict[str, Any]]
    error_details: Optional[str]
    created_at: Timestamp
    updated_at: Timestamp
    queued_at: Optional[Timestamp]
    started_at: Optional[Timestamp]
    finished_at: Optional[Timestamp]
    duration_seconds: Seconds
    tasks_failed: int
    stages: list[StageStatus]
    cleanup: Optional[dict[str, Any]] = Field(
        default=None, description="a failed job's cleanup task: status, retries, "
                                  "finished_at, result or error")
    cancellation: Optional[Cancellation] = Field(
        default=None, description="a cancelled job: when and why")


class JobRow(Document):
    job_id: str
    job_type: str
    status: JobStatusName
    stage: int
    total_stages: int
    attempt: int
    stages: list[StageCounts]
    created_at: Timestamp
    updated_at: Timestamp
    queued_at: Optional[Timestamp]
    started_at: Optional[Timestamp]
    finished_at: Optional[Timestamp]
    duration_seconds: Seconds
    error: Optional[str] = Field(description="the first line of error_details")


class JobPage(Document):
    jobs: list[JobRow]
    continuation_token: Optional[str] = Field(
        description="pass back as continuation_token for the next page; null on the last")


class JobSummary(Document):
    total: int
    by_status: dict[str, int]
    by_job_type: dict[str, int]


class TaskRow(Document):
    task_id: str
    task_type: str
    stage: int
    task_index: int
    status: TaskStatusName
    retries: int
    started_at: Optional[Timestamp]
    finished_at: Optional[Timestamp]
    duration_seconds: Seconds
    error: Optional[str]
    parameters: Optional[dict[str, Any]] = Field(
        default=None, description="with include=parameters")
    result: Optional[dict[str, Any]] = Field(default=None, description="with include=result")


class TaskPage(Document):
    job_id: str
    tasks: list[TaskRow]
    continuation_token: Optional[str]


class RerunResponse(Document):
    job_id: str
    job_type: str
    status: JobStatusName
    attempt: int
    from_stage: int = Field(description="the first stage that runs again")
    kept_stages: list[int] = Field(description="the stages kept with their results")
    tasks_queued: int = Field(description="tasks of from_stage queued again (0: the stage "
                                          "is built again)")
    reason: str = Field(description="why it runs from this stage")
    status_url: str


class BulkResponse(Document):
    matched: int = Field(description="jobs the filters match")
    acted_on: int = Field(description="jobs cancelled, rerun or purged (0 with dry_run)")
    dry_run: bool


class PurgeResponse(Document):
    job_id: str
    purged: bool


class HealthResponse(Document):
    status: Literal["up", "down"]


class HealthDetails(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["up", "down"]
    database: Literal["reachable", "unreachable"]
    dead_letters: Optional[int]
    queue_backend: str
    job_types: list[str]
    task_types: list[str]
    geospatial: dict[str, Any]
