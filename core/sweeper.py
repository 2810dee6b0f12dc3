"""The sweeper: re-drives what a stopped process left between two steps. Run by a timer
trigger (every minute in Azure; the local host runs it too), safe while workers run and
while other instances sweep, since every step is conditional or skips locked rows.

- messages an earlier commit left unsent in the outbox (the send failed or the process
  died before it): sent, with their own message ids;
- running tasks whose lease lapsed (their worker died): run again as a retry, or failed
  past their retries (which fails the job);
- queued tasks whose message was lost long ago: their message sent again;
- jobs that reached a stage long ago but never opened it (the queue dead-lettered the job
  message that opens it): that message sent again, with the same message id (Service Bus
  drops it if the original was sent within its duplicate detection window; the job is
  then found again 10 sweep periods later);
- jobs whose last stage closed but that were never finalized: finalized;
- stages that stopped opening between chunks (their opener died): the stored chunks
  inserted and sent;
- cleanup tasks (of jobs that failed or were cancelled) whose worker died or whose
  message was lost, as for any task.

Housekeeping besides: retention (jobs that ended longer ago than their status's
RETENTION_*_DAYS are purged, RETENTION_BATCH_SIZE per status per sweep, each batch one
transaction, so a sweep never runs long), and forgetting purged jobs' ids after a week.
A cancelled job's tasks are never re-driven: every scan above reads active jobs only.
"""

from __future__ import annotations

import logging
from typing import Any

from config import JOBS_QUEUE, TASKS_QUEUE, get_settings
from core.log_context import log_context
from core.models import JobQueueMessage, TaskQueueMessage
from core.state_manager import outgoing
from exceptions import WorkerLostError
from core.stage_opener import StageOpener
from infrastructure.cleanup_repository import CleanupRepository
from infrastructure.db import get_database
from infrastructure.job_control import JobControlRepository
from infrastructure.repositories import JobRepository, TaskRepository

logger = logging.getLogger(__name__)

BATCH = 500


PURGED_IDS_KEPT_DAYS = 7.0


def purge_expired(settings: Any) -> int:
    """Retention: purge up to a batch of jobs per ended status past its retention (0:
    kept for ever), each batch in its own transaction; forget old purged ids."""
    repo = JobControlRepository()
    retention = {"completed": settings.retention_completed_days,
                 "completed_with_errors": settings.retention_completed_with_errors_days,
                 "failed": settings.retention_failed_days,
                 "cancelled": settings.retention_cancelled_days}
    purged = 0
    for status, days in retention.items():
        if days <= 0:
            continue
        with get_database().transaction() as conn:
            ids = repo.expired(conn, status, days, settings.retention_batch_size)
            if ids:
                purged += len(repo.purge(conn, ids))
    with get_database().transaction() as conn:
        repo.forget_purged(conn, PURGED_IDS_KEPT_DAYS)
    return purged


