"""Numbered schema migrations (NNNN_name.sql), applied in order, each once, under an
advisory lock so instances starting together do not race."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import psycopg

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent
# Any constant will do, as long as nothing else takes the same session-level lock.
_MIGRATION_LOCK_KEY = 7_340_021_001


def available_migrations() -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql")):
        found.append((int(path.name[:4]), path.stem, path))
    return found


def _pending(conn: psycopg.Connection) -> bool:
    exists = conn.execute("SELECT to_regclass('app.schema_migrations')").fetchone()[0]
    if exists is None:
        return True
    done = {row[0] for row in conn.execute("SELECT version FROM app.schema_migrations")}
    return any(version not in done for version, _, _ in available_migrations())


def apply_migrations(conninfo: str, **connect_kwargs: Any) -> list[str]:
    """Bring the schema up to date; returns the names of the migrations applied now."""
    applied_now = []
    with psycopg.connect(conninfo, autocommit=True, **connect_kwargs) as conn:
        if not _pending(conn):
            return applied_now  # the usual case: no lock taken
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_KEY,))
        try:
            conn.execute("CREATE SCHEMA IF NOT EXISTS app")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS app.schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM app.schema_migrations")}
            for version, name, path in available_migrations():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute(
                        "INSERT INTO app.schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                logger.info("applied migration %s", name)
                applied_now.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,))
    return applied_now
