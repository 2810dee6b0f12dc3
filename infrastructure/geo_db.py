"""The geospatial database: vector tables in the allowed schemas (GEO_ALLOWED_SCHEMAS,
"geo") and the STAC catalogue in schema pgstac.

Where: GEO_DATABASE_URL when set, else DATABASE_URL's database (its server must have
PostGIS), else the local PostGIS server (infrastructure/local_postgis.py) running in
LOCAL_POSTGIS_DIR. On first use in a process the database is prepared (extensions,
schemas, pgstac's migrations: geo_migrations.py, under an advisory lock) when
GEO_AUTO_MIGRATE is true, or only checked when false; then a connection pool like the
engine's opens, its sessions with search_path pgstac, public (pgstac.search needs it).

    status = geo_available()       # GeoStatus: available, and when not, reason and hint
    with get_geo_database().connection() as conn: ...

Importing this module touches no network.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg_pool import PoolTimeout

from config import Settings, get_settings
from exceptions import GeoUnavailableError

from .db import Database, password_provider
from .geo_migrations import GeoSetup, apply_geo_migrations

logger = logging.getLogger(__name__)

LOCAL_SOURCE = "local PostGIS server"
SEARCH_PATH_OPTION = "-c search_path=pgstac,public"


@dataclass(frozen=True)
class GeoStatus:
    """Whether the geospatial jobs can run here. database: where it is (the setting that
    names it, or the local server); when unavailable, reason and hint."""

    available: bool
    database: str
    reason: Optional[str] = None
    hint: Optional[str] = None
    postgis_version: Optional[str] = None
    pgstac_version: Optional[str] = None
    schemas: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["schemas"] = list(self.schemas)
        return {key: value for key, value in data.items()
                if value is not None or key in ("available", "database")}


@dataclass(frozen=True)
class GeoTarget:
    source: str
    conninfo: str
    migrations_conninfo: str
    password: Optional[Callable[[], str]]

    def connect_kwargs(self) -> dict[str, Any]:
        return {"password": self.password()} if self.password else {}


def geo_source(settings: Settings) -> str:
    if settings.geo_database_url:
        return "GEO_DATABASE_URL"
    if settings.database_url:
        return "DATABASE_URL"
    return f"{LOCAL_SOURCE} ({settings.local_postgis_dir})"


def _with_auth(url: str, settings: Settings) -> str:
    # Entra tokens are accepted only over TLS (as for the engine's database).
    return make_conninfo(url, sslmode="require") if settings.database_auth == "entra" else url


def resolve_geo_database(settings: Settings) -> GeoTarget:
    """Where the geospatial database is; GeoUnavailableError when there is none."""
    source = geo_source(settings)
    if settings.geo_database_url:
        url = settings.geo_database_url
        admin = settings.geo_migrations_database_url or url
        return GeoTarget(source, _with_auth(url, settings), _with_auth(admin, settings),
                         password_provider(settings))
    if settings.database_url:
        url = settings.database_url
        admin = settings.migrations_database_url or url
        return GeoTarget(source, _with_auth(url, settings), _with_auth(admin, settings),
                         password_provider(settings))
    from .local_postgis import LocalPostgisError, find_binaries, local_url, running_port

    try:
        find_binaries(settings.local_postgis_bin_dir)
    except LocalPostgisError as exc:
        raise GeoUnavailableError(exc.reason, exc.hint) from None
    port = running_port(settings.local_postgis_dir)
    if port is None:
        raise GeoUnavailableError(
            f"the local PostGIS server is not running in {settings.local_postgis_dir} "
            "(LOCAL_POSTGIS_DIR)",
            "make serve and make demo start it; make postgis runs it alone (beside func "
            "start); or set GEO_DATABASE_URL")
    url = local_url(port)
    return GeoTarget(source, url, url, None)


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.database: Optional[Database] = None
        self.status: Optional[GeoStatus] = None


_state = _State()


def _prepare(settings: Settings) -> tuple[Database, GeoStatus]:
    target = resolve_geo_database(settings)
    schemas = settings.geo_schemas
    try:
        setup: GeoSetup = apply_geo_migrations(
            target.migrations_conninfo, schemas, migrate=settings.geo_auto_migrate,
            connect_timeout=10, **target.connect_kwargs())
    except psycopg.OperationalError as exc:
        raise GeoUnavailableError(
            f"cannot reach the geospatial database ({target.source}): {str(exc).strip()}",
            f"check {target.source}" if target.source.isupper() else
            "start it again (make serve), or set GEO_DATABASE_URL") from exc
    database = Database(make_conninfo(target.conninfo, options=SEARCH_PATH_OPTION),
                        min_size=0, max_size=settings.db_pool_max_size,
                        password=target.password, name="geo")
    try:
        database.open()
    except (psycopg.OperationalError, PoolTimeout) as exc:
        database.close()
        raise GeoUnavailableError(
            f"cannot reach the geospatial database ({target.source}): {exc}",
            f"check {target.source}") from exc
    status = GeoStatus(True, target.source, postgis_version=setup.postgis_version,
                       pgstac_version=setup.pgstac_version, schemas=tuple(schemas))
    return database, status


def get_geo_database() -> Database:
    """The process's geospatial Database, prepared and opened on first call (not cached
    while unavailable: each call looks again). Raises GeoUnavailableError."""
    if _state.database is not None:
        return _state.database
    with _state.lock:
        if _state.database is None:
            _state.database, _state.status = _prepare(get_settings())
            logger.info("geospatial database: %s", _state.status.as_dict())
    return _state.database


def geo_available() -> GeoStatus:
    """Whether PostGIS and the pgstac catalogue can be used, and when not, why and what to
    install or set. The first call prepares the database (see the module's docstring)."""
    try:
        get_geo_database()
    except GeoUnavailableError as exc:
        return GeoStatus(False, geo_source(get_settings()), exc.reason, exc.hint)
    assert _state.status is not None
    return _state.status


def reset_geo_database() -> None:
    """Close and forget the process's geospatial database (tests; settings changed)."""
    with _state.lock:
        database, _state.database, _state.status = _state.database, None, None
    if database is not None:
        database.close()
