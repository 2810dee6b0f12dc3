"""A job's cleanup task: declared on the job class (cleanup_task_type, a task type of its
own in ALL_HANDLERS), it runs once when the job ends failed, to remove what the failed
attempt left behind (temp blobs, staging tables). A successful job's last stage does its
own cleanup.

The cleanup is a task of stage 0 (CLEANUP_STAGE), created with its message in the
transaction that fails the job, and counted on a job_stages row of its own, so both task
triggers, retries, leases and the sweeper treat it as any task. It differs in three ways:
it may run although its job has ended; its handler's context carries the job's status,
error and every task's outcome; and its outcome is recorded on the job
(metadata.cleanup), never re-opening it: a failed cleanup is logged and recorded.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Optional

import psycopg

from config import TASKS_QUEUE
from core.models import TaskDefinition, TaskQueueMessage
from core.orchestration_manager import task_id_for
from core.task_requeue import outgoing

logger = logging.getLogger(__name__)

CLEANUP_STAGE = 0


def cleanup_definition(job_class: Any) -> dict[str, Any]:
    """The cleanup's stage declaration, as a stage's would read."""
    return {"number": CLEANUP_STAGE, "name": "cleanup",
            "task_type": getattr(job_class, "cleanup_task_type", None),
            "parallelism": "single"}


class CleanupMixin:
    """StateManager's cleanup steps (it provides all_jobs, db, jobs, tasks, outbox and
    job_metadata)."""

    def schedule_cleanup(self, conn: psycopg.Connection, job: dict[str, Any]) -> bool:
        """Within the transaction that ends the job failed: its cleanup task and message,
        if its class declares one. Returns whether it does."""
        job_class = self.all_jobs.get(job["job_type"])
        task_type = getattr(job_class, "cleanup_task_type", None) if job_class else None
        if not task_type:
            return False
        job_id, attempt = job["job_id"], job["attempt"]
        task = TaskDefinition(task_id=task_id_for(job_id, CLEANUP_STAGE, 0),
                              task_type=task_type, stage=CLEANUP_STAGE, task_index=0,
                              parameters={})
        self.tasks.insert_tasks(conn, job_id, job["job_type"], [task], attempt)
        self.tasks.create_stage(conn, job_id, CLEANUP_STAGE, 1)
        self.outbox.add(conn, job_id, TASKS_QUEUE, [outgoing(TaskQueueMessage(
            job_id=job_id, task_id=task.task_id, stage=CLEANUP_STAGE, attempt=attempt))])
        self.job_metadata.set_key(conn, job_id, "cleanup", {
            "task_id": task.task_id, "task_type": task_type, "status": "queued"})
        return True

    def record_cleanup(self, conn: psycopg.Connection, job_id: str) -> None:
        """The cleanup task has ended (its count reached zero): record how, on the job."""
        task = self.tasks.get_task(conn, task_id_for(job_id, CLEANUP_STAGE, 0))
        if task is None:
            return
        entry: dict[str, Any] = {
            "task_id": task["task_id"], "task_type": task["task_type"],
            "status": task["status"], "retries": task["retry_count"],
            "finished_at": datetime.now(timezone.utc).isoformat()}
        if task["status"] == "completed":
            entry["result"] = task["result_data"]
        else:
            entry["error"] = task["error_details"]
        self.job_metadata.set_key(conn, job_id, "cleanup", entry)

    def cleanup_context(self, task: dict[str, Any]) -> dict[str, Any]:
        """What a cleanup handler's context holds besides the base context: the job's
        status and error, and every task's outcome (stage, index, status, result, error)."""
        with self.db.connection() as conn:
            job = self.jobs.get_job(conn, task["parent_job_id"])
            rows = self.tasks.list_tasks(conn, task["parent_job_id"],
                                         columns=self.tasks.OUTCOME_COLUMNS)
        return {
            "job_status": job["status"] if job else None,
            "job_error": job["error_details"] if job else None,
            "task_outcomes": [
                {"task_id": r["task_id"], "task_type": r["task_type"], "stage": r["stage"],
                 "task_index": r["task_index"], "status": r["status"],
                 "result": r["result_data"], "error": r["error_details"]}
                for r in rows if r["stage"] != CLEANUP_STAGE],
        }

    def end_failed(self, conn: psycopg.Connection, job: dict[str, Any], error: str
                   ) -> Optional[Any]:
        """End an active job failed, within the caller's transaction (which should hold
        its row lock): stored chunks of a stage still opening are dropped and its cleanup
        task queued. Returns the closure, or None if it had ended already."""
        from core.state_manager import StageClosure

        if not self.jobs.end_job(conn, job["job_id"], "failed", error_details=error):
            return None
        self.plans.discard(conn, job["job_id"])
        self.schedule_cleanup(conn, job)
        return StageClosure("failed", job["job_id"], job["attempt"])
