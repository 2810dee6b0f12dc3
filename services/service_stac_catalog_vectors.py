"""stac_catalog_vectors' handler: read a PostGIS table's facts, make sure the collection
exists, upsert the table's item and say whether it was new."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from exceptions import PermanentError
from infrastructure.postgis_catalog import PostgisCatalog, TableFacts
from infrastructure.stac_repository import StacRepository
from services.stac_vector_item import keep_creation, vector_item

COLLECTION_DESCRIPTIONS = {
    "system-vectors": "Vector tables in the platform's PostGIS database",
}


def stac_catalog_vectors(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    return catalogue_table(params["schema"], params["table_name"], params["collection_id"],
                           (context or {}).get("job_id", ""),
                           source_file=params.get("source_file"),
                           source_datetime=params.get("source_datetime"))


def catalogue_table(schema: str, table: str, collection_id: str, job_id: str,
                    source_file: Optional[str] = None,
                    source_datetime: Optional[str] = None,
                    facts: Optional[TableFacts] = None) -> dict[str, Any]:
    """Upsert the STAC item of a PostGIS table (its collection created when missing);
    facts, when the caller knows them exactly, spare reading the table for them."""
    # A missing table, no geometry column or no SRID: PostgisTableError, a ValueError
    # (permanent: a retry cannot help).
    facts = facts or PostgisCatalog().describe(schema, table)
    if facts.bbox is None:
        raise PermanentError(
            f"table {schema}.{table} has no geometries ({facts.row_count} rows): its "
            "extent is unknown and a STAC item needs one; load rows, then catalogue it")
    stac = StacRepository()
    stac.ensure_collection(collection_id, COLLECTION_DESCRIPTIONS.get(
        collection_id, f"STAC items of collection {collection_id}"))
    item = vector_item(facts, collection_id, job_id, datetime.now(timezone.utc),
                       source_file=source_file, source_datetime=source_datetime)
    write = stac.upsert_item(item, merge=keep_creation)
    outcome = write.outcome
    if write.previous is not None and \
            (write.previous.get("properties") or {}).get("geojobs:created_by_job") == job_id:
        outcome = "inserted"  # this job's own earlier run (a redelivery) inserted it
    return {"item_id": item["id"], "collection_id": collection_id,
            "collection": collection_id, "outcome": outcome,
            "bbox": facts.bbox, "row_count": facts.row_count,
            "geometry_types": facts.geometry_types, "srid": facts.srid,
            "geometry_column": facts.geometry_column,
            "datetime": write.item["properties"]["datetime"],
            "datetime_source": write.item["properties"]["geojobs:datetime_source"]}
