"""Task updates stay HOT (docs/performance.md, migrations 0004 and 0007): no index of the
engine's tables covers a column that a task's claim, lease renewal, retry or completion
changes, in its keys, INCLUDE list or predicate. An update that changes an indexed column
writes new entries into every index of the table."""

from __future__ import annotations

import psycopg

# What the task path writes: the claim (status, heartbeat, started_at, lease), lease
# renewal, a retry (retry_count, due_at, result_data, error_details), the completion, and
# the stage counter the completion takes down.
TASK_UPDATE_COLUMNS = {
    "app.tasks": {"status", "heartbeat", "started_at", "lease_expires_at", "updated_at",
                  "retry_count", "due_at", "result_data", "error_details", "metadata"},
    "app.job_stages": {"pending", "failed", "completed_at"},
}


def indexed_columns(conn: psycopg.Connection, table: str) -> dict[str, set[str]]:
    """Each index of the table: the columns its keys, INCLUDE list, expressions and
    predicate use."""
    rows = conn.execute(
        "SELECT i.indexrelid::regclass::text AS name, a.attname FROM pg_index i"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum > 0"
        " AND (a.attnum = ANY(i.indkey)"
        "      OR pg_get_expr(i.indexprs, i.indrelid) ~ ('\\m' || a.attname || '\\M')"
        "      OR pg_get_expr(i.indpred, i.indrelid) ~ ('\\m' || a.attname || '\\M'))"
        " WHERE i.indrelid = %s::regclass", (table,)).fetchall()
    found: dict[str, set[str]] = {}
    for name, column in rows:
        found.setdefault(name, set()).add(column)
    return found


def test_no_index_covers_a_column_task_updates_change(database_url):
    with psycopg.connect(database_url) as conn:
        for table, changed in TASK_UPDATE_COLUMNS.items():
            indexes = indexed_columns(conn, table)
            assert indexes, table
            for name, columns in indexes.items():
                assert not columns & changed, f"{name} covers {columns & changed}"


def test_the_job_list_indexes_exist(database_url):
    with psycopg.connect(database_url) as conn:
        indexes = indexed_columns(conn, "app.jobs")
    assert indexes["app.jobs_created_idx"] == {"created_at", "job_id"}
    assert indexes["app.jobs_status_created_idx"] == {"status", "created_at", "job_id"}
    assert indexes["app.jobs_type_created_idx"] == {"job_type", "created_at", "job_id"}
    assert indexes["app.jobs_status_type_idx"] == {"status", "job_type"}
