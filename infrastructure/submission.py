"""What JobBaseMixin's create_job_record and queue_job delegate to: storing a job record
and sending a job message."""

from __future__ import annotations

from typing import Any

from config import JOBS_QUEUE
from core.models import JobQueueMessage, JobRecord, JobStatus

from .db import get_database
from .outbox import Outbox
from .queues import OutgoingMessage, get_queue
from .repositories import JobRepository


def _outbox() -> Outbox:
    return Outbox(get_queue, get_database)


def store_job(job_class: Any, job_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """Store the job and its first message in one transaction (an outbox): a job is never
    stored without the message that starts it."""
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
        # A job purged before starts at a later attempt (set on record by the insert).
        created = JobRepository().insert_job(conn, record)
        if created:
            first = JobQueueMessage(job_id=job_id, stage=1, attempt=record.attempt)
            _outbox().add(conn, job_id, JOBS_QUEUE, [OutgoingMessage(
                body=first.to_json(), message_id=first.message_id, correlation_id=job_id)])
    return {**record.model_dump(mode="json"), "created": created}


def send_pending_messages(job_id: str) -> dict[str, Any]:
    """Send what the job's record left in the outbox (nothing with the embedded queue,
    whose messages were enqueued with the record)."""
    sent = _outbox().flush(job_id)
    return {"queued": True, "queue": JOBS_QUEUE, "sent_now": sent}
