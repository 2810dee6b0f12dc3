"""Putting claimed tasks back in the queue, each with its message in the same
transaction: a retry later (a scheduled message), or a hand-back at once."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import psycopg

from config import TASKS_QUEUE
from core.models import JobQueueMessage, TaskQueueMessage
from infrastructure.batch_repository import BatchRepository
from infrastructure.queues.base import OutgoingMessage


def outgoing(message: JobQueueMessage | TaskQueueMessage,
             scheduled: Optional[datetime] = None) -> OutgoingMessage:
    return OutgoingMessage(body=message.to_json(), message_id=message.message_id,
                           correlation_id=message.job_id, scheduled_enqueue_time_utc=scheduled)


class TaskRequeueMixin:
    """StateManager's retries and hand-backs (it provides db, tasks and outbox)."""

    def hand_back(self, runs: list[tuple[dict[str, Any], int]]) -> int:
        """Queue claimed tasks that never started again at once, without using a retry,
        each with a message under a new id (Service Bus duplicate detection would drop
        one with its old id), in one transaction. Returns how many were handed back."""
        if not runs:
            return 0
        with self.db.transaction() as conn:
            rows = BatchRepository().hand_back(
                conn, [t["task_id"] for t, _ in runs], [a for _, a in runs])
            by_job: dict[str, list[OutgoingMessage]] = {}
            for row in rows:
                message = TaskQueueMessage(
                    job_id=row["parent_job_id"], task_id=row["task_id"], stage=row["stage"],
                    attempt=row["attempt"], retry=row["retry_count"])
                by_job.setdefault(row["parent_job_id"], []).append(OutgoingMessage(
                    body=message.to_json(), correlation_id=message.job_id,
                    message_id=f"{message.message_id}:h{uuid.uuid4().hex[:12]}"))
            for job_id, messages in by_job.items():
                self.outbox.add(conn, job_id, TASKS_QUEUE, messages)
        if self.outbox.deferred:
            for job_id in by_job:
                self.outbox.flush(job_id)
        return len(rows)

    def retry_task(self, task: dict[str, Any], attempt: int, error: dict[str, Any],
                   error_details: str, delay_seconds: float) -> Optional[int]:
        """Queue a task again after delay_seconds, with its scheduled message, in one
        transaction. Returns the retry number, or None if the task was not processing."""
        with self.db.transaction() as conn:
            return self.retry_task_in(conn, task, attempt, error, error_details, delay_seconds)

    def retry_task_in(self, conn: psycopg.Connection, task: dict[str, Any], attempt: int,
                      error: dict[str, Any], error_details: str, delay_seconds: float
                      ) -> Optional[int]:
        """retry_task within the caller's transaction."""
        retry = self.tasks.retry_task(conn, task["task_id"], attempt, error, error_details,
                                      delay_seconds)
        if retry is None:
            return None
        message = TaskQueueMessage(job_id=task["parent_job_id"], task_id=task["task_id"],
                                   stage=task["stage"], attempt=attempt, retry=retry)
        self.outbox.add(conn, task["parent_job_id"], TASKS_QUEUE, [outgoing(
            message, datetime.now(timezone.utc) + timedelta(seconds=delay_seconds))])
        return retry
