"""The benchmark's PostgreSQL: a fresh embedded server (pgserver) in its own data directory,
deleted on exit, or, when DATABASE_URL is set, a fresh database on that server, dropped on
exit. Also the commit-rate baseline (pgbench -N) against the same server."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from infrastructure.migrations import apply_migrations  # noqa: E402

from .cpu import postmaster_of  # noqa: E402

# Everything a run leaves behind, in the order rows reference each other.
# The queue's duplicate-detection ids too: a run resubmitting the same job (the same id)
# would otherwise have its first message dropped as a duplicate of the last run's.
STATE_TABLES = ("app.queue_messages", "app.queue_message_ids", "app.outbox",
                "app.dead_letters", "app.job_stages", "app.stage_plans", "app.tasks", "app.jobs")


class BenchServer:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.dbname = f"bench_{os.getpid()}"
        self.scratch = f"bench_pgbench_{os.getpid()}"
        self.admin_url = ""
        self.url = ""
        self.embedded: Any = None
        self.pgdata: Optional[Path] = None
        self.postmaster: Optional[int] = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> "BenchServer":
        external = os.environ.get("DATABASE_URL")
        if external:
            self.admin_url = external
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pgserver
            logging.getLogger("pgserver").setLevel(logging.WARNING)
            self.pgdata = self.workdir / f"pgdata-{os.getpid()}"
            shutil.rmtree(self.pgdata, ignore_errors=True)
            self.pgdata.mkdir(parents=True)
            # "delete": the server stops and its data directory goes when we exit.
            self.embedded = pgserver.get_server(str(self.pgdata), cleanup_mode="delete")
            self.admin_url = self.embedded.get_uri()
        with self.admin() as conn:
            for name in (self.dbname, self.scratch):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{name}"')
        self.url = make_conninfo(self.admin_url, dbname=self.dbname)
        apply_migrations(self.url)
        with self.connect() as conn:
            self.postmaster = postmaster_of(conn)
        return self

    def close(self) -> None:
        if not self.admin_url:
            return
        try:
            with self.admin() as conn:
                for name in (self.dbname, self.scratch):
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error as exc:
            print(f"warning: could not drop the bench databases: {exc}", file=sys.stderr)
        if self.embedded is not None:
            self.embedded.cleanup()  # stops the server, deletes the data directory
            self.embedded = None
        if self.pgdata is not None:
            shutil.rmtree(self.pgdata, ignore_errors=True)
        self.admin_url = ""

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.admin_url, autocommit=True)

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True)

    # -- between runs ---------------------------------------------------------------------
    def truncate(self) -> None:
        with self.connect() as conn:
            conn.execute(f"TRUNCATE {', '.join(STATE_TABLES)} RESTART IDENTITY CASCADE")
            conn.execute("CHECKPOINT")
            conn.execute("SELECT pg_stat_reset()")  # row counts per run (row_ops)

    def row_ops(self) -> dict[str, dict[str, int]]:
        """Rows inserted, updated (HOT or not), deleted per app table since truncate();
        read once the hosts have exited, so their backends have flushed their counts."""
        time.sleep(0.5)
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del"
                " FROM pg_stat_user_tables WHERE schemaname = 'app'").fetchall()
        return {r[0]: {"ins": r[1], "upd": r[2], "hot_upd": r[3], "del": r[4]}
                for r in rows if any(r[1:])}

    def info(self) -> dict[str, Any]:
        with self.connect() as conn:
            row = conn.execute(
                "SELECT version(), current_setting('fsync'),"
                " current_setting('synchronous_commit'), current_setting('shared_buffers'),"
                " current_setting('max_connections'),"
                " EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')"
            ).fetchone()
        where = conninfo_to_dict(self.url)
        return {"version": row[0], "fsync": row[1], "synchronous_commit": row[2],
                "shared_buffers": row[3], "max_connections": int(row[4]),
                "pg_stat_statements": row[5],
                "server": "DATABASE_URL" if self.embedded is None else "embedded (pgserver)",
                "host": where.get("host", "")}

    # -- baseline -------------------------------------------------------------------------
    def pgbench(self, seconds: int = 10, clients: int = 2) -> dict[str, Any]:
        """pgbench -N (single-row update, select, insert per transaction) on a scratch
        database of the same server: the server's commit rate, for the ratios."""
        exe = pgbench_path()
        if exe is None:
            return {"error": "pgbench not found"}
        url = make_conninfo(self.admin_url, dbname=self.scratch)
        env = dict(os.environ, PGAPPNAME="bench-pgbench")
        init = subprocess.run([exe, "-i", "-q", "-s", "1", url], capture_output=True,
                              text=True, timeout=120, env=env)
        if init.returncode:
            return {"error": f"pgbench -i failed: {init.stderr.strip()[-300:]}"}
        cmd = [exe, "-N", "-n", "-c", str(clients), "-j", str(clients), "-T", str(seconds), url]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, env=env)
        match = re.search(r"tps = ([\d.]+)", run.stdout)
        if run.returncode or not match:
            return {"error": f"pgbench failed: {(run.stderr or run.stdout).strip()[-300:]}"}
        latency = re.search(r"latency average = ([\d.]+) ms", run.stdout)
        return {"tps": float(match.group(1)), "clients": clients, "seconds": seconds,
                "latency_ms": float(latency.group(1)) if latency else None,
                "command": f"{exe} -N -n -c {clients} -j {clients} -T {seconds} <scratch db>",
                "binary": exe}


def pgbench_path() -> Optional[str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver._commands as commands
        candidate = Path(commands.POSTGRES_BIN_PATH) / "pgbench"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    return shutil.which("pgbench")
