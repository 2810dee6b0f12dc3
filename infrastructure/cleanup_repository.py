"""The sweeper's view of cleanup tasks (stage 0, core/cleanup.py): they run after their
job has failed, so the scans of active jobs' tasks do not see them. Reached from the jobs
that failed in the last 7 days (jobs_status_idx), each by its key (parent_job_id, 0, 0)."""

from __future__ import annotations

from typing import Any

import psycopg

_RECENTLY_FAILED = (
    " FROM app.jobs j JOIN app.tasks t ON t.parent_job_id = j.job_id AND t.stage = 0"
    " AND t.task_index = 0 AND t.attempt = j.attempt"
    " WHERE j.status IN ('failed', 'cancelled') AND j.updated_at > now() - interval '7 days'")


class CleanupRepository:
    def lapsed(self, conn: psycopg.Connection, limit: int) -> list[dict[str, Any]]:
        """Running cleanup tasks whose worker stopped renewing their lease."""
        return conn.execute(
            "SELECT t.task_id, j.attempt" + _RECENTLY_FAILED +
            " AND t.status = 'processing' AND t.lease_expires_at < now() LIMIT %s",
            (limit,)).fetchall()

    def stale_queued(self, conn: psycopg.Connection, older_than_seconds: float, limit: int
                     ) -> list[dict[str, Any]]:
        """Queued cleanup tasks due long ago (their message may be lost), locked."""
        return conn.execute(
            "SELECT t.*" + _RECENTLY_FAILED +
            " AND t.status = 'queued' AND t.due_at < now() - make_interval(secs => %s)"
            " LIMIT %s FOR UPDATE OF t SKIP LOCKED",
            (older_than_seconds, limit)).fetchall()

    def lock_tasks(self, conn: psycopg.Connection, job_id: str) -> bool:
        """Lock every task of a job, in task id order (the order completions take them,
        so a new attempt's reset cannot deadlock with one), within the caller's
        transaction; returns whether its cleanup task is still queued or running."""
        row = conn.execute(
            "SELECT coalesce(bool_or(stage = 0 AND status IN ('queued', 'processing')),"
            " false) AS pending FROM (SELECT stage, status FROM app.tasks"
            " WHERE parent_job_id = %s ORDER BY task_id FOR UPDATE) t",
            (job_id,)).fetchone()
        return bool(row["pending"])
