"""Opening a stage, in three steps, so that a task builder may do I/O and a stage of any
size opens without one long transaction:

1. prepare_opening reads the job and the previous stage's results (no transaction);
2. the caller runs the job's builder outside any transaction;
3. store_stage, under the job's row lock and the exactly-once guard (no app.job_stages
   row for the stage yet), creates the stage with its task count fixed, inserts the first
   chunk of tasks with their messages, and stores the rest of the list in app.stage_plans;
   open_next_chunk then inserts the stored chunks one transaction each.

A crash between chunks resumes from the stored list (a repeated job message, or the
sweeper), never by calling the builder again. The stage's pending count starts at its full
task count, so no task can close a stage still opening. A builder's transient failure
re-sends the job message later (retry_opening); a permanent one fails the job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import psycopg

from config import JOBS_QUEUE, TASKS_QUEUE
from core.models import JobQueueMessage, JobStatus, TaskDefinition, TaskQueueMessage
from core.orchestration_manager import previous_results_view
from core.task_requeue import outgoing
from infrastructure.queues.base import OutgoingMessage


@dataclass
class StagePreparation:
    """What step 1 found: why the message is ignored, or the job and previous results
    (resume: the stage is open with chunks still stored: no building)."""

    ignored: Optional[str] = None
    job: Optional[dict[str, Any]] = None
    previous: Optional[list[dict[str, Any]]] = None
    resume: bool = False


@dataclass
class OpenedChunk:
    inserted: int = 0
    done: bool = False  # nothing left to insert
    job_ids: list = field(default_factory=list)


def _why_not(job: Optional[dict[str, Any]], stage: int, attempt: int) -> Optional[str]:
    if job is None:
        return "unknown job"
    if JobStatus(job["status"]).is_terminal:
        return f"job already {job['status']}"
    if job["stage"] != stage or job["attempt"] != attempt:
        return f"stale message: job is at stage {job['stage']}"
    return None


class StageOpeningMixin:
    """StateManager's stage opening (it provides db, jobs, tasks, plans, outbox,
    job_metadata, end_failed and _close_stage)."""

    def prepare_opening(self, job_id: str, stage: int, attempt: int) -> StagePreparation:
        with self.db.connection() as conn:
            job = self.jobs.get_job(conn, job_id)
            why = _why_not(job, stage, attempt)
            if why:
                return StagePreparation(ignored=why)
            if self.tasks.get_stage(conn, job_id, stage) is not None:
                if self.plans.remaining(conn, job_id, stage):
                    return StagePreparation(job=job, resume=True)
                return StagePreparation(ignored="stage already opened")
            self.jobs.mark_processing(conn, job_id)
            previous = None
            if stage > 1:
                previous = previous_results_view(self.tasks.list_tasks(
                    conn, job_id, stage - 1, columns=self.tasks.OUTCOME_COLUMNS))
        return StagePreparation(job=job, previous=previous)

    def store_stage(self, job_id: str, stage: int, attempt: int,
                    definitions: list[TaskDefinition], chunk_size: int) -> Any:
        """Step 3: returns a StageOpening (task_count, chunks_left, or why ignored)."""
        from core.state_manager import StageOpening

        with self.db.transaction() as conn:
            job = self.jobs.get_job(conn, job_id, for_update=True)
            why = _why_not(job, stage, attempt)
            if why is None and self.tasks.get_stage(conn, job_id, stage) is not None:
                why = "stage already opened"  # a concurrent delivery opened it first
            if why:
                return StageOpening(ignored=why)
            self.tasks.create_stage(conn, job_id, stage, len(definitions))
            chunks = [definitions[i:i + chunk_size]
                      for i in range(0, len(definitions), chunk_size)]
            if chunks:
                self._insert_chunk(conn, job_id, job["job_type"], stage, attempt, chunks[0])
                self.plans.store(conn, job_id, stage, attempt, chunks[1:])
            else:
                row = self.tasks.get_stage(conn, job_id, stage)
                return StageOpening(closure=self._close_stage(conn, job, row))
            return StageOpening(task_count=len(definitions), chunks_left=len(chunks) - 1)

    def open_next_chunk(self, job_id: str, stage: int) -> OpenedChunk:
        """Insert the next stored chunk of a stage with its messages, in one transaction.
        A chunk of a job that ended or moved to another attempt is dropped."""
        with self.db.transaction() as conn:
            # Lock order: the job row, then the chunk (as a failing job takes them).
            job = self.plans.lock_job(conn, job_id)
            row = self.plans.take_next(conn, job_id, stage)
            if row is None:
                return OpenedChunk(done=True)
            self.plans.delete(conn, job_id, stage, row["chunk"])
            if _why_not(job, stage, row["attempt"]):
                return OpenedChunk()
            self._insert_chunk(conn, job_id, job["job_type"], stage, row["attempt"],
                               row["tasks"])
            return OpenedChunk(inserted=len(row["tasks"]))

    def _insert_chunk(self, conn: psycopg.Connection, job_id: str, job_type: str,
                      stage: int, attempt: int, tasks: list[TaskDefinition]) -> None:
        self.tasks.insert_tasks(conn, job_id, job_type, tasks, attempt)
        self.outbox.add(conn, job_id, TASKS_QUEUE, [
            outgoing(TaskQueueMessage(job_id=job_id, task_id=t.task_id, stage=stage,
                                      attempt=attempt))
            for t in tasks])

    def fail_opening(self, job_id: str, stage: int, attempt: int, error: str) -> Any:
        """The builder failed for good: the job fails (its cleanup queued). Returns the
        closure, or None if the job had moved on."""
        with self.db.transaction() as conn:
            job = self.jobs.get_job(conn, job_id, for_update=True)
            if _why_not(job, stage, attempt) or self.tasks.get_stage(conn, job_id, stage):
                return None
            return self.end_failed(conn, job, error)

    def retry_opening(self, job_id: str, stage: int, attempt: int, max_retries: int,
                      delay_seconds: float) -> Optional[int]:
        """The builder failed transiently: send the job message again after
        delay_seconds, under a new message id (duplicate detection drops a same-id copy).
        Returns the retry number, or None when no retry is left (or the job moved on)."""
        with self.db.transaction() as conn:
            job = self.jobs.get_job(conn, job_id, for_update=True)
            if _why_not(job, stage, attempt) or self.tasks.get_stage(conn, job_id, stage):
                return None
            if self.build_retries(job, stage) >= max_retries:
                return None
            retry = self.job_metadata.count_build_retry(conn, job_id, stage)
            message = JobQueueMessage(job_id=job_id, stage=stage, attempt=attempt)
            self.outbox.add(conn, job_id, JOBS_QUEUE, [OutgoingMessage(
                body=message.to_json(), message_id=f"{message.message_id}:b{retry}",
                correlation_id=job_id, scheduled_enqueue_time_utc=datetime.now(timezone.utc)
                + timedelta(seconds=delay_seconds))])
            return retry

    @staticmethod
    def build_retries(job: dict[str, Any], stage: int) -> int:
        """How often a stage's builder has been retried in this attempt of the job."""
        return int(((job.get("metadata") or {}).get("stage_build_retries") or {})
                   .get(str(stage), 0))

    def stalled_openings(self, older_than_seconds: float, limit: int) -> list[dict[str, Any]]:
        with self.db.connection() as conn:
            return self.plans.stalled(conn, older_than_seconds, limit)
