"""SQL of the job API's write side beyond submit (issue 17): cancelling jobs, running them
again (a new attempt, from stage 1 or from the stage that failed) and purging them, for
one job or a chunk of jobs at a time, always within the caller's transaction.

Lock order, as everywhere in the engine: a job's tasks in task id order, then the job's
row (completions take a task, then its stage, then its job), so none of these can close a
lock cycle with a completion or a batch.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import psycopg
from psycopg.types.json import Jsonb

ACTIVE = ("queued", "processing")

# The SET clause shared by every new attempt: the attempt counts up, the previous one's
# status, error, cleanup and cancellation are kept in metadata.previous_attempts.
_NEW_ATTEMPT = (
    " attempt = attempt + 1, result_data = NULL, error_details = NULL,"
    " queued_at = now(), finished_at = NULL, updated_at = now(),"
    " metadata = jsonb_set(metadata - 'cleanup' - 'stage_build_retries',"
    "  '{previous_attempts}',"
    "  coalesce(metadata->'previous_attempts', '[]'::jsonb) || jsonb_build_array("
    "   jsonb_strip_nulls(jsonb_build_object('attempt', attempt, 'status', status,"
    "    'error_details', error_details, 'ended_at', updated_at,"
    "    'cleanup', metadata->'cleanup', 'cancellation', metadata->'cancellation')"
    "))) - 'cancellation'")


class JobControlRepository:
    # -- locks ----------------------------------------------------------------------------
    def lock_tasks(self, conn: psycopg.Connection, job_ids: list[str]) -> None:
        """Lock every task of these jobs in task id order (waiting: no job row is held
        yet, so this cannot close a cycle with a completion)."""
        conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM app.tasks WHERE parent_job_id = ANY(%s)"
            " ORDER BY task_id FOR UPDATE) t", (list(job_ids),))

    def lock_jobs(self, conn: psycopg.Connection, job_ids: list[str]
                  ) -> list[dict[str, Any]]:
        """Lock these jobs' rows in id order. Once held, no task of theirs can be added
        (stage openings and failures take the job's row first)."""
        return conn.execute(
            "SELECT * FROM app.jobs WHERE job_id = ANY(%s) ORDER BY job_id FOR UPDATE",
            (list(job_ids),)).fetchall()

    def cleanup_pending(self, conn: psycopg.Connection, job_ids: list[str]) -> set[str]:
        """The jobs whose cleanup task (stage 0) is still queued or running (read under
        the jobs' row locks: exact)."""
        rows = conn.execute(
            "SELECT parent_job_id FROM app.tasks WHERE parent_job_id = ANY(%s)"
            " AND stage = 0 AND task_index = 0 AND status = ANY(%s)",
            (list(job_ids), list(ACTIVE))).fetchall()
        return {r["parent_job_id"] for r in rows}

    # -- cancel ---------------------------------------------------------------------------
    def cancel_jobs(self, conn: psycopg.Connection, job_ids: list[str], error: str,
                    cancellation: dict[str, Any]) -> list[dict[str, Any]]:
        """End the active ones of these jobs `cancelled` (when and why in
        metadata.cancellation); returns their rows."""
        return conn.execute(
            "UPDATE app.jobs SET status = 'cancelled', error_details = %s,"
            " finished_at = now(), updated_at = now(),"
            " metadata = jsonb_set(metadata, '{cancellation}', %s)"
            " WHERE job_id = ANY(%s) AND status = ANY(%s) RETURNING *",
            (error, Jsonb(cancellation), list(job_ids), list(ACTIVE))).fetchall()

    def cancel_tasks(self, conn: psycopg.Connection, job_ids: list[str]) -> int:
        """Cancel the queued and running tasks of these (cancelled) jobs, and drop the
        stored chunks of a stage still opening: a running handler's outcome then finds
        its task ended and is not recorded."""
        conn.execute("DELETE FROM app.stage_plans WHERE job_id = ANY(%s)", (list(job_ids),))
        # Under the jobs' row locks, never wait for a task: a task added between
        # lock_tasks and lock_jobs may be held by a completion waiting for its job's row.
        # Such a task is skipped here, and cancelled by cancel_left_tasks after the commit.
        return conn.execute(
            "UPDATE app.tasks SET status = 'cancelled', lease_expires_at = NULL,"
            " updated_at = now() WHERE task_id IN (SELECT task_id FROM app.tasks"
            "  WHERE parent_job_id = ANY(%s) AND status = ANY(%s) AND stage <> 0"
            "  FOR UPDATE SKIP LOCKED)", (list(job_ids), list(ACTIVE))).rowcount

    def cancel_left_tasks(self, conn: psycopg.Connection, jobs: list[tuple[str, int]]
                          ) -> int:
        """After the cancel's commit, holding no job row: the queued or running tasks of
        these (job, attempt)s still cancelled that the cancel skipped, locked in task id
        order (waiting is safe now)."""
        return conn.execute(
            "UPDATE app.tasks SET status = 'cancelled', lease_expires_at = NULL,"
            " updated_at = now() WHERE task_id IN (SELECT t.task_id FROM app.tasks t"
            "  JOIN app.jobs j ON j.job_id = t.parent_job_id AND j.attempt = t.attempt"
            "  JOIN unnest(%s::text[], %s::int[]) AS c(job_id, attempt)"
            "   ON c.job_id = j.job_id AND c.attempt = j.attempt"
            "  WHERE j.status = 'cancelled' AND t.status = ANY(%s) AND t.stage <> 0"
            "  ORDER BY t.task_id FOR UPDATE OF t)",
            ([j for j, _ in jobs], [a for _, a in jobs], list(ACTIVE))).rowcount

    # -- new attempts ---------------------------------------------------------------------
    def restart(self, conn: psycopg.Connection, job_id: str, parameters: dict[str, Any],
                statuses: Iterable[str]) -> Optional[int]:
        """A new attempt from stage 1, every task deleted. Returns the attempt."""
        row = conn.execute(
            "UPDATE app.jobs SET status = 'queued', stage = 1, parameters = %s,"
            " stage_results = '{}'::jsonb, started_at = NULL," + _NEW_ATTEMPT +
            " WHERE job_id = %s AND status = ANY(%s) RETURNING attempt",
            (Jsonb(parameters), job_id, list(statuses))).fetchone()
        if row is None:
            return None
        conn.execute("DELETE FROM app.tasks WHERE parent_job_id = %s", (job_id,))
        conn.execute("DELETE FROM app.job_stages WHERE job_id = %s", (job_id,))
        return row["attempt"]

    def restart_many(self, conn: psycopg.Connection, job_ids: list[str],
                     statuses: Iterable[str]) -> list[dict[str, Any]]:
        """restart() for many jobs at once, their parameters unchanged: (job_id,
        attempt) of those restarted."""
        rows = conn.execute(
            "UPDATE app.jobs SET status = 'queued', stage = 1,"
            " stage_results = '{}'::jsonb, started_at = NULL," + _NEW_ATTEMPT +
            " WHERE job_id = ANY(%s) AND status = ANY(%s) RETURNING job_id, attempt",
            (list(job_ids), list(statuses))).fetchall()
        done = [r["job_id"] for r in rows]
        if done:
            conn.execute("DELETE FROM app.tasks WHERE parent_job_id = ANY(%s)", (done,))
            conn.execute("DELETE FROM app.job_stages WHERE job_id = ANY(%s)", (done,))
            conn.execute("DELETE FROM app.stage_plans WHERE job_id = ANY(%s)", (done,))
        return rows

    def stage_facts(self, conn: psycopg.Connection, job_ids: list[str]
                    ) -> list[dict[str, Any]]:
        """Per job and stage with tasks or a counter: its task_count (null: never
        opened), the tasks present, and how many did not complete."""
        return conn.execute(
            "SELECT coalesce(s.job_id, t.job_id) AS job_id,"
            " coalesce(s.stage, t.stage) AS stage, s.task_count,"
            " coalesce(t.present, 0) AS present, coalesce(t.unfinished, 0) AS unfinished"
            " FROM (SELECT job_id, stage, task_count FROM app.job_stages"
            "  WHERE job_id = ANY(%(j)s)) s"
            " FULL JOIN (SELECT parent_job_id AS job_id, stage, count(*) AS present,"
            "  count(*) FILTER (WHERE status <> 'completed') AS unfinished"
            "  FROM app.tasks WHERE parent_job_id = ANY(%(j)s) GROUP BY 1, 2) t"
            " ON t.job_id = s.job_id AND t.stage = s.stage ORDER BY 1, 2",
            {"j": list(job_ids)}).fetchall()

    def restart_from(self, conn: psycopg.Connection, job_id: str, stage: int,
                     statuses: Iterable[str], reset: bool) -> Optional[tuple[int, list]]:
        """A new attempt from `stage`, keeping the stages before it and their results;
        later stages (and the cleanup task) are deleted. reset: the stage's tasks that
        did not complete are queued again (returned, with the attempt) and the stage
        re-opened for them; otherwise the stage is deleted too, to be built again."""
        row = conn.execute(
            "UPDATE app.jobs SET status = %(status)s, stage = %(stage)s,"
            " started_at = CASE WHEN %(reset)s THEN now() END,"
            " stage_results = (SELECT coalesce(jsonb_object_agg(key, value), '{}'::jsonb)"
            "  FROM jsonb_each(stage_results) WHERE key::int < %(stage)s)," + _NEW_ATTEMPT +
            " WHERE job_id = %(job)s AND status = ANY(%(statuses)s) RETURNING attempt",
            {"status": "processing" if reset else "queued", "stage": stage, "reset": reset,
             "job": job_id, "statuses": list(statuses)}).fetchone()
        if row is None:
            return None
        attempt = row["attempt"]
        keep = stage if reset else stage - 1
        params = {"job": job_id, "keep": keep, "stage": stage, "attempt": attempt}
        conn.execute("DELETE FROM app.tasks WHERE parent_job_id = %(job)s"
                     " AND (stage > %(keep)s OR stage = 0)", params)
        conn.execute("DELETE FROM app.job_stages WHERE job_id = %(job)s"
                     " AND (stage > %(keep)s OR stage = 0)", params)
        conn.execute("DELETE FROM app.stage_plans WHERE job_id = %(job)s", params)
        again: list = []
        if reset:
            again = conn.execute(
                "UPDATE app.tasks SET status = 'queued', retry_count = 0, result_data = NULL,"
                " error_details = NULL, lease_expires_at = NULL, heartbeat = NULL,"
                " started_at = NULL, due_at = now(), updated_at = now()"
                " WHERE parent_job_id = %(job)s AND stage = %(stage)s"
                " AND status <> 'completed' RETURNING task_id, stage", params).fetchall()
            conn.execute(
                "UPDATE app.job_stages SET pending = %(n)s, failed = 0, completed_at = NULL"
                " WHERE job_id = %(job)s AND stage = %(stage)s", {**params, "n": len(again)})
        # The kept tasks belong to the new attempt: a worker of an older one still
        # running can no longer record anything on them.
        conn.execute("UPDATE app.tasks SET attempt = %(attempt)s"
                     " WHERE parent_job_id = %(job)s AND attempt <> %(attempt)s", params)
        return attempt, again

    # -- purge ----------------------------------------------------------------------------
    def purge(self, conn: psycopg.Connection, job_ids: list[str]) -> list[str]:
        """Delete these jobs' records (the job, its tasks, stages, stored chunks and
        unsent messages), only those that have ended and whose cleanup task is not still
        queued or running; each leaves its id and last attempt in app.purged_jobs.
        Returns the ids purged. Outputs (blobs, tables, catalogue items) are untouched."""
        self.lock_tasks(conn, job_ids)
        self.lock_jobs(conn, job_ids)
        pending = self.cleanup_pending(conn, job_ids)
        rows = conn.execute(
            "WITH gone AS (DELETE FROM app.jobs WHERE job_id = ANY(%s)"
            "  AND status <> ALL(%s) AND job_id <> ALL(%s) RETURNING job_id, attempt)"
            " INSERT INTO app.purged_jobs (job_id, attempt)"
            " SELECT job_id, attempt FROM gone ON CONFLICT (job_id) DO UPDATE"
            " SET attempt = greatest(app.purged_jobs.attempt, excluded.attempt),"
            " purged_at = now() RETURNING job_id",
            (list(job_ids), list(ACTIVE), sorted(pending))).fetchall()
        gone = [r["job_id"] for r in rows]
        if gone:
            conn.execute("DELETE FROM app.outbox WHERE job_id = ANY(%s)", (gone,))
        return gone

    def was_purged(self, conn: psycopg.Connection, job_id: str) -> bool:
        return conn.execute("SELECT 1 FROM app.purged_jobs WHERE job_id = %s",
                            (job_id,)).fetchone() is not None

    def expired(self, conn: psycopg.Connection, status: str, days: float, limit: int
                ) -> list[str]:
        """Up to `limit` jobs of this (ended) status last changed over `days` ago, the
        oldest first (jobs_status_idx: status, updated_at; a job's updated_at is never
        before its finished_at)."""
        rows = conn.execute(
            "SELECT job_id FROM app.jobs WHERE status = %s"
            " AND updated_at < now() - make_interval(secs => %s)"
            " ORDER BY updated_at LIMIT %s", (status, days * 86400.0, limit)).fetchall()
        return [r["job_id"] for r in rows]

    def forget_purged(self, conn: psycopg.Connection, older_than_days: float) -> int:
        return conn.execute(
            "DELETE FROM app.purged_jobs WHERE purged_at < now() - make_interval(secs => %s)",
            (older_than_days * 86400.0,)).rowcount
