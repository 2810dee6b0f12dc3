"""The embedded PostgreSQL used when no DATABASE_URL is set: pgserver's PostgreSQL 16,
kept in a git-ignored folder (EMBEDDED_PG_DIR). pgserver is a development dependency, so it
is imported only here, only when needed."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from exceptions import ConfigurationError

logger = logging.getLogger(__name__)


def embedded_database_url(pgdata_dir: str) -> str:
    """Start (or join) the embedded server in pgdata_dir and return its connection URI."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): harmless.
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError:
        raise ConfigurationError(
            "DATABASE_URL is not set and the embedded PostgreSQL (pgserver) is not installed. "
            "Set DATABASE_URL to a PostgreSQL server, or install requirements-dev.txt."
        ) from None
    # pgserver logs every pg_ctl command at INFO; its warnings and errors still show.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    path = os.path.abspath(pgdata_dir)
    os.makedirs(path, exist_ok=True)
    _forget_dead_handles(path)
    # cleanup_mode="stop": the server stops when the last process using it exits.
    server = pgserver.get_server(path, cleanup_mode="stop")
    logger.info("embedded PostgreSQL at %s", path)
    return server.get_uri()


def _forget_dead_handles(path: str) -> None:
    """pgserver lists the processes using a server in .handle_pids.json and stops the server
    when the last of them exits. A process killed before it could exit (SIGKILL, a crash)
    stays listed, and the server would then never stop: drop such processes first, under
    pgserver's own lock. Best effort: a failure here must not keep the server from starting."""
    try:
        from pgserver.postgres_server import PostgresServer
        from pgserver.utils import DiskList, process_is_running

        with PostgresServer._lock:
            handles = DiskList(Path(path) / ".handle_pids.json")
            listed = handles.get()
            alive = [pid for pid in listed if process_is_running(pid)]
            if alive != listed:
                handles.put(alive)
                logger.info("embedded PostgreSQL: forgot %d process(es) that died using it",
                            len(listed) - len(alive))
    except Exception:  # pgserver changed its internals: keep its own behaviour
        logger.warning("could not check the embedded PostgreSQL's users", exc_info=True)
