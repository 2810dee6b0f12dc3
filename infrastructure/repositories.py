"""Repositories for jobs, tasks and stage counters: the only code that speaks SQL to the
engine's tables. Every method takes the connection (or transaction) to run in, so the
caller decides what is atomic. Parameterized SQL only."""

from __future__ import annotations

from typing import Any, Iterable, Optional

import psycopg
from psycopg.types.json import Jsonb

from core.models import RESTARTABLE_JOB_STATUSES, JobRecord, TaskDefinition
from infrastructure.job_control import JobControlRepository

_TERMINAL_TASK = ("completed", "failed", "cancelled")
ACTIVE_JOB = ("queued", "processing")

# The previous stage's result of a claimed task whose stage uses lineage (the stages are
# named "job_type:stage"), read by the claim itself: no query of its own per task or batch.
PREDECESSOR_RESULT = (
    "(SELECT p.result_data FROM app.tasks p WHERE t.stage > 1"
    " AND (t.job_type || ':' || t.stage) = ANY(%(lineage)s)"
    " AND p.parent_job_id = t.parent_job_id AND p.stage = t.stage - 1"
    " AND p.task_index = t.task_index) AS predecessor_result")


class JobRepository:
    def insert_job(self, conn: psycopg.Connection, job: JobRecord) -> bool:
        """Insert a new job; False when a job with this id already exists. A job purged
        before starts at the attempt after the purged one's (job.attempt is set to it):
        its message ids must differ from those duplicate detection may still hold."""
        row = conn.execute(
            "INSERT INTO app.jobs (job_id, job_type, parameters, status, stage, total_stages,"
            " attempt, stage_results, metadata)"
            " VALUES (%s, %s, %s, %s, %s, %s, coalesce((SELECT p.attempt + 1 FROM"
            " app.purged_jobs p WHERE p.job_id = %s), %s), %s, %s)"
            " ON CONFLICT (job_id) DO NOTHING RETURNING attempt",
            (
                job.job_id, job.job_type, Jsonb(job.parameters), job.status.value, job.stage,
                job.total_stages, job.job_id, job.attempt, Jsonb(job.stage_results),
                Jsonb(job.metadata),
            ),
        ).fetchone()
        if row is not None:
            job.attempt = row["attempt"]
        return row is not None

    def get_job(
        self, conn: psycopg.Connection, job_id: str, for_update: bool = False,
        skip_locked: bool = False,
    ) -> Optional[dict[str, Any]]:
        sql = "SELECT * FROM app.jobs WHERE job_id = %s"
        if for_update:
            sql += " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"
        return conn.execute(sql, (job_id,)).fetchone()

    def mark_processing(self, conn: psycopg.Connection, job_id: str) -> None:
        conn.execute(
            "UPDATE app.jobs SET status = 'processing', started_at = now(), updated_at = now()"
            " WHERE job_id = %s AND status = 'queued'",
            (job_id,),
        )

    def start_new_attempt(self, conn: psycopg.Connection, job_id: str,
                          parameters: dict[str, Any],
                          statuses: Iterable[str] = RESTARTABLE_JOB_STATUSES
                          ) -> Optional[int]:
        """Reset a failed or cancelled job (or one of `statuses`) to run again from
        stage 1 as a new attempt (infrastructure/job_control.py). Returns the attempt."""
        return JobControlRepository().restart(conn, job_id, parameters, statuses)

    def awaiting_finalize(
        self, conn: psycopg.Connection, older_than_seconds: float, limit: int
    ) -> list[str]:
        """Active jobs whose last stage closed long ago but that never ended."""
        rows = conn.execute(
            "SELECT j.job_id FROM app.jobs j JOIN app.job_stages s"
            " ON s.job_id = j.job_id AND s.stage = j.stage"
            " WHERE j.status = 'processing' AND j.stage = j.total_stages"
            " AND s.completed_at < now() - make_interval(secs => %s) LIMIT %s",
            (older_than_seconds, limit),
        ).fetchall()
        return [r["job_id"] for r in rows]

    def stranded(self, conn: psycopg.Connection, older_than_seconds: float, limit: int
                 ) -> list[dict[str, Any]]:
        """Active jobs that reached a stage long ago but never opened it, with no message
        waiting in the outbox: the job message that opens the stage was lost (the queue
        dead-lettered it). Locked (skipping rows others hold) and touched, so concurrent
        sweeps, and the next sweep, leave them alone: the caller re-sends their message
        in this transaction."""
        return conn.execute(
            "UPDATE app.jobs SET updated_at = now() WHERE job_id IN ("
            " SELECT j.job_id FROM app.jobs j WHERE j.status IN ('queued', 'processing')"
            " AND j.updated_at < now() - make_interval(secs => %s)"
            " AND NOT EXISTS (SELECT 1 FROM app.job_stages s"
            "  WHERE s.job_id = j.job_id AND s.stage = j.stage)"
            " AND NOT EXISTS (SELECT 1 FROM app.outbox o WHERE o.job_id = j.job_id)"
            " ORDER BY j.updated_at LIMIT %s FOR UPDATE SKIP LOCKED)"
            " RETURNING job_id, stage, attempt",
            (older_than_seconds, limit),
        ).fetchall()

    def close_stage(
        self,
        conn: psycopg.Connection,
        job_id: str,
        stage: int,
        summary: dict[str, Any],
        next_stage: Optional[int],
    ) -> bool:
        """Store a finished stage's summary and move the job to next_stage (None: stay).
        Only acts while the job is on that stage and not ended; returns whether it did."""
        row = conn.execute(
            "UPDATE app.jobs SET stage_results = stage_results || %s,"
            " stage = coalesce(%s, stage), updated_at = now()"
            " WHERE job_id = %s AND stage = %s AND status IN ('queued', 'processing')"
            " RETURNING job_id",
            (Jsonb({str(stage): summary}), next_stage, job_id, stage),
        ).fetchone()
        return row is not None

    def end_job(
        self,
        conn: psycopg.Connection,
        job_id: str,
        status: str,
        result_data: Optional[dict[str, Any]] = None,
        error_details: Optional[str] = None,
    ) -> bool:
        """Give a job its terminal status; False if it had already ended."""
        row = conn.execute(
            "UPDATE app.jobs SET status = %s, result_data = %s, error_details = %s,"
            " finished_at = now(), updated_at = now()"
            " WHERE job_id = %s AND status IN ('queued', 'processing') RETURNING job_id",
            (status, Jsonb(result_data) if result_data is not None else None, error_details,
             job_id),
        ).fetchone()
        return row is not None

    def task_counts(self, conn: psycopg.Connection, job_id: str) -> list[dict[str, Any]]:
        return conn.execute(
            "SELECT stage, status, count(*)::int AS n FROM app.tasks"
            " WHERE parent_job_id = %s GROUP BY stage, status ORDER BY stage",
            (job_id,),
        ).fetchall()


