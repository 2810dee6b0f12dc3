"""What the geospatial jobs may ask of a PostGIS table before and while they catalogue it:
whether it exists, its geometry column and SRID, and its facts (row count, geometry types,
extent in EPSG:4326). Names go into SQL only through psycopg.sql.Identifier or as values.

    catalog = PostgisCatalog()                  # over the geospatial database's pool
    facts = catalog.describe("geo", "parcels")  # TableFacts; PostgisTableError if unusable
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from psycopg import sql

from .db import Database
from .geo_db import get_geo_database
from .resources import TableCatalog

WGS84 = 4326


class PostgisTableError(ValueError):
    """A table that cannot be catalogued (missing, no geometry column, no SRID): permanent.
    resource names the table."""

    def __init__(self, message: str, resource: str):
        super().__init__(message)
        self.resource = resource


@dataclass(frozen=True)
class GeometryColumn:
    name: str
    srid: int  # 0: not declared on the column
    declared_type: str  # geometry_columns' type: POINT, MULTIPOLYGON, GEOMETRY...


@dataclass(frozen=True)
class TableFacts:
    schema: str
    table: str
    geometry_column: str
    srid: int
    row_count: int
    geometry_types: list[str] = field(default_factory=list)
    # [min_lon, min_lat, max_lon, max_lat] in EPSG:4326; None when no row has a geometry
    bbox: Optional[list[float]] = None
    geometry_columns: list[str] = field(default_factory=list)


def qualified(schema: str, table: str) -> str:
    return f"{schema}.{table}"


class PostgisCatalog(TableCatalog):
    """The geospatial database's tables: TableCatalog's exists and columns, and the
    facts of their geometries."""

    def __init__(self, database: Callable[[], Database] = get_geo_database):
        super().__init__(database)

    def geometry_columns(self, schema: str, table: str) -> list[GeometryColumn]:
        """The table's geometry columns in column order (empty when none or no table)."""
        with self._database().connection() as conn:
            rows = conn.execute(
                "SELECT g.f_geometry_column AS name, g.srid, g.type"
                " FROM public.geometry_columns g"
                " JOIN pg_catalog.pg_namespace n ON n.nspname = g.f_table_schema"
                " JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid"
                "  AND c.relname = g.f_table_name"
                " JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid"
                "  AND a.attname = g.f_geometry_column"
                " WHERE g.f_table_schema = %s AND g.f_table_name = %s ORDER BY a.attnum",
                (schema, table)).fetchall()
        return [GeometryColumn(r["name"], int(r["srid"] or 0), r["type"]) for r in rows]

    def geometry_column(self, schema: str, table: str) -> GeometryColumn:
        """The table's first geometry column; PostgisTableError when the table is missing
        or has none."""
        name = qualified(schema, table)
        columns = self.geometry_columns(schema, table)
        if columns:
            return columns[0]
        if not self.exists(schema, table):
            raise PostgisTableError(f"table {name} does not exist", name)
        raise PostgisTableError(
            f"table {name} has no geometry column: only a table with a PostGIS geometry "
            "column can be catalogued (its columns of type geometry are listed in "
            "geometry_columns)", name)

    def has_geometries(self, schema: str, table: str, column: str) -> bool:
        """Whether any row has a geometry (stops at the first)."""
        with self._database().connection() as conn:
            row = conn.execute(sql.SQL(
                "SELECT EXISTS (SELECT 1 FROM {}.{} WHERE {} IS NOT NULL) AS found").format(
                    sql.Identifier(schema), sql.Identifier(table),
                    sql.Identifier(column))).fetchone()
        return bool(row["found"])

    def describe(self, schema: str, table: str) -> TableFacts:
        """The table's facts for its STAC item, read in one snapshot."""
        name = qualified(schema, table)
        columns = self.geometry_columns(schema, table)
        column = columns[0] if columns else self.geometry_column(schema, table)
        target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        geom = sql.Identifier(column.name)
        with self._database().transaction() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            srid = column.srid or self._data_srid(conn, target, geom, name)
            stats = conn.execute(sql.SQL(
                "SELECT count(*) AS row_count,"
                " coalesce(array_remove(array_agg(DISTINCT GeometryType({g})), NULL), '{{}}')"
                " AS types"
                " FROM {t}").format(g=geom, t=target)).fetchone()
            bbox = None
            if stats["types"]:
                if not srid:
                    raise PostgisTableError(
                        f"table {name}'s geometry column {column.name} has no SRID (0): "
                        "its coordinates cannot be placed on the earth; set one, e.g. "
                        f"SELECT UpdateGeometrySRID('{schema}', '{table}', "
                        f"'{column.name}', 4326)", name)
                bbox = self._extent_wgs84(conn, target, geom, srid)
        return TableFacts(schema, table, column.name, srid, int(stats["row_count"]),
                          sorted(stats["types"]), bbox, [c.name for c in columns])

    def extent_wgs84(self, schema: str, table: str, column: str, srid: int) -> list[float]:
        """The extent of the column's geometries in EPSG:4326 ([x0, y0, x1, y1]; the
        table must have some)."""
        with self._database().connection() as conn:
            return self._extent_wgs84(conn, sql.Identifier(schema, table),
                                      sql.Identifier(column), srid)

    @staticmethod
    def _data_srid(conn: Any, target: sql.Composable, geom: sql.Composable,
                   name: str) -> int:
        """An unconstrained column's SRID, from its rows (0 when none has one)."""
        rows = conn.execute(sql.SQL(
            "SELECT DISTINCT ST_SRID({g}) AS srid FROM {t} WHERE {g} IS NOT NULL"
            " LIMIT 2").format(g=geom, t=target)).fetchall()
        srids = sorted(int(r["srid"]) for r in rows)
        if len(srids) > 1:
            raise PostgisTableError(
                f"table {name} mixes SRIDs ({srids[0]}, {srids[1]}, ...) in one geometry "
                "column: transform them to one SRID first", name)
        return srids[0] if srids else 0

    @staticmethod
    def _extent_wgs84(conn: Any, target: sql.Composable, geom: sql.Composable,
                      srid: int) -> list[float]:
        # Each geometry is transformed, then the extent taken: transforming a projected
        # extent's corners would cut off edges that bulge in longitude and latitude.
        value = geom if srid == WGS84 else sql.SQL("ST_Transform({}, {})").format(
            sql.SQL("ST_SetSRID({}, {})").format(geom, sql.Literal(srid)), sql.Literal(WGS84))
        row = conn.execute(sql.SQL(
            "SELECT ST_XMin(e) AS x0, ST_YMin(e) AS y0, ST_XMax(e) AS x1, ST_YMax(e) AS y1"
            " FROM (SELECT ST_Extent({v}) AS e FROM {t}) s").format(
                v=value, t=target)).fetchone()
        return [float(row[k]) for k in ("x0", "y0", "x1", "y1")]
