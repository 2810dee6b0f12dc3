"""ingest_vector's side of the geospatial database, before publishing: the run's claim on
its target table, the staging table and the exactly-once COPY of each chunk.

Schema geo_ingest (created by the geospatial migrations):
    runs           one row per ingest job: its target, staging table and state; at most
                   one run per target table is 'loading' (a unique partial index), so a
                   second job aimed at the same table fails naming the first
    loaded_chunks  (job_id, chunk): written in the transaction that COPYs the chunk, so a
                   chunk delivered twice, or retried after a crash halfway, loads once
    s_<job id>     each job's staging table, renamed into place when it is published

Names go into SQL only through psycopg.sql.Identifier or as values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from psycopg import sql

from exceptions import PermanentError, TransientError

from .db import Database
from .geo_db import get_geo_database

INGEST_SCHEMA = "geo_ingest"
INGEST_READY_CHECK = "SELECT to_regclass('geo_ingest.loaded_chunks')"
INGEST_DDL = (
    "CREATE SCHEMA IF NOT EXISTS geo_ingest",
    "CREATE TABLE IF NOT EXISTS geo_ingest.runs ("
    " job_id text PRIMARY KEY, target_schema text NOT NULL, target_table text NOT NULL,"
    " staging text NOT NULL, state text NOT NULL DEFAULT 'loading'"
    "  CHECK (state IN ('loading', 'published')),"
    " facts jsonb NOT NULL DEFAULT '{}', claimed_at timestamptz NOT NULL DEFAULT now(),"
    " published_at timestamptz)",
    "CREATE UNIQUE INDEX IF NOT EXISTS runs_one_loading_per_table"
    " ON geo_ingest.runs (target_schema, target_table) WHERE state = 'loading'",
    "CREATE TABLE IF NOT EXISTS geo_ingest.loaded_chunks ("
    " job_id text NOT NULL, chunk integer NOT NULL, rows bigint NOT NULL,"
    " loaded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job_id, chunk))",
)
KEY = "id"
GEOMETRY = "geom"


class TableClaimedError(PermanentError):
    """Another ingest job is loading the same table (permanent for this job)."""

    def __init__(self, target: str, holder: str, since: Any):
        super().__init__(
            f"table {target} is being loaded by ingest_vector job {holder} (since "
            f"{since:%Y-%m-%d %H:%M:%S} UTC): one job at a time writes a table; submit "
            "again when that job has ended")
        self.holder = holder


def staging_name(job_id: str) -> str:
    return f"s_{job_id[:40]}"


def staging_ident(job_id: str) -> sql.Composable:
    return sql.Identifier(INGEST_SCHEMA, staging_name(job_id))


@dataclass(frozen=True)
class Run:
    job_id: str
    schema: str
    table: str
    staging: str
    state: str
    facts: dict[str, Any]

    @property
    def target(self) -> str:
        return f"{self.schema}.{self.table}"


def _run(row: Optional[dict[str, Any]]) -> Optional[Run]:
    if row is None:
        return None
    return Run(row["job_id"], row["target_schema"], row["target_table"], row["staging"],
               row["state"], row["facts"] or {})


class VectorStaging:
    def __init__(self, database: Callable[[], Database] = get_geo_database):
        self._database = database

    def claim(self, job_id: str, schema: str, table: str) -> None:
        """This job's run, loading its target table; TableClaimedError when another job's
        run is loading it. A run of this job found again (a retry, a new attempt) starts
        over: its staging table and loaded chunks are dropped."""
        target = f"{schema}.{table}"
        with self._database().transaction() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staging_ident(job_id)))
            conn.execute("DELETE FROM geo_ingest.loaded_chunks WHERE job_id = %s", (job_id,))
            conn.execute("DELETE FROM geo_ingest.runs WHERE job_id = %s", (job_id,))
            row = conn.execute(
                "INSERT INTO geo_ingest.runs (job_id, target_schema, target_table, staging)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING job_id",
                (job_id, schema, table, staging_name(job_id))).fetchone()
            if row is None:
                holder = conn.execute(
                    "SELECT job_id, claimed_at FROM geo_ingest.runs WHERE target_schema = %s"
                    " AND target_table = %s AND state = 'loading'",
                    (schema, table)).fetchone()
                if holder is None:
                    raise TransientError(f"the claim on table {target} changed hands; "
                                         "trying again")
                if holder["job_id"] == job_id:  # a second delivery of this task, at once
                    raise TransientError(f"another delivery of this job's prepare is "
                                         f"loading {target}; trying again after it")
                raise TableClaimedError(target, holder["job_id"], holder["claimed_at"])

    def run(self, job_id: str) -> Optional[Run]:
        with self._database().connection() as conn:
            return _run(conn.execute("SELECT * FROM geo_ingest.runs WHERE job_id = %s",
                                     (job_id,)).fetchone())

    def create_staging(self, job_id: str, columns: list[tuple[str, str]],
                       geometry_type: str, srid: int, facts: dict[str, Any]) -> None:
        """The job's staging table (id, the columns as (name, PostgreSQL type), geom),
        created anew, and what prepare found stored with the run."""
        with self._database().transaction() as conn:
            _create(conn, job_id, columns, geometry_type, srid, facts)

    def stream_chunk(self, job_id: str, chunk: int, columns: list[tuple[str, str]],
                     geometry_type: str, srid: int, facts: dict[str, Any], fmt: str,
                     blocks: Iterable[Any],
                     final: Callable[[], tuple[int, dict[str, Any]]]) -> None:
        """The staging table created anew and one chunk COPYed into it as its blocks (of
        format fmt: id, the columns, geom) come (an iterator that may wait for them),
        then final()'s rows written to the ledger and its facts added to the run's: all
        in one transaction, so a crash or an exception from blocks at any point leaves no
        table, rows or ledger row. The
        run's row is locked from the start: a second delivery's claim waits for this one
        to end, then starts over."""
        from psycopg.types.json import Jsonb

        with self._database().transaction() as conn:
            _create(conn, job_id, columns, geometry_type, srid, facts)
            statement = _copy_statement(job_id, [name for name, _ in columns], fmt)
            with conn.cursor().copy(statement) as copy:
                for block in blocks:
                    copy.write(block)
            rows, more = final()
            conn.execute("UPDATE geo_ingest.runs SET facts = facts || %s WHERE job_id = %s",
                         (Jsonb(more), job_id))
            conn.execute("INSERT INTO geo_ingest.loaded_chunks (job_id, chunk, rows)"
                         " VALUES (%s, %s, %s)", (job_id, chunk, rows))

    def copy_chunk(self, job_id: str, chunk: int, rows: int,
                   encode: Callable[[dict[str, str]], tuple[list[str], str, Iterable[Any]]]
                   ) -> bool:
        """COPY one chunk into the staging table with its ledger row, in one transaction;
        False (nothing written) when the chunk was loaded already. encode takes the
        staging table's column types ({name: type}) and gives the chunk's attribute
        columns, its format (csv: id, the columns, geom as hex WKB; or binary) and its
        blocks. A duplicate running at the same time waits on the ledger row and then
        finds it."""
        with self._database().transaction() as conn:
            if conn.execute(sql.SQL("SELECT to_regclass({})").format(
                    sql.Literal(f"{INGEST_SCHEMA}.{staging_name(job_id)}"))
                    ).fetchone()["to_regclass"] is None:
                raise StagingMissingError(job_id)
            row = conn.execute(
                "INSERT INTO geo_ingest.loaded_chunks (job_id, chunk, rows)"
                " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING chunk",
                (job_id, chunk, rows)).fetchone()
            if row is None:
                return False
            columns, fmt, blocks = encode(_column_types(conn, job_id))
            with conn.cursor().copy(_copy_statement(job_id, columns, fmt)) as copy:
                for block in blocks:
                    copy.write(block)
        return True

    def drop(self, job_id: str) -> bool:
        """Remove a failed run: its staging table, loaded chunks and claim (a published
        run's row is kept: its table is the job's output). True if there was a run."""
        with self._database().transaction() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staging_ident(job_id)))
            conn.execute("DELETE FROM geo_ingest.loaded_chunks WHERE job_id = %s", (job_id,))
            gone = conn.execute("DELETE FROM geo_ingest.runs WHERE job_id = %s AND"
                                " state = 'loading' RETURNING job_id", (job_id,)).fetchone()
        return gone is not None


def _copy_statement(job_id: str, columns: list[str], fmt: str) -> sql.Composable:
    if fmt not in ("csv", "binary"):
        raise ValueError(f"COPY format {fmt!r}: csv or binary")
    names = [KEY, *columns, GEOMETRY]
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
        staging_ident(job_id), sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(fmt))


def _column_types(conn: Any, job_id: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type"
        " FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0"
        " AND NOT a.attisdropped ORDER BY a.attnum",
        (staging_ident(job_id).as_string(conn),)).fetchall()
    return {r["name"]: r["type"] for r in rows}


def _create(conn: Any, job_id: str, columns: list[tuple[str, str]], geometry_type: str,
            srid: int, facts: dict[str, Any]) -> None:
    from psycopg.types.json import Jsonb

    fields = [sql.SQL("{} bigint GENERATED BY DEFAULT AS IDENTITY").format(
        sql.Identifier(KEY))]
    fields += [sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(pg_type))
               for name, pg_type in columns]
    fields.append(sql.SQL("{} geometry({}, {})").format(
        sql.Identifier(GEOMETRY), sql.SQL(geometry_type), sql.Literal(int(srid))))
    conn.execute("UPDATE geo_ingest.runs SET facts = %s WHERE job_id = %s",
                 (Jsonb(facts), job_id))
    # a table made anew holds no chunk: the ledger says so too (a duplicate prepare that
    # committed meanwhile loses its rows and its ledger rows together)
    conn.execute("DELETE FROM geo_ingest.loaded_chunks WHERE job_id = %s", (job_id,))
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staging_ident(job_id)))
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(
        staging_ident(job_id), sql.SQL(", ").join(fields)))


class StagingMissingError(PermanentError):
    """A chunk arrived for a job whose staging table is gone (its run was cleaned up)."""

    def __init__(self, job_id: str):
        super().__init__(f"the staging table of job {job_id} does not exist (the run was "
                         "cleaned up or never prepared)")
