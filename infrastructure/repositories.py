"""Repositories for jobs, tasks and stage counters: the only code that speaks SQL to the
engine's tables. Every method takes the connection (or transaction) to run in, so the
caller decides what is atomic. Parameterized SQL only."""

from __future__ import annotations

from typing import Any, Iterable, Optional

import psycopg
from psycopg.types.json import Jsonb

from core.models import JobRecord, TaskDefinition

_TERMINAL_TASK = ("completed", "failed")


class JobRepository:
    def insert_job(self, conn: psycopg.Connection, job: JobRecord) -> bool:
        """Insert a new job; False when a job with this id already exists."""
        row = conn.execute(
            "INSERT INTO app.jobs (job_id, job_type, parameters, status, stage, total_stages,"
            " attempt, stage_results, metadata)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (job_id) DO NOTHING RETURNING job_id",
            (
                job.job_id, job.job_type, Jsonb(job.parameters), job.status.value, job.stage,
                job.total_stages, job.attempt, Jsonb(job.stage_results), Jsonb(job.metadata),
            ),
        ).fetchone()
        return row is not None

    def get_job(
        self, conn: psycopg.Connection, job_id: str, for_update: bool = False
    ) -> Optional[dict[str, Any]]:
        sql = "SELECT * FROM app.jobs WHERE job_id = %s"
        if for_update:
            sql += " FOR UPDATE"
        return conn.execute(sql, (job_id,)).fetchone()

    def mark_processing(self, conn: psycopg.Connection, job_id: str) -> None:
        conn.execute(
            "UPDATE app.jobs SET status = 'processing', updated_at = now()"
            " WHERE job_id = %s AND status = 'queued'",
            (job_id,),
        )

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
            " updated_at = now()"
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
        tasks: list[TaskDefinition],
    ) -> int:
        """Insert a stage's tasks in one statement; existing ones are left as they are."""
        if not tasks:
            return 0
        cur = conn.execute(
            "INSERT INTO app.tasks (task_id, parent_job_id, job_type, task_type, stage,"
            " task_index, parameters)"
            " SELECT t.task_id, %s, %s, t.task_type, t.stage, t.task_index, t.parameters"
            " FROM unnest(%s::text[], %s::text[], %s::int[], %s::int[], %s::jsonb[])"
            " AS t(task_id, task_type, stage, task_index, parameters)"
            " ON CONFLICT (task_id) DO NOTHING",
            (
                job_id, job_type,
                [t.task_id for t in tasks], [t.task_type for t in tasks],
                [t.stage for t in tasks], [t.task_index for t in tasks],
                [Jsonb(t.parameters) for t in tasks],
            ),
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

    def list_tasks(
        self, conn: psycopg.Connection, job_id: str, stage: Optional[int] = None,
        statuses: Optional[Iterable[str]] = None,
    ) -> list[dict[str, Any]]:
        sql = "SELECT * FROM app.tasks WHERE parent_job_id = %s"
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

    def start_task(self, conn: psycopg.Connection, task_id: str) -> Optional[dict[str, Any]]:
        """Mark an unfinished task processing; None if it has already finished."""
        return conn.execute(
            "UPDATE app.tasks SET status = 'processing', heartbeat = now(), updated_at = now()"
            " WHERE task_id = %s AND status <> ALL(%s) RETURNING *",
            (task_id, list(_TERMINAL_TASK)),
        ).fetchone()

    def complete_task(
        self, conn: psycopg.Connection, task_id: str, status: str,
        result_data: Optional[dict[str, Any]], error_details: Optional[str],
    ) -> Optional[dict[str, Any]]:
        """Record a task's outcome and count it off its stage, in one statement.

        Returns the stage row after the count (pending == 0: this was the stage's last
        task), or None when the task had already finished: a repeated delivery counts
        nothing. The task's row lock makes a concurrent duplicate wait and then find the
        task finished; the stage row's lock orders concurrent completions of one stage."""
        return conn.execute(
            "WITH t AS ("
            "  UPDATE app.tasks SET status = %s, result_data = %s, error_details = %s,"
            "   updated_at = now()"
            "  WHERE task_id = %s AND status <> ALL(%s)"
            "  RETURNING parent_job_id, stage, status)"
            " UPDATE app.job_stages s SET pending = s.pending - 1,"
            "  failed = s.failed + (t.status = 'failed')::int"
            " FROM t WHERE s.job_id = t.parent_job_id AND s.stage = t.stage"
            " RETURNING s.*",
            (status, Jsonb(result_data) if result_data is not None else None, error_details,
             task_id, list(_TERMINAL_TASK)),
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
