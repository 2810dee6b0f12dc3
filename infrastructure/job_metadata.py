"""Keys of a job's metadata the engine keeps besides its status: its cleanup task's
outcome, and how often each stage's task builder has been retried."""

from __future__ import annotations

from typing import Any, Optional

import psycopg
from psycopg.types.json import Jsonb


class JobMetadataRepository:
    def set_key(self, conn: psycopg.Connection, job_id: str, key: str, value: Any) -> None:
        conn.execute(
            "UPDATE app.jobs SET metadata = jsonb_set(metadata, ARRAY[%s], %s)"
            " WHERE job_id = %s",
            (key, Jsonb(value), job_id),
        )

    def count_build_retry(self, conn: psycopg.Connection, job_id: str, stage: int
                          ) -> Optional[int]:
        """Add one to the retries of a stage's task builder (touching the job, so the
        sweeper does not take it for stranded while its retry waits); returns the count."""
        row = conn.execute(
            "UPDATE app.jobs SET metadata = jsonb_set(metadata, '{stage_build_retries}',"
            "  coalesce(metadata->'stage_build_retries', '{}'::jsonb) || jsonb_build_object("
            "   %(stage)s::text, coalesce((metadata->'stage_build_retries'->>%(stage)s::text)"
            "   ::int, 0) + 1)), updated_at = now()"
            " WHERE job_id = %(job_id)s"
            " RETURNING (metadata->'stage_build_retries'->>%(stage)s::text)::int AS n",
            {"stage": stage, "job_id": job_id},
        ).fetchone()
        return row["n"] if row else None
