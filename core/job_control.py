"""Cancelling, re-running and purging jobs (POST /api/jobs/{job_id}/cancel and /rerun,
DELETE /api/jobs/{job_id}, and their bulk forms in core/bulk_actions.py). Each works on a
chunk of jobs in one transaction, through infrastructure/job_control.py.

Cancel: the job ends `cancelled` (when and why in metadata.cancellation, the status's
`cancellation`); its queued and running tasks are cancelled in the same transaction, so a
handler still running finds its task ended and its outcome is not recorded (nor does it
open a stage: only a recorded outcome counts a stage down), and the sweeper, which
re-drives only active jobs' tasks, leaves them. Running handlers are told through their
context's `cancelled` event: at once in this process, at their next lease renewal in
another. The job's cleanup task, if its class declares one, is queued as for a failure.

Rerun: a new attempt of the same job (its attempt counts up, so every message id is new
and the previous attempt's workers are stale). By default from the first stage that has
failed or cancelled tasks (or never closed): the stages before it keep their tasks and
results; that stage's tasks that did not complete are queued again (a stage that did not
finish opening is built again), and the stages after it are built again. A job whose
cleanup task ran (its outputs are gone) runs from stage 1, as does `from: start`.

Purge: a finished job's records are deleted (never its outputs); its id and last attempt
stay in app.purged_jobs, so the same parameters make a new job under new message ids.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Optional, TypeVar

import psycopg

from config import JOBS_QUEUE, TASKS_QUEUE
from core.handler_pool import RUNNING
from core.models import JobQueueMessage, TaskQueueMessage
from core.task_requeue import outgoing
from exceptions import CleanupPendingError
from infrastructure.job_control import ACTIVE, JobControlRepository

logger = logging.getLogger(__name__)

RERUNNABLE = ("failed", "cancelled", "completed_with_errors")
T = TypeVar("T")


def retrying(step: Callable[[], T], attempts: int = 3) -> T:
    """Run a chunk's transaction, again if PostgreSQL broke a deadlock by aborting it
    (a job that changed between the chunk's task and job locks; rare)."""
    for attempt in range(1, attempts + 1):
        try:
            return step()
        except psycopg.errors.DeadlockDetected:
            if attempt == attempts:
                raise
            logger.warning("a chunk's transaction met a deadlock; trying again")
    raise AssertionError("unreachable")


class JobConflict(Exception):
    """The job's status does not allow the action (a 409 naming it)."""

    def __init__(self, message: str, status: str):
        super().__init__(message)
        self.status = status


@dataclass
class Rerun:
    job_id: str
    attempt: int
    from_stage: int
    reason: str
    kept_stages: list[int] = field(default_factory=list)
    tasks_queued: int = 0


class JobControl:
    def __init__(self, machine: Any):
        self.machine = machine
        self.state = machine.state_manager
        self.repo = JobControlRepository()

    @property
    def db(self):
        return self.state.db

    # -- cancel ---------------------------------------------------------------------------
    def cancel(self, job_id: str, reason: Optional[str]) -> tuple[bool, Optional[dict]]:
        """(cancelled now, the status document); (False, None) for an unknown job.
        Raises JobConflict for a job that ended otherwise."""
        job = self.state.get_job(job_id)
        if job is None:
            return False, None
        done = bool(job["status"] in ACTIVE and self.cancel_jobs([job_id], reason))
        view = self.state.job_status(job_id)
        if view is None:
            return False, None
        if view["status"] != "cancelled":
            raise JobConflict(f"Job {job_id} has ended {view['status']}: only a queued or "
                              "processing job can be cancelled", view["status"])
        return done, view

    def cancel_jobs(self, job_ids: list[str], reason: Optional[str]) -> list[str]:
        """Cancel the active ones of these jobs, in one transaction; returns their ids."""
        cancellation = {"cancelled_at": datetime.now(timezone.utc).isoformat(),
                        "reason": reason}
        error = f"Cancelled: {reason}" if reason else "Cancelled"
        rows = retrying(lambda: self._cancel_chunk(job_ids, error, cancellation))
        ids = [r["job_id"] for r in rows]
        if ids:
            with self.db.transaction() as conn:
                self.repo.cancel_left_tasks(conn, [(r["job_id"], r["attempt"])
                                                   for r in rows])
            RUNNING.cancel(ids)
            logger.info("%d job(s) cancelled%s", len(ids), f": {reason}" if reason else "")
        if self.machine.outbox.deferred:
            for job_id in ids:
                self.machine.outbox.flush(job_id)  # cleanup tasks' messages
        return ids

    def _cancel_chunk(self, job_ids: list[str], error: str, cancellation: dict[str, Any]
                      ) -> list[dict[str, Any]]:
        with self.db.transaction() as conn:
            self.repo.lock_tasks(conn, job_ids)
            self.repo.lock_jobs(conn, job_ids)
            rows = self.repo.cancel_jobs(conn, job_ids, error, cancellation)
            ids = [r["job_id"] for r in rows]
            if ids:
                self.repo.cancel_tasks(conn, ids)
            for row in rows:
                self.state.schedule_cleanup(conn, row)
        return rows

    # -- rerun ----------------------------------------------------------------------------
    def rerun(self, job_id: str, from_start: bool) -> Optional[Rerun]:
        """Run an ended job again (None: unknown job). Raises JobConflict for a job
        still running (or a completed one without from_start), CleanupPendingError while
        its cleanup task runs."""
        job = self.state.get_job(job_id)
        if job is None:
            return None
        self._check_rerunnable(job, from_start)
        done = self.rerun_jobs([job_id], from_start, strict=True)
        return done[0] if done else None

    @staticmethod
    def _check_rerunnable(job: dict[str, Any], from_start: bool) -> None:
        status = job["status"]
        if status in ACTIVE:
            raise JobConflict(f"Job {job['job_id']} is {status}: cancel it first, or wait "
                              "until it ends", status)
        if status == "completed" and not from_start:
            raise JobConflict(f"Job {job['job_id']} completed: nothing failed to run again;"
                              " rerun it with {\"from\": \"start\"} to run everything "
                              "again", status)

    def rerun_jobs(self, job_ids: list[str], from_start: bool, strict: bool = False
                   ) -> list[Rerun]:
        """Rerun these jobs, in one transaction; those that cannot be (running, or their
        cleanup still running) are skipped, or with strict raise. Jobs that run again
        from stage 1 are reset together (a few statements for the whole chunk)."""
        reruns = retrying(lambda: self._rerun_chunk(job_ids, from_start, strict))
        if self.machine.outbox.deferred:
            for rerun in reruns:
                self.machine.outbox.flush(rerun.job_id)
        for rerun in reruns:
            logger.info("job rerun as attempt %d from stage %d: %s", rerun.attempt,
                        rerun.from_stage, rerun.reason, extra={"job_id": rerun.job_id})
        return reruns

    def _rerun_chunk(self, job_ids: list[str], from_start: bool, strict: bool
                     ) -> list[Rerun]:
        reruns: list[Rerun] = []
        with self.db.transaction() as conn:
            self.repo.lock_tasks(conn, job_ids)
            locked = self.repo.lock_jobs(conn, job_ids)
            pending = self.repo.cleanup_pending(conn, job_ids)
            jobs = []
            for job in locked:
                try:
                    self._check_rerunnable(job, from_start)
                    if job["job_id"] in pending:
                        raise CleanupPendingError(
                            "The job's cleanup task is still running; rerun it once it has "
                            "ended (its status shows cleanup)")
                except (JobConflict, CleanupPendingError):
                    if strict:
                        raise
                    continue
                jobs.append(job)
            facts: dict[str, dict[int, dict]] = {}
            if jobs and not from_start:
                for fact in self.repo.stage_facts(conn, [j["job_id"] for j in jobs]):
                    facts.setdefault(fact["job_id"], {})[fact["stage"]] = fact
            from_one: dict[str, list[dict]] = {}
            messages: list[tuple[str, str, list]] = []
            for job in jobs:
                stage, reset, reason = self._from_stage(job, facts.get(job["job_id"], {}),
                                                        from_start)
                if stage == 1 and not reset:
                    from_one.setdefault(job["status"], []).append(job)
                    reruns.append(Rerun(job["job_id"], 0, 1, reason))
                    continue
                attempt, again = self.repo.restart_from(conn, job["job_id"], stage,
                                                        [job["status"]], reset)
                messages.append(self._messages(job["job_id"], stage, attempt, again))
                reruns.append(Rerun(job["job_id"], attempt, stage, reason,
                                    list(range(1, stage)), len(again)))
            attempts: dict[str, int] = {}
            for status, group in from_one.items():
                for row in self.repo.restart_many(conn, [j["job_id"] for j in group],
                                                  [status]):
                    attempts[row["job_id"]] = row["attempt"]
                    messages.append(self._messages(row["job_id"], 1, row["attempt"], []))
            for rerun in reruns:
                rerun.attempt = attempts.get(rerun.job_id, rerun.attempt)
            for queue_name in (JOBS_QUEUE, TASKS_QUEUE):
                self.state.outbox.add_many(conn, queue_name, [
                    (job_id, m) for job_id, q, batch in messages if q == queue_name
                    for m in batch])
        return reruns

    @staticmethod
    def _messages(job_id: str, stage: int, attempt: int, again: list
                  ) -> tuple[str, str, list]:
        """(job, queue, messages): the tasks queued again, or the stage's job message."""
        if again:
            return job_id, TASKS_QUEUE, [outgoing(TaskQueueMessage(
                job_id=job_id, task_id=t["task_id"], stage=stage, attempt=attempt))
                for t in again]
        return job_id, JOBS_QUEUE, [outgoing(JobQueueMessage(
            job_id=job_id, stage=stage, attempt=attempt))]

    @staticmethod
    def _from_stage(job: dict[str, Any], facts: dict[int, dict], from_start: bool
                    ) -> tuple[int, bool, str]:
        """(the stage to run from, whether its unfinished tasks are queued again rather
        than the stage built again, why). facts: the job's stage_facts by stage."""
        if from_start:
            return 1, False, "from the start, as asked: every stage runs again"
        cleanup = (job.get("metadata") or {}).get("cleanup")
        if cleanup is not None:
            return 1, False, ("the job's cleanup task has run (it removed what the previous "
                              "attempt wrote), so every stage runs again from stage 1")
        closed = job["stage_results"] or {}
        for stage in range(1, job["total_stages"] + 1):
            fact = facts.get(stage)
            if str(stage) in closed and not (fact and fact["unfinished"]):
                continue
            reset = bool(fact and fact["task_count"] is not None and fact["unfinished"]
                         and fact["present"] == fact["task_count"])
            kept = (f"stages 1 to {stage - 1} kept with their results" if stage > 2 else
                    "stage 1 kept with its results" if stage == 2 else "nothing to keep")
            what = ("its failed and cancelled tasks run again" if reset
                    else "it is built again")
            return stage, reset, (f"from stage {stage}, the first with failed or cancelled "
                                  f"tasks: {kept}; {what}, and later stages are rebuilt")
        return 1, False, ("no stage has failed or cancelled tasks: every stage runs "
                          "again from stage 1")

    # -- purge ----------------------------------------------------------------------------
    def purge(self, job_id: str) -> Optional[bool]:
        """Purge one job: True; None for an unknown job. Raises JobConflict for a job
        that has not ended (or whose cleanup task still runs)."""
        job = self.state.get_job(job_id)
        if job is None:
            return None
        if job["status"] in ACTIVE:
            raise JobConflict(f"Job {job_id} is {job['status']}: only a finished job can be "
                              "purged; cancel it first", job["status"])
        if self.purge_jobs([job_id]):
            return True
        job = self.state.get_job(job_id)
        if job is None:
            return True  # purged meanwhile by another request
        raise JobConflict(f"Job {job_id} has ended {job['status']} but its cleanup task is "
                          "still running; purge it once that has ended", job["status"])

    def purge_jobs(self, job_ids: list[str]) -> list[str]:
        def purge() -> list[str]:
            with self.db.transaction() as conn:
                return self.repo.purge(conn, job_ids)

        return retrying(purge)

    def was_purged(self, job_id: str) -> bool:
        with self.db.connection() as conn:
            return self.repo.was_purged(conn, job_id)
