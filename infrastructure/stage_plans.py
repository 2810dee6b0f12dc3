"""The stored task lists of stages that open in chunks (app.stage_plans, migration 0006)."""

from __future__ import annotations

from typing import Any, Optional

import psycopg
from psycopg.types.json import Jsonb

from core.models import TaskDefinition


def _plain(task: TaskDefinition) -> dict[str, Any]:
    return {"task_id": task.task_id, "task_type": task.task_type, "stage": task.stage,
            "task_index": task.task_index, "parameters": task.parameters}


class StagePlanRepository:
    def store(self, conn: psycopg.Connection, job_id: str, stage: int, attempt: int,
              chunks: list[list[TaskDefinition]], first_chunk: int = 1) -> int:
        """Store a stage's remaining chunks (numbered from first_chunk); returns how many."""
        if not chunks:
            return 0
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO app.stage_plans (job_id, stage, attempt, chunk, tasks)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(job_id, stage, attempt, first_chunk + n, Jsonb([_plain(t) for t in chunk]))
                 for n, chunk in enumerate(chunks)],
            )
        return len(chunks)

    def take_next(self, conn: psycopg.Connection, job_id: str, stage: int
                  ) -> Optional[dict[str, Any]]:
        """The stage's next stored chunk, locked (a chunk another opener holds is skipped:
        two openers of one stage work on different chunks), or None."""
        row = conn.execute(
            "SELECT chunk, attempt, tasks FROM app.stage_plans"
            " WHERE job_id = %s AND stage = %s ORDER BY chunk LIMIT 1"
            " FOR UPDATE SKIP LOCKED",
            (job_id, stage),
        ).fetchone()
        if row is None:
            return None
        return {"chunk": row["chunk"], "attempt": row["attempt"],
                "tasks": [TaskDefinition.model_validate(t) for t in row["tasks"]]}

    def delete(self, conn: psycopg.Connection, job_id: str, stage: int, chunk: int) -> None:
        conn.execute("DELETE FROM app.stage_plans WHERE job_id = %s AND stage = %s"
                     " AND chunk = %s", (job_id, stage, chunk))

    def discard(self, conn: psycopg.Connection, job_id: str) -> int:
        """Forget every stored chunk of a job (it ended, or starts a new attempt)."""
        return conn.execute("DELETE FROM app.stage_plans WHERE job_id = %s",
                            (job_id,)).rowcount

    def remaining(self, conn: psycopg.Connection, job_id: str, stage: int) -> int:
        return conn.execute(
            "SELECT count(*)::int AS n FROM app.stage_plans WHERE job_id = %s AND stage = %s",
            (job_id, stage)).fetchone()["n"]

    def stalled(self, conn: psycopg.Connection, older_than_seconds: float, limit: int
                ) -> list[dict[str, Any]]:
        """Stages with chunks stored long ago and still not inserted: their opener died."""
        return conn.execute(
            "SELECT job_id, stage, min(attempt) AS attempt FROM app.stage_plans"
            " GROUP BY job_id, stage"
            " HAVING min(created_at) < now() - make_interval(secs => %s) LIMIT %s",
            (older_than_seconds, limit),
        ).fetchall()

    def lock_job(self, conn: psycopg.Connection, job_id: str) -> Optional[dict[str, Any]]:
        """The job's row, share-locked: a chunk is inserted only while its job cannot end
        (ending takes the row for update and then drops the job's stored chunks)."""
        return conn.execute(
            "SELECT job_id, job_type, status, stage, attempt FROM app.jobs"
            " WHERE job_id = %s FOR SHARE", (job_id,)).fetchone()
