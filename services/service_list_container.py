"""list_container_contents's handlers: stage 1 lists the matching blobs; stage 2 analyzes
one blob (properties and its real format from its first bytes); the diamond's stage 3
aggregates every stage 2 outcome."""

from __future__ import annotations

from typing import Any

from infrastructure.blob_storage import get_blob_storage
from services.container_inventory import aggregate_inventory
from services.blob_filter import BlobFilter, extension_of
from services.format_sniffing import SNIFF_BYTES, mismatch, sniff


def list_container_blobs(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """The matching blobs' names and sizes, up to file_limit (hit_file_limit: true only
    when a further blob matched)."""
    flt = BlobFilter.from_params(params.get("filter"))
    limit = params["file_limit"]
    blobs, scanned, hit = [], 0, False
    for blob in get_blob_storage().list_blobs(params["container_name"], prefix=flt.prefix):
        scanned += 1
        if not flt.matches(blob.name, blob.size, blob.last_modified):
            continue
        if len(blobs) >= limit:
            hit = True
            break
        blobs.append({"name": blob.name, "size": blob.size})
    return {"blobs": blobs, "blobs_found": len(blobs), "files_scanned": scanned,
            "hit_file_limit": hit}


def analyze_blob(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """One blob's properties and real format. A blob that vanished since the listing
    raises BlobNotFoundError: a permanent failure of this task alone."""
    storage = get_blob_storage()
    container, name = params["container_name"], params["blob_name"]
    info, head = storage.read_head(container, name, SNIFF_BYTES)
    fmt = sniff(head)
    extension = extension_of(name)
    return {"name": name, "size": info.size, "content_type": info.content_type,
            "extension": extension, "last_modified": info.last_modified.isoformat(),
            "etag": info.etag, "metadata": info.metadata, "format": fmt,
            "extension_mismatch": bool(mismatch(extension, fmt))}


def aggregate_blobs(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """The diamond's fan-in: every stage 2 outcome, aggregated."""
    return aggregate_inventory(context["previous_results"])