class Sweeper:
    def __init__(self, machine: Any):
        self.machine = machine
        self.tasks = TaskRepository()
        self.jobs = JobRepository()
        self.cleanups = CleanupRepository()

    def sweep(self) -> dict[str, int]:
        """One pass; returns what it did, by kind."""
        settings = get_settings()
        after = settings.sweep_after_seconds
        steps = {
            # before the outbox's own step: a job whose message still waits there is not
            # stranded, and must not be sent twice in one pass
            "stranded_jobs_resent": lambda: self._stranded_jobs(after * 10),
            "stage_openings_resumed": lambda: StageOpener(self.machine).resume_stalled(
                after, BATCH),
            "messages_sent": lambda: self.machine.outbox.flush(older_than_seconds=after),
            "lapsed_tasks": lambda: self._lapsed_leases(settings.task_lease_seconds),
            "orphans_cancelled": self.machine.state_manager.cancel_orphans,
            "stale_tasks_resent": lambda: self._stale_queued(after * 10),
            "jobs_finalized": lambda: self._unfinalized(after),
        }
        report = {}
        steps["jobs_purged"] = lambda: purge_expired(settings)
        for name, step in steps.items():
            # One failing step (a database hiccup) must not stop the others.
            try:
                report[name] = step()
            except Exception:
                logger.exception("sweeper step %s failed; the next sweep tries again", name)
                report[name] = 0
        stuck = {k: v for k, v in report.items() if k != "jobs_purged"}
        if any(stuck.values()):
            logger.warning("sweeper re-drove stuck work: %s", stuck, extra=stuck)
        if report["jobs_purged"]:
            logger.info("retention: %d ended job(s) purged", report["jobs_purged"])
        # Housekeeping, not stuck work: the embedded queue's expired duplicate-detection
        # ids (Service Bus forgets its own).
        forget = getattr(self.machine.queue, "forget_sent_ids", None)
        if forget is not None and getattr(self.machine.queue, "duplicate_window_seconds", 0):
            try:
                forget()
            except Exception:
                logger.exception("forgetting expired message ids failed; the next sweep "
                                 "tries again")
        return report

    def _lapsed_leases(self, lease_seconds: float) -> int:
        with get_database().connection() as conn:
            candidates = (self.tasks.lapsed_leases(conn, BATCH)
                          + self.cleanups.lapsed(conn, BATCH))
        handled = 0
        for row in candidates:
            # Claim it as a worker would (only if the lease is still lapsed), then fail
            # this run of it: retried if it has retries left, else the job fails.
            task = self.machine.state_manager.claim_lapsed(
                row["task_id"], row["attempt"], lease_seconds)
            if task is None:
                continue  # re-queued, renewed or finished meanwhile
            with log_context(job_id=task["parent_job_id"], task_id=task["task_id"],
                             stage=task["stage"], operation="sweep"):
                try:
                    self.machine.fail_task(task, row["attempt"], WorkerLostError(
                        "the task's lease lapsed: the worker running it stopped"))
                except Exception:
                    logger.exception("re-driving a lapsed task failed; the next sweep retries")
                    continue
            handled += 1
        return handled

    def _stale_queued(self, older_than: float) -> int:
        with get_database().transaction() as conn:
            rows = (self.tasks.stale_queued(conn, older_than, BATCH)
                    + self.cleanups.stale_queued(conn, older_than, BATCH))
            by_job: dict[str, list] = {}
            for row in rows:
                message = TaskQueueMessage(job_id=row["parent_job_id"], task_id=row["task_id"],
                                           stage=row["stage"], attempt=row["attempt"],
                                           retry=row["retry_count"])
                by_job.setdefault(row["parent_job_id"], []).append(outgoing(message))
            for job_id, messages in by_job.items():
                self.machine.outbox.add(conn, job_id, TASKS_QUEUE, messages)
            if rows:
                self.tasks.touch_due(conn, [r["task_id"] for r in rows])
        for job_id in by_job:
            self.machine.outbox.flush(job_id)
        return len(rows)

    def _stranded_jobs(self, older_than: float) -> int:
        with get_database().transaction() as conn:
            rows = self.jobs.stranded(conn, older_than, BATCH)
            for row in rows:
                self.machine.outbox.add(conn, row["job_id"], JOBS_QUEUE, [outgoing(
                    JobQueueMessage(job_id=row["job_id"], stage=row["stage"],
                                    attempt=row["attempt"]))])
        for row in rows:
            self.machine.outbox.flush(row["job_id"])
        return len(rows)

    def _unfinalized(self, older_than: float) -> int:
        with get_database().connection() as conn:
            job_ids = self.jobs.awaiting_finalize(conn, older_than, BATCH)
        finalized = 0
        for job_id in job_ids:
            try:
                finalized += self.machine.finalize(job_id) is not None
            except Exception:
                logger.exception("finalizing %s failed; the next sweep retries", job_id)
        return finalized
