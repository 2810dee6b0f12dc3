"""What JobBaseMixin's create_job_record and queue_job delegate to: storing a job record
and sending a job message."""

from __future__ import annotations

from typing import Any

from config import JOBS_QUEUE
from core.models import JobQueueMessage, JobRecord, JobStatus

from .db import get_database
from .queues import OutgoingMessage, get_queue
from .repositories import JobRepository


def store_job(job_class: Any, job_id: str, params: dict[str, Any]) -> dict[str, Any]:
    record = JobRecord(
        job_id=job_id,
        job_type=job_class.job_type,
        parameters=params,
        status=JobStatus.QUEUED,
        stage=1,
        total_stages=len(job_class.stages),
        metadata={"description": job_class.description, "created_by": job_class.__name__},
    )
    with get_database().transaction() as conn:
        created = JobRepository().insert_job(conn, record)
    return {**record.model_dump(mode="json"), "created": created}


def send_job_message(job_id: str, stage: int, attempt: int) -> dict[str, Any]:
    message = JobQueueMessage(job_id=job_id, stage=stage, attempt=attempt)
    outgoing = OutgoingMessage(body=message.to_json(), message_id=message.message_id,
                               correlation_id=job_id)
    get_queue().send(JOBS_QUEUE, [outgoing])
    return {"queued": True, "queue": JOBS_QUEUE, "message_id": outgoing.message_id}
