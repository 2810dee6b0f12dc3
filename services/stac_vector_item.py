"""A STAC 1.0 item for a PostGIS table, from the table's facts (pure: no I/O).

The item id is deterministic, `postgis-{schema}-{table}`, so cataloguing the same table
again replaces its item. Extensions: projection (proj:epsg, the table's SRID) and table
(table:row_count, table:primary_geometry); engine fields under `geojobs:`."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

STAC_VERSION = "1.0.0"
PROJECTION = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"
TABLE = "https://stac-extensions.github.io/table/v1.2.0/schema.json"
ASSET_TYPE = "application/vnd.postgresql"


def item_id(schema: str, table: str) -> str:
    return f"postgis-{schema}-{table}"


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def bbox_geometry(bbox: list[float]) -> dict[str, Any]:
    """GeoJSON for a bbox: a Point or a LineString when it has no area (one point, or
    points on one line of longitude or latitude), else its Polygon."""
    x0, y0, x1, y1 = bbox
    if x0 == x1 and y0 == y1:
        return {"type": "Point", "coordinates": [x0, y0]}
    if x0 == x1 or y0 == y1:
        return {"type": "LineString", "coordinates": [[x0, y0], [x1, y1]]}
    return {"type": "Polygon",
            "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def vector_item(facts: Any, collection_id: str, job_id: str, run_time: datetime,
                source_file: Optional[str] = None,
                source_datetime: Optional[str] = None) -> dict[str, Any]:
    """The item for a table described by facts (infrastructure TableFacts: schema, table,
    geometry_column, srid, row_count, geometry_types, bbox in EPSG:4326, not None).
    Its datetime is source_datetime when given, else run_time, and says which."""
    name = f"{facts.schema}.{facts.table}"
    properties: dict[str, Any] = {
        "datetime": source_datetime or iso(run_time),
        "geojobs:datetime_source": "source_datetime" if source_datetime else "catalogued_at",
        "title": name,
        "created": iso(run_time),
        "updated": iso(run_time),
        "proj:epsg": facts.srid,
        "table:row_count": facts.row_count,
        "table:primary_geometry": facts.geometry_column,
        "geojobs:geometry_types": list(facts.geometry_types),
        "geojobs:schema": facts.schema,
        "geojobs:table": facts.table,
        "geojobs:source_file": source_file,
        "geojobs:job_id": job_id,
        "geojobs:created_by_job": job_id,
    }
    return {
        "type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": [PROJECTION, TABLE],
        "id": item_id(facts.schema, facts.table), "collection": collection_id,
        "bbox": list(facts.bbox), "geometry": bbox_geometry(facts.bbox),
        "properties": properties,
        "assets": {"data": {"href": f"postgis:{name}", "type": ASSET_TYPE,
                            "title": f"PostGIS table {name}", "roles": ["data"],
                            "table:primary_geometry": facts.geometry_column}},
        "links": [],
    }


def keep_creation(previous: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """An update keeps when, and by which job, the item was first created."""
    before = previous.get("properties") or {}
    properties = dict(item["properties"])
    for key in ("created", "geojobs:created_by_job"):
        if before.get(key):
            properties[key] = before[key]
    return {**item, "properties": properties}
