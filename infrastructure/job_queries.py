"""The read side of the job API: pages of jobs and of a job's tasks, counts, and a job's
stage times. Read-only SQL on the engine's tables; filters arrive already validated
(core/job_listing.py) as plain values.

Jobs are read newest first by keyset on (created_at, job_id), never OFFSET. With one or
more statuses (or job types), each value's own range of jobs_status_created_idx
(jobs_type_created_idx) is read in that order and the ranges merged (UNION ALL of ordered,
limited branches: a Merge Append), so a page costs its own rows whatever the table holds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

import psycopg

TERMINAL_TASK = ("completed", "failed", "cancelled")

JOB_ROW_COLUMNS = (
    "job_id, job_type, status, stage, total_stages, attempt, created_at, updated_at,"
    " queued_at, started_at, finished_at,"
    " nullif(split_part(error_details, E'\\n', 1), '') AS error")


def _job_conditions(filters: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """WHERE conditions common to every branch: times, id prefix, and job types when the
    branches are by status."""
    where = []
    if filters.get("created_after") is not None:
        where.append("created_at > %(created_after)s")
        params["created_after"] = filters["created_after"]
    if filters.get("created_before") is not None:
        where.append("created_at < %(created_before)s")
        params["created_before"] = filters["created_before"]
    if filters.get("updated_after") is not None:
        where.append("updated_at > %(updated_after)s")
        params["updated_after"] = filters["updated_after"]
    prefix = filters.get("id_prefix")
    if prefix:
        # A range on the primary key (lowercase hex sorts the same in every collation),
        # then the exact test.
        where.append("job_id >= %(prefix)s AND job_id < %(prefix_end)s"
                     " AND job_id LIKE %(prefix_like)s")
        params.update(prefix=prefix, prefix_end=prefix + "g", prefix_like=prefix + "%")
    return where


class JobQueries:
    def list_jobs(self, conn: psycopg.Connection, filters: dict[str, Any],
                  after: Optional[tuple[datetime, str]], limit: int) -> list[dict[str, Any]]:
        """Up to `limit` jobs newest first, after the sort key `after` (created_at, job_id).
        filters: statuses, job_types (lists, empty: any), created_after, created_before,
        updated_after (aware datetimes), id_prefix (lowercase hex)."""
        params: dict[str, Any] = {"n": limit}
        common = _job_conditions(filters, params)
        if after is not None:
            common.append("(created_at, job_id) < (%(after_created)s, %(after_id)s)")
            params.update(after_created=after[0], after_id=after[1])
        statuses = list(filters.get("statuses") or ())
        job_types = list(filters.get("job_types") or ())
        # Branch on the more selective list: statuses when given, else job types.
        if statuses:
            column, values = "status", statuses
            if job_types:
                common.append("job_type = ANY(%(job_types)s)")
                params["job_types"] = job_types
        elif job_types:
            column, values = "job_type", job_types
        else:
            column, values = None, [None]
        branches = []
        for i, value in enumerate(values):
            where = list(common)
            if column is not None:
                where.append(f"{column} = %(v{i})s")
                params[f"v{i}"] = value
            branches.append(
                f"(SELECT {JOB_ROW_COLUMNS} FROM app.jobs"
                + (" WHERE " + " AND ".join(where) if where else "")
                + " ORDER BY created_at DESC, job_id DESC LIMIT %(n)s)")
        if len(branches) == 1:
            return conn.execute(branches[0][1:-1], params).fetchall()
        return conn.execute(
            "SELECT * FROM (" + " UNION ALL ".join(branches) + ") page"
            " ORDER BY created_at DESC, job_id DESC LIMIT %(n)s", params).fetchall()

    def stage_counts(self, conn: psycopg.Connection, job_ids: list[str]
                     ) -> list[dict[str, Any]]:
        """(job_id, stage, status, n) of these jobs' tasks."""
        if not job_ids:
            return []
        return conn.execute(
            "SELECT parent_job_id AS job_id, stage, status, count(*)::int AS n"
            " FROM app.tasks WHERE parent_job_id = ANY(%s)"
            " GROUP BY parent_job_id, stage, status", (job_ids,)).fetchall()

    def summary(self, conn: psycopg.Connection, filters: dict[str, Any]
                ) -> list[dict[str, Any]]:
        """(status, job_type, n) of the jobs matching the filters (one scan)."""
        params: dict[str, Any] = {}
        where = _job_conditions(filters, params)
        if filters.get("statuses"):
            where.append("status = ANY(%(statuses)s)")
            params["statuses"] = list(filters["statuses"])
        if filters.get("job_types"):
            where.append("job_type = ANY(%(job_types)s)")
            params["job_types"] = list(filters["job_types"])
        return conn.execute(
            "SELECT status, job_type, count(*)::int AS n FROM app.jobs"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " GROUP BY status, job_type", params).fetchall()

    def stage_times(self, conn: psycopg.Connection, job_id: str) -> list[dict[str, Any]]:
        """Each opened stage's start (created_at) and close (completed_at)."""
        return conn.execute(
            "SELECT stage, created_at, completed_at FROM app.job_stages WHERE job_id = %s"
            " ORDER BY stage", (job_id,)).fetchall()

    def list_tasks(self, conn: psycopg.Connection, job_id: str, stage: Optional[int],
                   statuses: list[str], after: Optional[tuple[int, int]], limit: int,
                   include: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Up to `limit` of a job's tasks in (stage, task_index) order after `after`, by
        the (parent_job_id, stage, task_index) index. include: "parameters", "result"."""
        columns = ("task_id, task_type, stage, task_index, status, retry_count, started_at,"
                   " CASE WHEN status = ANY(%(terminal)s) THEN updated_at END AS finished_at,"
                   " error_details")
        if "parameters" in include:
            columns += ", parameters"
        if "result" in include:
            columns += ", result_data"
        where = ["parent_job_id = %(job_id)s"]
        params: dict[str, Any] = {"job_id": job_id, "n": limit,
                                  "terminal": list(TERMINAL_TASK)}
        if stage is not None:
            where.append("stage = %(stage)s")
            params["stage"] = stage
        if statuses:
            where.append("status = ANY(%(statuses)s)")
            params["statuses"] = statuses
        if after is not None:
            where.append("(stage, task_index) > (%(after_stage)s, %(after_index)s)")
            params.update(after_stage=after[0], after_index=after[1])
        return conn.execute(
            f"SELECT {columns} FROM app.tasks WHERE " + " AND ".join(where)
            + " ORDER BY stage, task_index LIMIT %(n)s", params).fetchall()
