"""ingest_vector's publish step: the loaded staging table becomes the target table in one
transaction, so a reader sees the old table (or none) until the commit and the whole new
one after it; never a half-loaded table.

    fail     the target must not exist; the staging table is moved and renamed into place
    replace  the old table is dropped and the staging table moved into place, together
    append   the target must have the same columns, geometry type and SRID; the staged
             rows are inserted into it (new keys from its own identity); with no target,
             the staging table is moved into place as for fail

The primary key, the GiST index on geom and the asked attribute indexes are built on the
staging table before the swap (it is not visible to readers), two at once, then ANALYZE. A publish
delivered again after its commit finds the run published and answers what it did."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from exceptions import PermanentError, TransientError

from .db import Database
from .geo_db import get_geo_database
from .vector_staging import GEOMETRY, INGEST_SCHEMA, KEY, StagingMissingError, \
    staging_ident, staging_name

LOCK_TIMEOUT = "60s"
INDEX_BUILDS = 2  # indexes built at once on the staging table (one server core each)


class PublishError(PermanentError):
    """The staged table cannot be published as asked (it exists, differs from the table
    appended to, or other objects depend on the table to replace)."""


def object_name(table: str, suffix: str) -> str:
    """A name for the table's index or sequence within PostgreSQL's 63 bytes."""
    name = f"{table}_{suffix}"
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{table[:63 - len(suffix) - 10]}_{digest}_{suffix}"


def _columns(conn: psycopg.Connection, schema: str, table: str,
             filled: bool = False) -> dict[str, str]:
    """The table's columns and types, in order; filled=False leaves out the columns that
    fill themselves (identity, serial or another default), which an append need not
    supply."""
    rows = conn.execute(
        "SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,"
        " (a.attidentity <> '' OR a.atthasdef OR a.attgenerated <> '') AS fills"
        " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0"
        " AND NOT a.attisdropped ORDER BY a.attnum", (schema, table)).fetchall()
    return {r["name"]: r["type"] for r in rows if filled or not r["fills"]}


def _exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) AS oid",
                        (sql.Identifier(schema, table).as_string(conn),)
                        ).fetchone()["oid"] is not None


def append_differences(staged: dict[str, str], target: dict[str, str]) -> list[str]:
    """What keeps the staged rows out of the target, in words (empty: they fit)."""
    staged = {k: v for k, v in staged.items() if k != KEY}
    target = {k: v for k, v in target.items() if k != KEY}
    out = []
    missing = [c for c in staged if c not in target]
    extra = [c for c in target if c not in staged]
    if missing:
        out.append(f"columns in the file but not in the table: {', '.join(missing)}")
    if extra:
        out.append(f"columns in the table but not in the file: {', '.join(extra)}")
    for name in staged:
        if name in target and staged[name] != target[name]:
            what = "geometry type and SRID" if name == GEOMETRY else "type"
            out.append(f"column {name}'s {what}: {staged[name]} in the file, "
                       f"{target[name]} in the table")
    return out


class VectorPublisher:
    def __init__(self, database: Callable[[], Database] = get_geo_database):
        self._database = database

    def publish(self, job_id: str, schema: str, table: str, mode: str,
                spatial_index: bool, attributes: list[str], comment: str) -> dict[str, Any]:
        """Publish the job's staged rows into schema.table; returns rows_loaded, outcome
        (created, replaced, appended), indexes and table."""
        with self._database().connection() as conn:
            run = conn.execute("SELECT state, facts FROM geo_ingest.runs WHERE job_id = %s",
                               (job_id,)).fetchone()
        if run is not None and run["state"] == "published":
            return run["facts"]["published"]
        with self._database().connection() as conn:
            if not _exists(conn, INGEST_SCHEMA, staging_name(job_id)):
                raise StagingMissingError(job_id)
            staged = _columns(conn, INGEST_SCHEMA, staging_name(job_id), filled=True)
            existed = _exists(conn, schema, table)
        self._check_attributes(attributes, staged, f"{schema}.{table}")
        indexes = []
        if mode != "append" or not existed:  # an append to no table creates it
            indexes = self._index_staging(job_id, table, spatial_index, attributes)
        with self._database().transaction() as conn:
            conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(
                sql.Literal(LOCK_TIMEOUT)))
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7340))",
                         (f"{schema}.{table}",))
            exists = _exists(conn, schema, table)
            if mode == "append" and exists:
                outcome = "appended"
                rows, indexes = self._append(conn, job_id, schema, table, staged,
                                             spatial_index, attributes)
            else:
                if mode == "append" and existed:
                    raise TransientError(
                        f"table {schema}.{table} was dropped while this job published into "
                        "it; trying again (the staged rows are indexed first)")
                outcome = "replaced" if exists else "created"
                if exists and mode == "fail":
                    raise PublishError(
                        f"table {schema}.{table} exists now (it did not when the job was "
                        "submitted); nothing was changed: submit with if_exists replace "
                        "or append, or another table_name")
                rows = conn.execute(  # the ledger knows: no scan of the table
                    "SELECT coalesce(sum(rows), 0) AS n FROM geo_ingest.loaded_chunks"
                    " WHERE job_id = %s", (job_id,)).fetchone()["n"]
                if exists:
                    self._drop_old(conn, schema, table)
                self._move(conn, job_id, schema, table)
            target = sql.Identifier(schema, table)
            conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
                target, sql.Literal(comment)))
            result = {"table": f"{schema}.{table}", "outcome": outcome,
                      "rows_loaded": int(rows), "indexes": indexes}
            conn.execute(
                "UPDATE geo_ingest.runs SET state = 'published', published_at = now(),"
                " facts = facts || jsonb_build_object('published', %s::jsonb)"
                " WHERE job_id = %s", (Jsonb(result), job_id))
            conn.execute("DELETE FROM geo_ingest.loaded_chunks WHERE job_id = %s", (job_id,))
        if outcome == "appended":  # a moved table keeps the staging table's statistics
            with self._database().connection() as conn:
                conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, table)))
        return result

    @staticmethod
    def _check_attributes(attributes: list[str], staged: dict[str, str], name: str) -> None:
        unknown = [a for a in attributes if a not in staged]
        if unknown:
            columns = [c for c in staged if c not in (KEY, GEOMETRY)]
            raise PublishError(
                f"indexes.attributes names {', '.join(unknown)}, not columns of the table "
                f"{name} (its columns: {', '.join(columns) or 'none'}); nothing was "
                "published")

    def _index_staging(self, job_id: str, table: str, spatial: bool,
                       attributes: list[str]) -> list[str]:
        """The primary key and indexes under their final names (each step idempotent).
        The indexes are built side by side, INDEX_BUILDS at once on connections of their
        own (CREATE INDEX takes a SHARE lock, which does not block another); the primary
        key then adopts its unique index (ADD CONSTRAINT ... USING INDEX, no second
        build)."""
        staging = staging_ident(job_id)
        pkey = object_name(table, "pkey")
        statements = [(pkey, sql.SQL("({})").format(sql.Identifier(KEY)), True)]
        if spatial:
            statements.append((object_name(table, "geom_gist"), sql.SQL(
                "USING gist ({})").format(sql.Identifier(GEOMETRY)), False))
        for column in attributes:
            statements.append((object_name(table, f"{column}_idx"), sql.SQL("({})")
                               .format(sql.Identifier(column)), False))
        with self._database().connection() as conn:
            has_key = conn.execute(
                "SELECT 1 FROM pg_constraint WHERE conrelid = %s::regclass"
                " AND contype = 'p'", (staging.as_string(conn),)).fetchone()
            conn.rollback()

        def build(name: str, how: sql.Composable, unique: bool) -> None:
            if unique and has_key:
                return
            with self._database().connection() as conn:
                conn.autocommit = True
                conn.execute(sql.SQL("CREATE {}INDEX IF NOT EXISTS {} ON {} {}").format(
                    sql.SQL("UNIQUE " if unique else ""), sql.Identifier(name), staging,
                    how))

        with ThreadPoolExecutor(max_workers=INDEX_BUILDS) as pool:
            for future in [pool.submit(build, *statement) for statement in statements]:
                future.result()
        with self._database().connection() as conn:
            conn.autocommit = True
            if not has_key:
                conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY USING "
                                     "INDEX {}").format(staging, sql.Identifier(pkey),
                                                        sql.Identifier(pkey)))
            conn.execute(sql.SQL(
                "SELECT setval(pg_get_serial_sequence({}, {}), coalesce(max({}), 0) + 1,"
                " false) FROM {}").format(sql.Literal(staging.as_string(conn)),
                                          sql.Literal(KEY), sql.Identifier(KEY), staging))
            conn.execute(sql.SQL("ANALYZE {}").format(staging))
        return [name for name, _, _ in statements]

    @staticmethod
    def _drop_old(conn: psycopg.Connection, schema: str, table: str) -> None:
        try:
            with conn.transaction():
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, table)))
        except psycopg.errors.DependentObjectsStillExist as exc:
            raise PublishError(
                f"table {schema}.{table} cannot be replaced: other objects depend on it "
                f"({(exc.diag.message_detail or str(exc)).strip()}); nothing was changed: "
                "drop or change them first, or append") from None

    @staticmethod
    def _move(conn: psycopg.Connection, job_id: str, schema: str, table: str) -> None:
        staging = staging_ident(job_id)
        sequence = conn.execute(sql.SQL("SELECT pg_get_serial_sequence({}, {}) AS seq")
                                .format(sql.Literal(staging.as_string(conn)),
                                        sql.Literal(KEY))).fetchone()["seq"]
        conn.execute(sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
            staging, sql.Identifier(schema)))
        conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
            sql.Identifier(schema, staging_name(job_id)), sql.Identifier(table)))
        seq_name = object_name(table, f"{KEY}_seq")
        if sequence and not _exists(conn, schema, seq_name):
            seq = sequence.rsplit(".", 1)[-1].strip('"')
            conn.execute(sql.SQL("ALTER SEQUENCE {} RENAME TO {}").format(
                sql.Identifier(schema, seq), sql.Identifier(seq_name)))

    def _append(self, conn: psycopg.Connection, job_id: str, schema: str, table: str,
                staged: dict[str, str], spatial: bool, attributes: list[str]
                ) -> tuple[int, list[str]]:
        target = sql.Identifier(schema, table)
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(target))
        existing = _columns(conn, schema, table)
        every = _columns(conn, schema, table, filled=True)
        # a column that fills itself may be left out, but one the file has must match
        existing.update({c: every[c] for c in staged if c in every and c != KEY})
        differences = append_differences(staged, existing)
        if differences:
            raise PublishError(
                f"cannot append to {schema}.{table}: " + "; ".join(differences)
                + "; nothing was changed")
        names = [sql.Identifier(c) for c in staged if c != KEY]
        cur = conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ORDER BY {}").format(
            target, sql.SQL(", ").join(names), sql.SQL(", ").join(names),
            staging_ident(job_id), sql.Identifier(KEY)))
        rows = cur.rowcount
        made = []
        wanted = ([(object_name(table, "geom_gist"), GEOMETRY, "gist")] if spatial else []) \
            + [(object_name(table, f"{c}_idx"), c, "btree") for c in attributes]
        for name, column, method in wanted:
            if not self._indexed(conn, schema, table, column, method):
                conn.execute(sql.SQL("CREATE INDEX {} ON {} USING {} ({})").format(
                    sql.Identifier(name), target, sql.SQL(method), sql.Identifier(column)))
                made.append(name)
        conn.execute(sql.SQL("DROP TABLE {}").format(staging_ident(job_id)))
        return rows, made

    @staticmethod
    def _indexed(conn: psycopg.Connection, schema: str, table: str, column: str,
                 method: str) -> Optional[bool]:
        return conn.execute(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]"
            " WHERE n.nspname = %s AND c.relname = %s AND a.attname = %s AND am.amname = %s",
            (schema, table, column, method)).fetchone() is not None
