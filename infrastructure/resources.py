"""The I/O interfaces core hands to a job's submit checks and task builders, so a job file
never imports infrastructure: `resources.tables` (the engine's database), `resources.blobs`,
`resources.postgis` (the geospatial database's tables) and `resources.stac` (the pgstac
catalogue). Each interface is made on first use."""

from __future__ import annotations

from typing import Any, Callable, Optional

from .db import Database, get_database


class TableCatalog:
    """What a job may ask of the database's tables before it runs: whether one exists, and
    its columns. Names are passed as values, never formatted into SQL."""

    def __init__(self, database: Callable[[], Database] = get_database):
        self._database = database

    def exists(self, schema: str, table: str) -> bool:
        with self._database().connection() as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c"
                " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname = %s"
                " AND c.relkind IN ('r', 'p', 'v', 'm', 'f')) AS found",
                (schema, table)).fetchone()
        return bool(row["found"])

    def columns(self, schema: str, table: str) -> list[dict[str, Any]]:
        """The table's columns in order ({"name", "type"}); empty if it does not exist."""
        with self._database().connection() as conn:
            return conn.execute(
                "SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type"
                " FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c"
                "  ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n"
                "  ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0"
                " AND NOT a.attisdropped ORDER BY a.attnum",
                (schema, table)).fetchall()


class Resources:
    def __init__(self, database: Callable[[], Database] = get_database):
        self._database = database
        self._tables: Optional[TableCatalog] = None

    @property
    def blobs(self) -> Any:
        """Blob storage (infrastructure/blob_storage.py), made on first use."""
        from .blob_storage import get_blob_storage

        return get_blob_storage()

    @property
    def postgis(self) -> Any:
        """The geospatial database's tables (infrastructure/postgis_catalog.py)."""
        from .postgis_catalog import PostgisCatalog

        return PostgisCatalog()

    @property
    def stac(self) -> Any:
        """The STAC catalogue (infrastructure/stac_repository.py)."""
        from .stac_repository import StacRepository

        return StacRepository()

    @property
    def tables(self) -> TableCatalog:
        if self._tables is None:
            self._tables = TableCatalog(self._database)
        return self._tables
