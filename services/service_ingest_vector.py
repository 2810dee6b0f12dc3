"""ingest_vector's handlers: prepare (services/vector_prepare.py), load (one chunk into
the staging table, exactly once), publish (the table in place, indexed, catalogued, the
chunks deleted) and the failed job's cleanup (staging table, claim and chunks removed)."""

from __future__ import annotations

import io
import time
from typing import Any, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from config import get_settings
from exceptions import PermanentError
from infrastructure.blob_storage import get_blob_storage
from infrastructure.postgis_catalog import WGS84, PostgisCatalog, TableFacts
from infrastructure.vector_publish import VectorPublisher
from infrastructure.vector_staging import GEOMETRY, VectorStaging
from services.service_stac_catalog_vectors import catalogue_table
from services.vector_chunks import chunk_prefix
from services.vector_load import load_table
from services.vector_prepare import prepare

__all__ = ["prepare", "load_chunk", "publish", "cleanup"]

COLLECTION_ID = "system-vectors"


def load_chunk(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    job_id = context["job_id"]
    started = time.monotonic()
    buffer = io.BytesIO()
    get_blob_storage().download_to(get_settings().silver_temp_container, params["blob"],
                                   buffer)
    downloaded = time.monotonic()
    table = pq.read_table(pa.BufferReader(buffer.getvalue()))
    del buffer
    if table.num_rows != params["rows"]:
        raise PermanentError(f"chunk {params['blob']} holds {table.num_rows} rows, "
                             f"{params['rows']} were written")
    loaded = load_table(job_id, params["chunk"], table, params.get("multi", False))
    finished = time.monotonic()
    return {"chunk": params["chunk"], "rows": table.num_rows, "loaded": loaded,
            "seconds": {"transfer": round(downloaded - started, 3),
                        "load": round(finished - downloaded, 3)}}


def _delete_chunks(job_id: str) -> int:
    blobs = get_blob_storage()
    container = get_settings().silver_temp_container
    if not blobs.container_exists(container):
        return 0
    deleted = 0
    for blob in list(blobs.list_blobs(container, prefix=chunk_prefix(job_id))):
        deleted += bool(blobs.delete_blob(container, blob.name))
    return deleted


def _known_facts(schema: str, table: str, published: dict[str, Any],
                 facts: dict[str, Any]) -> Optional[TableFacts]:
    """The published table's facts for its STAC item from what the job knows, without
    reading the table: a table the job created or replaced holds its loaded rows only
    (counted by the load ledger), of the types and within the bounds prepare found; only
    an extent in another SRID than EPSG:4326 is read (each geometry transformed). An
    appended table holds other rows too: None, it is read whole."""
    if published.get("outcome") not in ("created", "replaced") \
            or facts.get("geometry_types") is None or facts.get("bounds") is None:
        return None
    srid = int(facts["srid"])
    bbox = facts["bounds"] if srid == WGS84 else \
        PostgisCatalog().extent_wgs84(schema, table, GEOMETRY, srid)
    return TableFacts(schema, table, GEOMETRY, srid, int(published["rows_loaded"]),
                      list(facts["geometry_types"]), [float(v) for v in bbox], [GEOMETRY])


def publish(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    job_id = context["job_id"]
    schema, table = params["schema"], params["table_name"]
    run = VectorStaging().run(job_id)
    facts = run.facts if run is not None else {}
    source = f"{params['container_name']}/{params['blob_name']}"
    started = time.monotonic()
    result = VectorPublisher().publish(
        job_id, schema, table, params["if_exists"], params["indexes"]["spatial"],
        facts.get("attribute_indexes", []),
        f"Loaded by ingest_vector job {job_id} from {source}")
    indexed = time.monotonic()
    item = catalogue_table(schema, table, COLLECTION_ID, job_id, source_file=source,
                           source_datetime=facts.get("source_last_modified"),
                           facts=_known_facts(schema, table, result, facts))
    deleted = _delete_chunks(job_id)
    return {**result, "bbox": item["bbox"], "stac_item_id": item["item_id"],
            "collection_id": COLLECTION_ID, "chunks_deleted": deleted,
            "seconds": {"publish": round(indexed - started, 3),
                        "catalogue": round(time.monotonic() - indexed, 3)}}


def cleanup(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """A failed job's leftovers: its staging table, its claim on the table, its chunks.
    What it published (a table, an item) is its output and stays."""
    job_id = context["job_id"]
    dropped = VectorStaging().drop(job_id)
    return {"staging_dropped": dropped, "chunks_deleted": _delete_chunks(job_id)}
