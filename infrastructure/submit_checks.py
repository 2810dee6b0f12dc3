"""The named requirements a job may declare as submit checks (jobs/base.py SubmitCheck),
run by core at submit through these functions, before anything is stored. A check takes
the Resources and its arguments; it returns None, or a value that joins the job's identity;
it raises RequirementError (a 400) when the requirement is not met. A resource that cannot
be reached raises DatabaseError or ResourceUnavailableError (a 503)."""

from __future__ import annotations

from typing import Any, Callable

import psycopg
from psycopg_pool import PoolTimeout

from exceptions import DatabaseError, RequirementError

from .resources import Resources


def _exists(resources: Resources, schema: str, table: str) -> bool:
    try:
        return resources.tables.exists(schema, table)
    except (psycopg.OperationalError, PoolTimeout) as exc:
        raise DatabaseError(f"cannot reach the database: {exc}") from exc


def table_exists(resources: Resources, schema: str, table: str) -> None:
    if not _exists(resources, schema, table):
        raise RequirementError(f"table {schema}.{table} does not exist",
                               resource=f"{schema}.{table}")


def table_absent(resources: Resources, schema: str, table: str) -> None:
    if _exists(resources, schema, table):
        raise RequirementError(f"table {schema}.{table} already exists",
                               resource=f"{schema}.{table}")


def _geo_reached(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except (psycopg.OperationalError, PoolTimeout) as exc:
        raise DatabaseError(f"cannot reach the geospatial database: {exc}") from exc


def geo_table_exists(resources: Resources, schema: str, table: str) -> None:
    """The table exists in the geospatial database (not the engine's)."""
    if not _geo_reached(lambda: resources.postgis.exists(schema, table)):
        raise RequirementError(f"table {schema}.{table} does not exist in the geospatial "
                               "database", resource=f"{schema}.{table}")


def geo_table_absent(resources: Resources, schema: str, table: str) -> None:
    """No such table in the geospatial database yet."""
    if _geo_reached(lambda: resources.postgis.exists(schema, table)):
        raise RequirementError(
            f"table {schema}.{table} already exists in the geospatial database; choose "
            "another table_name, or if_exists replace or append", resource=f"{schema}.{table}")


def geo_vector_table(resources: Resources, schema: str, table: str) -> None:
    """The table exists in the geospatial database, has a PostGIS geometry column and a
    row with a geometry (an empty table has no extent to catalogue)."""
    from .postgis_catalog import PostgisTableError

    try:
        column = _geo_reached(lambda: resources.postgis.geometry_column(schema, table))
    except PostgisTableError as exc:
        raise RequirementError(str(exc), resource=exc.resource) from None
    if not _geo_reached(lambda: resources.postgis.has_geometries(schema, table, column.name)):
        raise RequirementError(
            f"table {schema}.{table} has no rows with a geometry in column {column.name}: "
            "its extent is unknown; load rows first", resource=f"{schema}.{table}")


def container_exists(resources: Resources, container: str) -> None:
    # StorageUnavailableError (transient) propagates: core answers 503.
    if not resources.blobs.container_exists(container):
        raise RequirementError(f"container {container} does not exist", resource=container)


def blob_etag(resources: Resources, container: str, blob: str) -> str:
    """The blob's etag (its identity: a corrected file is a new job, the same file the
    same job); a missing blob or container is a RequirementError."""
    from .blob_storage import BlobNotFoundError

    try:
        return resources.blobs.get_properties(container, blob).etag
    except BlobNotFoundError as exc:
        raise RequirementError(str(exc), resource=exc.resource) from None


# name -> (function, the argument names it takes)
SUBMIT_CHECKS: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
    "table_exists": (table_exists, ("schema", "table")),
    "table_absent": (table_absent, ("schema", "table")),
    "geo_table_exists": (geo_table_exists, ("schema", "table")),
    "geo_table_absent": (geo_table_absent, ("schema", "table")),
    "geo_vector_table": (geo_vector_table, ("schema", "table")),
    "container_exists": (container_exists, ("container",)),
    "blob_etag": (blob_etag, ("container", "blob")),
}
