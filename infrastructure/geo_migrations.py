"""Preparing the geospatial database: the extensions (postgis; btree_gist and unaccent,
which pgstac needs), the allowed schemas for vector tables, and the STAC catalogue (schema
pgstac), installed and upgraded by pypgstac's own migrations.

All of it under one PostgreSQL advisory lock, so hosts starting together do it once. What
the role may not do (create an extension, a schema, pgstac's roles) raises
GeoUnavailableError saying what an administrator must do: in Azure, allow-list the
extensions (azure.extensions) and run `make migrate GEO=1` with the administrator's URL.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import psycopg
from psycopg import sql

from exceptions import GeoUnavailableError

logger = logging.getLogger(__name__)

EXTENSIONS = ("postgis", "btree_gist", "unaccent")
# Not the engine's migration lock (7_340_021_001): the two may run at once.
_GEO_LOCK_KEY = 7_340_021_002
ADMIN_HINT = ("an administrator runs `make migrate GEO=1` with MIGRATIONS_DATABASE_URL (or "
              "GEO_MIGRATIONS_DATABASE_URL) set to an administrator's URL (docs/deploy.md); "
              "in Azure Database for PostgreSQL, allow-list POSTGIS,BTREE_GIST,UNACCENT in "
              "the server parameter azure.extensions first")


def pgstac_target_version() -> str:
    """The pgstac version this app's pypgstac installs."""
    from pypgstac.version import __version__

    return __version__


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text)[:3])


@dataclass
class GeoSetup:
    """What apply_geo_migrations found and did."""

    postgis_version: Optional[str] = None
    pgstac_version: Optional[str] = None
    applied: list[str] = field(default_factory=list)


def _installed_extensions(conn: psycopg.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT extname, extversion FROM pg_extension").fetchall())


def _pgstac_version(conn: psycopg.Connection) -> Optional[str]:
    if conn.execute("SELECT to_regclass('pgstac.migrations')").fetchone()[0] is None:
        return None
    row = conn.execute("SELECT version FROM pgstac.migrations"
                       " ORDER BY datetime DESC, version DESC LIMIT 1").fetchone()
    return row[0] if row else None


def _missing_schemas(conn: psycopg.Connection, schemas: Sequence[str]) -> list[str]:
    present = {row[0] for row in conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (list(schemas),))}
    return [name for name in schemas if name not in present]


def _where(conn: psycopg.Connection) -> str:
    info = conn.info
    return f"database {info.dbname} on {info.host}:{info.port} (role {info.user})"


def _check_available(conn: psycopg.Connection) -> None:
    available = {row[0] for row in conn.execute(
        "SELECT name FROM pg_available_extensions WHERE name = ANY(%s)", (list(EXTENSIONS),))}
    missing = [name for name in EXTENSIONS if name not in available]
    if missing:
        raise GeoUnavailableError(
            f"the PostgreSQL server of {_where(conn)} has no {', '.join(missing)} extension"
            f"{'s' if len(missing) > 1 else ''} to install",
            "install PostGIS on that server (Debian/Ubuntu: postgresql-15-postgis-3; macOS: "
            "brew install postgis), or set GEO_DATABASE_URL to a server that has it")


def _pending(conn: psycopg.Connection, schemas: Sequence[str], target: str) -> bool:
    installed = _installed_extensions(conn)
    return (any(name not in installed for name in EXTENSIONS)
            or bool(_missing_schemas(conn, schemas)) or _pgstac_version(conn) != target
            or not _ingest_ready(conn))


def _ingest_ready(conn: psycopg.Connection) -> bool:
    from .vector_staging import INGEST_READY_CHECK

    return conn.execute(INGEST_READY_CHECK).fetchone()[0] is not None


def _create_ingest_tables(conn: psycopg.Connection) -> list[str]:
    """ingest_vector's bookkeeping (schema geo_ingest: its runs, loaded chunks and staging
    tables), infrastructure/vector_staging.py."""
    from .vector_staging import INGEST_DDL

    if _ingest_ready(conn):
        return []
    try:
        with conn.transaction():
            for statement in INGEST_DDL:
                conn.execute(statement)
    except psycopg.Error as exc:
        raise GeoUnavailableError(
            f"ingest_vector's schema geo_ingest cannot be created in {_where(conn)}: "
            f"{str(exc).strip()}", ADMIN_HINT) from exc
    return ["created schema geo_ingest (ingest_vector's runs and staging tables)"]


def apply_geo_migrations(conninfo: str, schemas: Sequence[str] = ("geo",),
                         migrate: bool = True, **connect_kwargs: Any) -> GeoSetup:
    """Bring the geospatial database up to date (migrate=True), or only check that it is
    (migrate=False); raises GeoUnavailableError naming what is missing and who can add it.
    Nothing is locked when nothing is pending (the usual case)."""
    target = pgstac_target_version()
    setup = GeoSetup()
    with psycopg.connect(conninfo, autocommit=True, **connect_kwargs) as conn:
        _check_available(conn)
        if _pending(conn, schemas, target):
            if not migrate:
                _raise_pending(conn, schemas, target)
            conn.execute("SELECT pg_advisory_lock(%s)", (_GEO_LOCK_KEY,))
            try:
                setup.applied += _create_extensions(conn)
                setup.applied += _create_schemas(conn, schemas)
                setup.applied += _create_ingest_tables(conn)
                applied = _migrate_pgstac(conn, conninfo, target, connect_kwargs)
                if applied:
                    setup.applied.append(applied)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_GEO_LOCK_KEY,))
        setup.postgis_version = _installed_extensions(conn).get("postgis")
        setup.pgstac_version = _pgstac_version(conn)
    for action in setup.applied:
        logger.info("geospatial database: %s", action)
    return setup