class TaskRepository:
    def insert_tasks(
        self, conn: psycopg.Connection, job_id: str, job_type: str,
        tasks: list[TaskDefinition], attempt: int = 1,
    ) -> int:
        """Insert a stage's tasks (of the job's attempt) in one statement; existing ones are
        left as they are."""
        if not tasks:
            return 0
        cur = conn.execute(
            "INSERT INTO app.tasks (task_id, parent_job_id, job_type, task_type, stage,"
            " task_index, parameters, attempt)"
            " SELECT t.task_id, %s, %s, t.task_type, t.stage, t.task_index,"
            " coalesce(t.parameters, '{}'::jsonb), %s"
            " FROM jsonb_to_recordset(%s) AS t(task_id text, task_type text, stage int,"
            "  task_index int, parameters jsonb)"
            " ON CONFLICT (task_id) DO NOTHING",
            (job_id, job_type, attempt, Jsonb([
                {"task_id": t.task_id, "task_type": t.task_type, "stage": t.stage,
                 "task_index": t.task_index, "parameters": t.parameters} for t in tasks])),
        )
        return cur.rowcount

    def create_stage(
        self, conn: psycopg.Connection, job_id: str, stage: int, task_count: int
    ) -> bool:
        row = conn.execute(
            "INSERT INTO app.job_stages (job_id, stage, task_count, pending)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING stage",
            (job_id, stage, task_count, task_count),
        ).fetchone()
        return row is not None

    def get_stage(self, conn: psycopg.Connection, job_id: str, stage: int):
        return conn.execute(
            "SELECT * FROM app.job_stages WHERE job_id = %s AND stage = %s", (job_id, stage)
        ).fetchone()

    def mark_stage_completed(self, conn: psycopg.Connection, job_id: str, stage: int) -> None:
        conn.execute(
            "UPDATE app.job_stages SET completed_at = now() WHERE job_id = %s AND stage = %s",
            (job_id, stage),
        )

    # What results between stages and finalize_job need: not parameters or metadata, whose
    # decoding would dominate reading a large stage.
    OUTCOME_COLUMNS = ("task_id, parent_job_id, job_type, task_type, stage, task_index,"
                       " status, result_data, error_details, retry_count, created_at,"
                       " updated_at")

    def list_tasks(
        self, conn: psycopg.Connection, job_id: str, stage: Optional[int] = None,
        statuses: Optional[Iterable[str]] = None, columns: str = "*",
    ) -> list[dict[str, Any]]:
        sql = f"SELECT {columns} FROM app.tasks WHERE parent_job_id = %s"
        params: list[Any] = [job_id]
        if stage is not None:
            sql += " AND stage = %s"
            params.append(stage)
        if statuses is not None:
            sql += " AND status = ANY(%s)"
            params.append(list(statuses))
        sql += " ORDER BY stage, task_index"
        return conn.execute(sql, params).fetchall()

    def get_task(self, conn: psycopg.Connection, task_id: str) -> Optional[dict[str, Any]]:
        return conn.execute("SELECT * FROM app.tasks WHERE task_id = %s", (task_id,)).fetchone()

    def claim_task(
        self, conn: psycopg.Connection, task_id: str, attempt: int, lease_seconds: float,
        lineage: Iterable[str] = (),
    ) -> Optional[dict[str, Any]]:
        """Mark a task processing under a lease, in one statement, if its job is active and
        on this attempt and the task is queued or its lease has lapsed (its worker died).
        Returns the task with its job's parameters and, if its stage is one of `lineage`
        ("job_type:stage"), its predecessor's result; or None."""
        return conn.execute(
            "UPDATE app.tasks t SET status = 'processing', heartbeat = now(),"
            " started_at = coalesce(t.started_at, now()),"
            " lease_expires_at = now() + make_interval(secs => %(lease)s), updated_at = now()"
            " FROM app.jobs j"
            " WHERE t.task_id = %(task_id)s AND j.job_id = t.parent_job_id"
            " AND j.attempt = %(attempt)s AND t.attempt = %(attempt)s"
            " AND (j.status = ANY(%(active)s) OR t.stage = 0)"
            " AND (t.status = 'queued' OR (t.status = 'processing'"
            "      AND t.lease_expires_at < now()))"
            " RETURNING t.*, j.parameters AS job_parameters, " + PREDECESSOR_RESULT,
            {"lease": lease_seconds, "task_id": task_id, "attempt": attempt,
             "active": list(ACTIVE_JOB), "lineage": list(lineage)},
        ).fetchone()

    def retry_task(
        self, conn: psycopg.Connection, task_id: str, attempt: int, error: dict[str, Any],
        error_details: str, due_in_seconds: float,
    ) -> Optional[int]:
        """Put a processing task of this attempt back in the queue for a retry; returns its
        new retry count, or None if it was no longer processing (or is another attempt's)."""
        row = conn.execute(
            "UPDATE app.tasks SET status = 'queued', retry_count = retry_count + 1,"
            " lease_expires_at = NULL, result_data = %s, error_details = %s,"
            " due_at = now() + make_interval(secs => %s), updated_at = now()"
            " WHERE task_id = %s AND attempt = %s AND status = 'processing'"
            " RETURNING retry_count",
            (Jsonb(error), error_details, due_in_seconds, task_id, attempt),
        ).fetchone()
        return row["retry_count"] if row else None

    def cancel_queued(self, conn: psycopg.Connection, job_id: str) -> int:
        """Cancel a failed job's queued tasks. Rows another transaction holds are skipped,
        never waited for (waiting could close a lock cycle with a completion); such a task
        finds its job failed when it runs."""
        return conn.execute(
            "UPDATE app.tasks SET status = 'cancelled', updated_at = now()"
            " WHERE task_id IN (SELECT task_id FROM app.tasks"
            "  WHERE parent_job_id = %s AND status = 'queued' AND stage <> 0"
            "  FOR UPDATE SKIP LOCKED)",
            (job_id,),
        ).rowcount

    def cancel_orphans(self, conn: psycopg.Connection, job_id: Optional[str] = None) -> int:
        """Cancel processing tasks of ended jobs whose lease lapsed: their worker died
        after the job ended, and nothing else would end them. Without job_id: of the jobs
        that failed in the last 7 days (only a failed job can end with tasks running; its
        running tasks end, or their leases lapse, within a task timeout plus a lease;
        a cancelled job's are cancelled with it)."""
        sql = ("UPDATE app.tasks t SET status = 'cancelled', updated_at = now()"
               " FROM app.jobs j WHERE j.job_id = t.parent_job_id"
               " AND t.status = 'processing' AND t.lease_expires_at < now()"
               " AND t.stage <> 0")
        params: list[Any] = []
        if job_id is not None:
            sql += " AND j.status NOT IN ('queued', 'processing') AND t.parent_job_id = %s"
            params.append(job_id)
        else:
            sql += (" AND j.status IN ('failed', 'cancelled')"
                    " AND j.updated_at > now() - interval '7 days'")
        return conn.execute(sql, params).rowcount

    def claim_lapsed(self, conn: psycopg.Connection, task_id: str, attempt: int,
                     lease_seconds: float) -> Optional[dict[str, Any]]:
        """The sweeper's claim: only a processing task whose lease lapsed (a task queued
        again meanwhile, or renewed, is left alone)."""
        return conn.execute(
            "UPDATE app.tasks t SET heartbeat = now(),"
            " lease_expires_at = now() + make_interval(secs => %s), updated_at = now()"
            " FROM app.jobs j"
            " WHERE t.task_id = %s AND j.job_id = t.parent_job_id AND j.attempt = %s"
            " AND t.attempt = j.attempt AND (j.status IN ('queued', 'processing')"
            "  OR t.stage = 0)"
            " AND t.status = 'processing' AND t.lease_expires_at < now()"
            " RETURNING t.*, j.parameters AS job_parameters",
            (lease_seconds, task_id, attempt),
        ).fetchone()

    # The sweeper's scans start from the active jobs (jobs_status_idx) and reach their
    # tasks by (parent_job_id, ...) (LATERAL: a nested loop, never a scan of all tasks):
    # no index on the tasks' status, which would make every task update write index
    # entries (see migration 0004). Each pass reads the active jobs' tasks.
    def lapsed_leases(self, conn: psycopg.Connection, limit: int) -> list[dict[str, Any]]:
        """Processing tasks of active jobs whose worker stopped renewing their lease
        (candidates only: the caller claims each one conditionally)."""
        return conn.execute(
            "SELECT t.task_id, j.attempt FROM app.jobs j CROSS JOIN LATERAL ("
            "  SELECT task_id, lease_expires_at FROM app.tasks"
            "  WHERE parent_job_id = j.job_id AND status = 'processing'"
            "  AND lease_expires_at < now() ORDER BY lease_expires_at LIMIT %(n)s) t"
            " WHERE j.status = ANY(%(active)s)"
            " ORDER BY t.lease_expires_at LIMIT %(n)s",
            {"active": list(ACTIVE_JOB), "n": limit},
        ).fetchall()

    def stale_queued(
        self, conn: psycopg.Connection, older_than_seconds: float, limit: int
    ) -> list[dict[str, Any]]:
        """Queued tasks of active jobs due long ago: their message may be lost. Locked,
        skipping rows others hold."""
        return conn.execute(
            "SELECT t.* FROM app.jobs j CROSS JOIN LATERAL ("
            "  SELECT * FROM app.tasks WHERE parent_job_id = j.job_id AND status = 'queued'"
            "  AND due_at < now() - make_interval(secs => %(older)s)"
            "  ORDER BY due_at LIMIT %(n)s FOR UPDATE SKIP LOCKED) t"
            " WHERE j.status = ANY(%(active)s) ORDER BY t.due_at LIMIT %(n)s",
            {"older": older_than_seconds, "n": limit, "active": list(ACTIVE_JOB)},
        ).fetchall()

    def touch_due(self, conn: psycopg.Connection, task_ids: list[str]) -> None:
        conn.execute("UPDATE app.tasks SET due_at = now() WHERE task_id = ANY(%s)", (task_ids,))

    def complete_task(
        self, conn: psycopg.Connection, task_id: str, status: str,
        result_data: Optional[dict[str, Any]], error_details: Optional[str],
        attempt: int = 1,
    ) -> Optional[dict[str, Any]]:
        """Record the outcome of a task of this attempt and count it off its stage, in one
        statement.

        Returns the stage row after the count (pending == 0: this was the stage's last
        task), or None when the task had already finished, or belongs to another attempt
        of its job: a repeated delivery, or a worker of an earlier attempt, counts
        nothing. The task's row lock makes a concurrent duplicate wait and then find the
        task finished; the stage row's lock orders concurrent completions of one stage."""
        return conn.execute(
            "WITH t AS ("
            "  UPDATE app.tasks SET status = %s, result_data = %s, error_details = %s,"
            "   updated_at = now()"
            "  WHERE task_id = %s AND attempt = %s AND status <> ALL(%s)"
            "  RETURNING parent_job_id, stage, status)"
            " UPDATE app.job_stages s SET pending = s.pending - 1,"
            "  failed = s.failed + (t.status = 'failed')::int"
            " FROM t WHERE s.job_id = t.parent_job_id AND s.stage = t.stage"
            " RETURNING s.*",
            (status, Jsonb(result_data) if result_data is not None else None, error_details,
             task_id, attempt, list(_TERMINAL_TASK)),
        ).fetchone()

    def result_of(
        self, conn: psycopg.Connection, job_id: str, stage: int, task_index: int
    ) -> Optional[dict[str, Any]]:
        row = conn.execute(
            "SELECT result_data FROM app.tasks"
            " WHERE parent_job_id = %s AND stage = %s AND task_index = %s",
            (job_id, stage, task_index),
        ).fetchone()
        return row["result_data"] if row else None

    def first_failure(
        self, conn: psycopg.Connection, job_id: str, stage: int
    ) -> Optional[dict[str, Any]]:
        return conn.execute(
            "SELECT task_id, task_index, error_details FROM app.tasks"
            " WHERE parent_job_id = %s AND stage = %s AND status = 'failed'"
            " ORDER BY task_index LIMIT 1",
            (job_id, stage),
        ).fetchone()

