"""One psycopg_pool connection pool per process, opened lazily on first use.

Opening it resolves the database (DATABASE_URL, else the embedded PostgreSQL) and applies
pending migrations. Importing this module touches no network.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from config import Settings, get_settings
from exceptions import DatabaseError

from .migrations import apply_migrations

logger = logging.getLogger(__name__)


def resolve_database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    from .embedded_pg import embedded_database_url

    return embedded_database_url(settings.embedded_pg_dir)


class Database:
    """A pool of autocommit connections with dict rows; transaction() for atomic work."""

    def __init__(self, conninfo: str, min_size: int = 1, max_size: int = 10):
        self.conninfo = conninfo
        self.pool = ConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            open=False,
            name="engine",
        )

    def open(self, timeout: float = 30.0) -> "Database":
        self.pool.open(wait=True, timeout=timeout)
        return self

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with self.pool.connection() as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        with self.pool.connection() as conn:
            with conn.transaction():
                yield conn

    def ping(self) -> bool:
        try:
            with self.pool.connection(timeout=5) as conn:
                conn.execute("SELECT 1")
            return True
        except Exception:  # reachability is the answer; the cause goes to the log
            logger.warning("database ping failed", exc_info=True)
            return False


_lock = threading.Lock()
_database: Optional[Database] = None


def get_database() -> Database:
    """The process's Database, created, migrated and opened on first call."""
    global _database
    if _database is not None:
        return _database
    with _lock:
        if _database is None:
            settings = get_settings()
            try:
                conninfo = resolve_database_url(settings)
                apply_migrations(conninfo)
            except psycopg.OperationalError as exc:
                raise DatabaseError(f"cannot reach the database: {exc}") from exc
            _database = Database(
                conninfo, settings.db_pool_min_size, settings.db_pool_max_size
            ).open()
    return _database


def set_database(database: Optional[Database]) -> None:
    """Install a Database for this process (tests), closing the previous one."""
    global _database
    with _lock:
        if _database is not None and _database is not database:
            _database.close()
        _database = database
