"""One psycopg_pool connection pool per process, opened lazily on first use.

Opening it resolves the database (DATABASE_URL, else the embedded PostgreSQL) and applies
pending migrations. Importing this module touches no network.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from config import Settings, get_settings
from exceptions import DatabaseError

from .migrations import apply_migrations

logger = logging.getLogger(__name__)


def resolve_database_url(settings: Settings) -> str:
    if settings.database_url:
        if settings.database_auth == "entra":
            # Entra tokens are accepted only over TLS.
            return make_conninfo(settings.database_url, sslmode="require")
        return settings.database_url
    from .embedded_pg import embedded_database_url

    return embedded_database_url(settings.embedded_pg_dir)


def password_provider(settings: Settings) -> Optional[Callable[[], str]]:
    if settings.database_auth != "entra":
        return None
    from .pg_auth import EntraTokenProvider

    return EntraTokenProvider()


class Database:
    """A pool of autocommit connections with dict rows; transaction() for atomic work.
    password: a callable asked for the password of each new connection (Entra tokens)."""

    def __init__(
        self, conninfo: str, min_size: int = 1, max_size: int = 10,
        password: Optional[Callable[[], str]] = None, stats_file: Optional[str] = None,
        name: str = "engine",
    ):
        self.conninfo = conninfo
        self.password = password
        self.stats_file = stats_file
        extra: dict[str, Any] = {}
        if stats_file:  # diagnostics (SQL_STATS_FILE): count statements and transactions
            from . import sql_stats

            extra["connection_class"] = sql_stats.enable(stats_file)
        self.pool = ConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs=lambda: {"autocommit": True, "row_factory": dict_row,
                            **self.connect_kwargs()},
            open=False,
            name=name,
            **extra,
        )

    def connect_kwargs(self) -> dict[str, Any]:
        """What a connection outside the pool needs besides the conninfo."""
        return {"password": self.password()} if self.password else {}

    def open(self, timeout: float = 30.0) -> "Database":
        self.pool.open(wait=True, timeout=timeout)
        return self

    def close(self) -> None:
        self.pool.close()
        if self.stats_file:
            from . import sql_stats

            sql_stats.write()

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
            database = Database(
                resolve_database_url(settings), settings.db_pool_min_size,
                settings.db_pool_max_size, password=password_provider(settings),
                stats_file=settings.sql_stats_file,
            )
            try:
                migrations_url = settings.migrations_database_url or database.conninfo
                apply_migrations(migrations_url, **database.connect_kwargs())
                _database = database.open()
            except (psycopg.OperationalError, PoolTimeout) as exc:
                database.close()
                raise DatabaseError(f"cannot reach the database: {exc}") from exc
    return _database


def set_database(database: Optional[Database]) -> None:
    """Install a Database for this process (tests), closing the previous one."""
    global _database
    with _lock:
        if _database is not None and _database is not database:
            _database.close()
        _database = database
