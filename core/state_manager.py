"""StateManager: every state change of jobs, stages and tasks, each in one transaction.

The rule that makes the engine correct under at-least-once delivery: a task's outcome is
recorded, and its stage's pending count decremented, in the same transaction, and only if
the task had not finished already. The transaction that takes a stage's count to zero is
the only one that closes the stage (and moves the job on); see TaskRepository.complete_task.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Optional

import psycopg

from config import JOBS_QUEUE
from core.models import (
    JobQueueMessage, JobStatus, TaskRecord, TaskStatus,
)
from core.orchestration_manager import previous_results_view
from core.stage_rules import failure_cap_exceeded, failure_cap_message, tolerates_failures
from core.cleanup import CLEANUP_STAGE, CleanupMixin, cleanup_definition
from core.stage_opening import StageOpeningMixin
from core.status_view import status_view
from core.task_requeue import TaskRequeueMixin, outgoing
from exceptions import CleanupPendingError
from infrastructure.batch_repository import BatchRepository
from infrastructure.cleanup_repository import CleanupRepository
from infrastructure.db import get_database
from infrastructure.outbox import Outbox
from infrastructure.queues import get_queue
from infrastructure.dead_letters import DeadLetterRepository
from infrastructure.job_metadata import JobMetadataRepository
from infrastructure.job_queries import JobQueries
from infrastructure.repositories import JobRepository, TaskRepository
from infrastructure.stage_plans import StagePlanRepository

@dataclass(frozen=True)
class StageClosure:
    """What closing a stage requires next: "next" (send stage next_stage's message),
    "finalize", "finalized" (done in the closing transaction: `status` says how the job
    ended), or "failed" (the job has ended)."""

    action: str
    job_id: str
    attempt: int
    next_stage: Optional[int] = None
    status: Optional[str] = None


@dataclass
class StageOpening:
    """The result of a job message: how many tasks were created (their messages are in
    the outbox), or why the message was ignored, and a closure for a stage that had no
    tasks."""

    ignored: Optional[str] = None
    task_count: int = 0
    closure: Optional[StageClosure] = None
    chunks_left: int = 0  # chunks stored, to be inserted by open_next_chunk


class StateManager(StageOpeningMixin, CleanupMixin, TaskRequeueMixin):
    def __init__(self, all_jobs: dict[str, Any], outbox: Optional[Outbox] = None):
        self.all_jobs = all_jobs
        self.outbox = outbox or Outbox(get_queue, get_database)
        self.jobs = JobRepository()
        self.tasks = TaskRepository()
        self.plans = StagePlanRepository()
        self.job_metadata = JobMetadataRepository()
        # conclude(job, tasks) -> (status, result, error): set by CoreMachine, so the
        # transaction that closes a job's last stage also finalizes it.
        self.finalizer: Optional[Callable[..., tuple]] = None
        # Stages whose tasks read their predecessor's result, as "job_type:stage": the
        # claim returns that result with the task.
        self.lineage_stages = sorted(
            f"{job_type}:{number}" for job_type, job_class in all_jobs.items()
            for number, stage in enumerate(job_class.stages, start=1)
            if stage.get("uses_lineage"))

    @property
    def db(self):
        return get_database()

    # -- stages: opening in core/stage_opening.py ----------------------------------------
    def _close_stage(
        self, conn: psycopg.Connection, job: dict[str, Any], row: dict[str, Any]
    ) -> Optional[StageClosure]:
        job_id, stage, attempt = job["job_id"], row["stage"], job["attempt"]
        job_class = self.all_jobs.get(job["job_type"])
        if job_class is None:  # removed by a deploy while the job ran: it cannot go on
            if self.jobs.end_job(conn, job_id, JobStatus.FAILED.value, error_details=(
                    f"Unknown job type '{job['job_type']}': no longer in ALL_JOBS")):
                return StageClosure("failed", job_id, attempt)
            return None
        definition = job_class.stages[stage - 1]
        summary = {
            "stage": stage, "name": definition["name"], "task_type": definition["task_type"],
            "parallelism": definition.get("parallelism", "single"),
            "tasks": row["task_count"], "completed": row["task_count"] - row["failed"],
            "failed": row["failed"], "completed_at": datetime.now(timezone.utc).isoformat(),
        }
        # A tolerant stage goes on past its failed tasks, unless too many failed.
        failing = row["failed"] and (not tolerates_failures(definition)
                                     or failure_cap_exceeded(definition, row))
        self.tasks.mark_stage_completed(conn, job_id, stage)
        last = stage >= job["total_stages"]
        next_stage = None if (last or failing) else stage + 1
        if not self.jobs.close_stage(conn, job_id, stage, summary, next_stage):
            return None  # the job moved on or ended meanwhile
        if failing:
            cause = self._first_failure(conn, job_id, stage)
            self.end_failed(conn, job, (
                failure_cap_message(definition, row, cause)
                if tolerates_failures(definition) else
                f"Stage {stage} ({definition['name']}) failed: {row['failed']} of "
                f"{row['task_count']} task(s) failed. First failure: {cause}"))
            return StageClosure("failed", job_id, attempt)
        if last:
            if self.finalizer is None:
                return StageClosure("finalize", job_id, attempt)
            status = self._finalize_in(conn, job_id, self.finalizer)
            return StageClosure("finalized", job_id, attempt,
                                status=status.value if status else None)
        self.outbox.add(conn, job_id, JOBS_QUEUE, [
            outgoing(JobQueueMessage(job_id=job_id, stage=next_stage, attempt=attempt))])
        return StageClosure("next", job_id, attempt, next_stage)

    def needs_finalize(self, job_id: str) -> bool:
        """True when every stage of an unfinished job has closed but finalize never ended
        it (the process stopped in between)."""
        with self.db.connection() as conn:
            job = self.jobs.get_job(conn, job_id)
            if job is None or JobStatus(job["status"]).is_terminal:
                return False
            if job["stage"] < job["total_stages"]:
                return False
            row = self.tasks.get_stage(conn, job_id, job["stage"])
        return row is not None and row["completed_at"] is not None

    # -- tasks --------------------------------------------------------------------------
    def claim_lapsed(self, task_id: str, attempt: int, lease_seconds: float
                     ) -> Optional[dict[str, Any]]:
        with self.db.connection() as conn:
            return self.tasks.claim_lapsed(conn, task_id, attempt, lease_seconds)

    def cancel_orphans(self) -> int:
        with self.db.connection() as conn:
            return self.tasks.cancel_orphans(conn)

    def begin_task(self, task_id: str, attempt: int, lease_seconds: float,
                   job_id: Optional[str] = None) -> tuple[Optional[dict[str, Any]], str]:
        """Claim a task for this worker under a lease. Returns (task, "claimed"), or
        (None, why not): "unknown task", "stale attempt", "job already <status>" (a
        queued task of an ended job is cancelled), "task already <status>", or
        "task running elsewhere" (another worker holds a live lease)."""
        with self.db.connection() as conn:
            task = self.tasks.claim_task(conn, task_id, attempt, lease_seconds,
                                         self.lineage_stages)
            if task is not None:
                return task, "claimed"
            task = self.tasks.get_task(conn, task_id)
            if task is None:
                # Not there: from another attempt of its job (stale), or never was (poison).
                job = self.jobs.get_job(conn, job_id) if job_id else None
                if job is not None and job["attempt"] != attempt:
                    return None, "stale attempt"
                return None, "unknown task"
            job = self.jobs.get_job(conn, task["parent_job_id"])
            if job["attempt"] != attempt:
                return None, "stale attempt"
            if JobStatus(job["status"]).is_terminal and task["stage"] != CLEANUP_STAGE:
                if not TaskStatus(task["status"]).is_terminal:
                    # queued, or processing by a worker that died: nothing will end it
                    self.tasks.cancel_queued(conn, job["job_id"])
                    self.tasks.cancel_orphans(conn, job["job_id"])
                return None, f"job already {job['status']}"
            if TaskStatus(task["status"]).is_terminal:
                return None, f"task already {task['status']}"
            return None, "task running elsewhere"

    def renew_leases(self, task_ids: list[str], attempts: list[int], lease_seconds: float
                     ) -> set[str]:
        """Extend running tasks' leases; returns the ids whose run is still wanted."""
        with self.db.connection() as conn:
            return BatchRepository().renew_leases(conn, task_ids, attempts, lease_seconds)

    def handler_context_data(
        self, task: dict[str, Any], lineage: bool, fan_in: bool
    ) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if task["stage"] == CLEANUP_STAGE:
            return self.cleanup_context(task)
        if lineage and "predecessor_result" in task:  # read by the claim
            data["predecessor_result"] = task["predecessor_result"]
            lineage = False
        if not (lineage or fan_in):
            return data
        with self.db.connection() as conn:
            if lineage:
                data["predecessor_result"] = self.tasks.result_of(
                    conn, task["parent_job_id"], task["stage"] - 1, task["task_index"])
            if fan_in:
                data["previous_results"] = previous_results_view(
                    self.tasks.list_tasks(conn, task["parent_job_id"], task["stage"] - 1,
                                          columns=self.tasks.OUTCOME_COLUMNS))
        return data

    def complete_task(
        self, task_id: str, status: TaskStatus, result_data: Optional[dict],
        error_details: Optional[str], job_error: Optional[str] = None, attempt: int = 1,
    ) -> Optional[StageClosure]:
        """Record the outcome of a task of this attempt of its job, in one transaction with
        what it implies: if it was its stage's last, the stage closes; if it failed
        (job_error says why), the job fails at once and its queued tasks are cancelled.
        Returns what must happen next, or None."""
        with self.db.transaction() as conn:
            row = self.tasks.complete_task(conn, task_id, status.value, result_data,
                                           error_details, attempt)
            if row is None:
                # already finished (a repeated delivery), or the task of a newer attempt
                # (this worker's job was resubmitted meanwhile): nothing is counted
                return None
            failure = (job_error or error_details or "") if status == TaskStatus.FAILED else None
            return self.after_count(conn, row, failure)

    def after_count(self, conn: psycopg.Connection, row: dict[str, Any],
                    failure: Optional[str]) -> Optional[StageClosure]:
        """What a stage's count going down implies (row: its app.job_stages row after the
        count; failure: the job's error if a task of it failed for good just now). A
        failure fails the job at once, unless the stage tolerates failures (then only
        past its max_failed_fraction); the stage's last task closes it."""
        if row["stage"] == CLEANUP_STAGE:  # never re-opens its job: only recorded on it
            if row["pending"] == 0:
                self.record_cleanup(conn, row["job_id"])
            return None
        if failure is None and row["pending"] > 0:
            return None
        job = self.jobs.get_job(conn, row["job_id"], for_update=True)
        if job is None:
            return None
        definition = self.stage_definition(job, row["stage"])
        if failure is not None and not tolerates_failures(definition):
            return self._fail_job(conn, job["job_id"], failure)
        if failure_cap_exceeded(definition, row):
            return self._fail_job(conn, job["job_id"], failure_cap_message(
                definition, row, self._first_failure(conn, job["job_id"], row["stage"])))
        if row["pending"] > 0:
            return None
        return self._close_stage(conn, job, row)

    def stage_definition(self, job: dict[str, Any], stage: int) -> dict[str, Any]:
        """A job's (or task's: both carry job_type) stage declaration; {} if unregistered."""
        job_class = self.all_jobs.get(job["job_type"])
        if job_class is None:
            return {}
        if stage == CLEANUP_STAGE:
            return cleanup_definition(job_class)
        return job_class.stages[stage - 1]

    def _first_failure(self, conn: psycopg.Connection, job_id: str, stage: int) -> str:
        first = self.tasks.first_failure(conn, job_id, stage)
        return f"task {first['task_id']}: {first['error_details']}" if first else "unknown"

    def _fail_job(self, conn: psycopg.Connection, job_id: str, error: str
                  ) -> Optional[StageClosure]:
        job = self.jobs.get_job(conn, job_id, for_update=True)
        closure = self.end_failed(conn, job, error)
        if closure is None:
            return None  # already ended (a sibling failed it first)
        self.tasks.cancel_queued(conn, job_id)
        return closure

    # -- jobs ---------------------------------------------------------------------------
    def finalize_job(
        self, job_id: str,
        conclude: Callable[[dict[str, Any], list[TaskRecord]],
                           tuple[JobStatus, Optional[dict], Optional[str]]],
    ) -> Optional[JobStatus]:
        """End an unfinished job with conclude(job, tasks) -> (status, result, error), under
        its row lock, so two finalizers (a worker and a sweeper) never both run it: the
        second skips the locked row. Returns the status set, or None."""
        with self.db.transaction() as conn:
            return self._finalize_in(conn, job_id, conclude)

    def _finalize_in(self, conn: psycopg.Connection, job_id: str,
                     conclude: Callable[..., tuple]) -> Optional[JobStatus]:
        """finalize_job within the caller's transaction (which may hold the job's row
        lock already: SKIP LOCKED skips only rows other transactions hold)."""
        job = self.jobs.get_job(conn, job_id, for_update=True, skip_locked=True)
        if job is None or JobStatus(job["status"]).is_terminal:
            return None
        tasks = [TaskRecord.model_validate(t) for t in self.tasks.list_tasks(
            conn, job_id, columns=self.tasks.OUTCOME_COLUMNS)]
        status, result, error = conclude(job, tasks)
        self.jobs.end_job(conn, job_id, status.value, result, error)
        return status

    def start_new_attempt(self, job_id: str, parameters: dict[str, Any]) -> Optional[int]:
        """Run a failed job again as a new attempt (with these parameters: those left out
        of the id may differ), with its first message, in one transaction. Returns the
        attempt number, or None if the job is not failed. Raises CleanupPendingError while
        the failed attempt's cleanup task is still queued or running."""
        with self.db.transaction() as conn:
            if CleanupRepository().lock_tasks(conn, job_id):
                raise CleanupPendingError(
                    "The previous attempt of this job failed and its cleanup task is still "
                    "running; submit again once it has ended (its status shows cleanup)")
            attempt = self.jobs.start_new_attempt(conn, job_id, parameters)
            if attempt is not None:
                self.plans.discard(conn, job_id)
                self.outbox.add(conn, job_id, JOBS_QUEUE, [outgoing(
                    JobQueueMessage(job_id=job_id, stage=1, attempt=attempt))])
        return attempt

    def was_purged(self, job_id: str) -> bool:
        """Whether a job of this id was purged lately (its messages are then ignored)."""
        from infrastructure.job_control import JobControlRepository

        with self.db.connection() as conn:
            return JobControlRepository().was_purged(conn, job_id)

    def record_dead_letter(self, queue_name: str, message_id: Optional[str], body: bytes,
                           reason: str) -> bool:
        """Record a message that can never succeed; False if it was recorded before."""
        with self.db.connection() as conn:
            return DeadLetterRepository().record(conn, queue_name, message_id, body, reason)

    def dead_letter_count(self) -> int:
        with self.db.connection() as conn:
            return DeadLetterRepository().count(conn)

    def end_job(self, job_id: str, status: JobStatus, result_data: Optional[dict] = None,
                error_details: Optional[str] = None) -> bool:
        with self.db.transaction() as conn:
            return self.jobs.end_job(conn, job_id, status.value, result_data, error_details)

    def get_job(self, job_id: str) -> Optional[dict[str, Any]]:
        with self.db.connection() as conn:
            return self.jobs.get_job(conn, job_id)

    def job_status(self, job_id: str) -> Optional[dict[str, Any]]:
        """The job as the status endpoint shows it, with task counts for every stage."""
        with self.db.connection() as conn:
            job = self.jobs.get_job(conn, job_id)
            if job is None:
                return None
            counts = self.jobs.task_counts(conn, job_id)
            stage_times = JobQueries().stage_times(conn, job_id)
        return status_view(job, counts, self.all_jobs.get(job["job_type"]), stage_times)