def _raise_pending(conn: psycopg.Connection, schemas: Sequence[str], target: str) -> None:
    installed = _installed_extensions(conn)
    missing = [name for name in EXTENSIONS if name not in installed]
    if missing:
        raise GeoUnavailableError(f"the extension(s) {', '.join(missing)} are not created in "
                                  f"{_where(conn)}", ADMIN_HINT)
    schemas_missing = _missing_schemas(conn, schemas)
    if schemas_missing:
        raise GeoUnavailableError(f"the schema(s) {', '.join(schemas_missing)} do not exist "
                                  f"in {_where(conn)}", ADMIN_HINT)
    if not _ingest_ready(conn):
        raise GeoUnavailableError(f"ingest_vector's schema geo_ingest is not created in "
                                  f"{_where(conn)}", ADMIN_HINT)
    found = _pgstac_version(conn)
    raise GeoUnavailableError(
        f"the STAC catalogue (pgstac) in {_where(conn)} is "
        f"{'not installed' if found is None else f'at version {found}'}; this app needs "
        f"{target}", ADMIN_HINT)


def _create_extensions(conn: psycopg.Connection) -> list[str]:
    done = []
    installed = _installed_extensions(conn)
    for name in EXTENSIONS:
        if name in installed:
            continue
        try:
            # In public: pgstac refers to PostGIS unqualified, with search_path pgstac, public.
            conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA public")
                         .format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise GeoUnavailableError(
                f"the extension {name} is not created in {_where(conn)} and this role may "
                f"not create it: {str(exc).strip()}", ADMIN_HINT) from exc
        done.append(f"created extension {name}")
    return done


def _create_schemas(conn: psycopg.Connection, schemas: Sequence[str]) -> list[str]:
    done = []
    for name in _missing_schemas(conn, schemas):
        try:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise GeoUnavailableError(
                f"the schema {name} does not exist in {_where(conn)} and this role may not "
                f"create it: {str(exc).strip()}", ADMIN_HINT) from exc
        done.append(f"created schema {name}")
    return done


def _migrate_pgstac(conn: psycopg.Connection, conninfo: str, target: str,
                    connect_kwargs: dict[str, Any]) -> Optional[str]:
    """pypgstac's Migrate, on a pool of one connection of our own; returns what it did."""
    found = _pgstac_version(conn)
    if found == target:
        return None
    if found is not None and _version_tuple(found) > _version_tuple(target):
        raise GeoUnavailableError(
            f"the STAC catalogue (pgstac) in {_where(conn)} is at {found}, newer than this "
            f"app's pypgstac ({target})", "deploy the app version that installed it")
    from psycopg_pool import ConnectionPool

    from .pgstac_import import Migrate, PgstacDB

    pool = ConnectionPool(conninfo, min_size=0, max_size=1, kwargs=connect_kwargs,
                          open=False, name="pgstac-migrate")
    pool.open(wait=True, timeout=30)
    try:
        db = PgstacDB(pool=pool)
        try:
            Migrate(db).run_migration(target)
        except psycopg.Error as exc:
            raise GeoUnavailableError(
                f"installing the STAC catalogue (pgstac {target}) in {_where(conn)} failed: "
                f"{str(exc).strip()}", ADMIN_HINT) from exc
        finally:
            db.disconnect()
    finally:
        pool.close()
    return (f"installed pgstac {target}" if found is None
            else f"upgraded pgstac from {found} to {target}")


def grant_app_role(conninfo: str, role: str, schemas: Sequence[str],
                   **connect_kwargs: Any) -> None:
    """The deploy step, as an administrator: the app's role may write the catalogue through
    pgstac's functions (pgstac_ingest), create vector tables in the allowed schemas, and
    read the tables there it did not create (stac_catalog_vectors catalogues them): those
    there now, and those this administrator creates later."""
    with psycopg.connect(conninfo, autocommit=True, **connect_kwargs) as conn:
        with conn.transaction():
            conn.execute(sql.SQL("GRANT pgstac_ingest TO {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA geo_ingest TO {role};"
                                 " GRANT ALL ON ALL TABLES IN SCHEMA geo_ingest TO {role}")
                         .format(role=sql.Identifier(role)))
            for schema in schemas:
                names = {"schema": sql.Identifier(schema), "role": sql.Identifier(role)}
                conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}")
                             .format(**names))
                conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}")
                             .format(**names))
                conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {schema}"
                                     " GRANT SELECT ON TABLES TO {role}").format(**names))
