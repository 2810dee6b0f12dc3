"""Set-based SQL for running a batch of task messages: one statement claims them all, one
records all their outcomes and counts them off their stages. Commits, not SQL, are the cost
of a task; a batch pays them once."""

from __future__ import annotations

from typing import Any, Optional

import psycopg
from psycopg.types.json import Jsonb

from .repositories import ACTIVE_JOB, PREDECESSOR_RESULT


def records(**columns: list) -> Jsonb:
    """Columns of equal length as one JSON array of objects, for jsonb_to_recordset: one
    json.dumps for the whole batch, where arrays would quote every element one by one."""
    names = list(columns)
    return Jsonb([dict(zip(names, row)) for row in zip(*columns.values())])


class BatchRepository:
    def claim(
        self, conn: psycopg.Connection, task_ids: list[str], attempts: list[int],
        lease_seconds: float, lineage: list[str] = (),
    ) -> list[dict[str, Any]]:
        """Claim every claimable task of the batch, with its predecessor's result where its
        stage uses lineage (see TaskRepository.claim_task)."""
        return conn.execute(
            "UPDATE app.tasks t SET status = 'processing', heartbeat = now(),"
            " started_at = coalesce(t.started_at, now()),"
            " lease_expires_at = now() + make_interval(secs => %(lease)s), updated_at = now()"
            " FROM app.jobs j,"
            " jsonb_to_recordset(%(batch)s) AS m(task_id text, attempt int)"
            " WHERE t.task_id = m.task_id AND j.job_id = t.parent_job_id"
            " AND j.attempt = m.attempt AND t.attempt = m.attempt"
            " AND (j.status IN ('queued', 'processing') OR t.stage = 0)"
            " AND (t.status = 'queued' OR (t.status = 'processing'"
            "      AND t.lease_expires_at < now()))"
            " RETURNING t.task_id, t.parent_job_id, t.job_type, t.task_type, t.stage,"
            " t.task_index, t.parameters, t.retry_count, j.parameters AS job_parameters, "
            + PREDECESSOR_RESULT,
            {"lease": lease_seconds, "batch": records(task_id=task_ids, attempt=attempts),
             "lineage": list(lineage)},
        ).fetchall()

    def why_unclaimed(self, conn: psycopg.Connection, task_ids: list[str]
                      ) -> dict[str, dict[str, Any]]:
        """For tasks not claimed: their status and stage, their job's status and attempt."""
        rows = conn.execute(
            "SELECT m.task_id, t.status, t.stage, t.parent_job_id, j.status AS job_status,"
            " j.attempt FROM jsonb_array_elements_text(%s) AS m(task_id)"
            " LEFT JOIN app.tasks t ON t.task_id = m.task_id"
            " LEFT JOIN app.jobs j ON j.job_id = t.parent_job_id",
            (Jsonb(task_ids),),
        ).fetchall()
        return {r["task_id"]: r for r in rows}

    def record(
        self, conn: psycopg.Connection, task_ids: list[str], attempts: list[int],
        statuses: list[str], results: list[Optional[dict]], errors: list[Optional[str]],
    ) -> tuple[list[dict[str, Any]], set[str]]:
        """Record outcomes of unfinished tasks of the given attempts and count them off
        their stages (within the caller's transaction): a task finished already, or now
        another attempt's, is left alone. Returns the stage rows changed, with
        `newly_failed`, and the ids of the tasks recorded. Rows are locked in a fixed order
        (tasks by id, then stages by job and number), so concurrent batches cannot deadlock
        on each other."""
        conn.execute(
            "SELECT 1 FROM app.tasks WHERE task_id IN"
            " (SELECT jsonb_array_elements_text(%s)) ORDER BY task_id FOR UPDATE",
            (Jsonb(task_ids),),
        )
        done = conn.execute(
            "UPDATE app.tasks t SET status = d.status, result_data = d.result,"
            " error_details = d.error, lease_expires_at = NULL, updated_at = now()"
            " FROM jsonb_to_recordset(%s) AS d(task_id text, attempt int, status text,"
            "  result jsonb, error text)"
            " WHERE t.task_id = d.task_id AND t.attempt = d.attempt"
            " AND t.status NOT IN ('completed', 'failed', 'cancelled')"
            " RETURNING t.task_id, t.parent_job_id, t.stage, t.status",
            (records(task_id=task_ids, attempt=attempts, status=statuses, result=results,
                     error=errors),),
        ).fetchall()
        counts: dict[tuple[str, int], list[int]] = {}
        for row in done:
            count = counts.setdefault((row["parent_job_id"], row["stage"]), [0, 0])
            count[0] += 1
            count[1] += row["status"] == "failed"
        recorded = {row["task_id"] for row in done}
        if not counts:
            return [], recorded
        keys = sorted(counts)
        stages = records(job_id=[k[0] for k in keys], stage=[k[1] for k in keys],
                         n=[counts[k][0] for k in keys], f=[counts[k][1] for k in keys])
        conn.execute(
            "SELECT 1 FROM app.job_stages s"
            " JOIN jsonb_to_recordset(%s) AS k(job_id text, stage int)"
            " ON s.job_id = k.job_id AND s.stage = k.stage"
            " ORDER BY s.job_id, s.stage FOR UPDATE OF s",
            (stages,),
        )
        return conn.execute(
            "UPDATE app.job_stages s SET pending = s.pending - c.n, failed = s.failed + c.f"
            " FROM jsonb_to_recordset(%s) AS c(job_id text, stage int, n int, f int)"
            " WHERE s.job_id = c.job_id AND s.stage = c.stage"
            " RETURNING s.*, c.f AS newly_failed",
            (stages,),
        ).fetchall(), recorded

    def renew_leases(self, conn: psycopg.Connection, task_ids: list[str],
                     attempts: list[int], lease_seconds: float) -> set[str]:
        """Extend running tasks' leases; returns the ids whose run is still wanted (this
        attempt's, still processing, of a job still active)."""
        rows = conn.execute(
            "UPDATE app.tasks t SET lease_expires_at = now() + make_interval(secs => %s),"
            " heartbeat = now() FROM jsonb_to_recordset(%s) AS m(task_id text, attempt int)"
            " WHERE t.task_id = m.task_id AND t.attempt = m.attempt"
            " AND t.status = 'processing'"
            " RETURNING t.task_id, t.stage,"
            "  (SELECT j.status FROM app.jobs j WHERE j.job_id = t.parent_job_id) AS job_status",
            (lease_seconds, records(task_id=task_ids, attempt=attempts)),
        ).fetchall()
        # A cleanup task (stage 0) runs for a job that has ended.
        return {r["task_id"] for r in rows if r["job_status"] in ACTIVE_JOB or r["stage"] == 0}

    def hand_back(self, conn: psycopg.Connection, task_ids: list[str], attempts: list[int]
                  ) -> list[dict[str, Any]]:
        """Queue claimed tasks of these attempts again, due now, their retry count as it
        was (they never ran); returns the rows handed back."""
        return conn.execute(
            "UPDATE app.tasks t SET status = 'queued', lease_expires_at = NULL,"
            " due_at = now(), updated_at = now()"
            " FROM jsonb_to_recordset(%s) AS m(task_id text, attempt int)"
            " WHERE t.task_id = m.task_id AND t.attempt = m.attempt"
            " AND t.status = 'processing'"
            " RETURNING t.task_id, t.parent_job_id, t.stage, t.attempt, t.retry_count",
            (records(task_id=task_ids, attempt=attempts),),
        ).fetchall()
