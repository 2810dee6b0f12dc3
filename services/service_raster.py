"""The raster jobs' handlers besides validate_raster_job's: process_raster's validate, COG,
STAC and cleanup tasks, and catalog_rasters, the one handler that writes raster items
(process_raster's STAC stage, stac_catalog_raster, stac_catalog_container's per-raster
tasks)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from config import get_settings
from exceptions import PermanentError
from infrastructure.blob_storage import get_blob_storage
from infrastructure.stac_repository import StacRepository
from services.raster_cog import fitting_tiers, make_cog, tier_fits
from services.raster_sources import fetch_raster, remove
from services.raster_stac import item_for_blob, provenance, raster_item, upsert_items

JOB_METADATA_KEY = "geojobs_job_id"


def _findings_text(findings: list[dict[str, Any]]) -> str:
    return "; ".join(f"{f['severity']}: {f['message']}" for f in findings)


def process_raster_validate(params: dict[str, Any], context: dict[str, Any]
                            ) -> dict[str, Any]:
    from services.raster_validation import validate_raster

    folder = Path(tempfile.mkdtemp(prefix="raster-validate-"))
    try:
        label = f"{params['container_name']}/{params['blob_name']}"
        path = fetch_raster(get_blob_storage(), params["container_name"],
                            params["blob_name"], folder)
        report = validate_raster(str(path), label, params)
        if not report["valid"]:
            counted = [f for f in report["findings"] if f["severity"] == "error" or (
                params.get("strict_mode") and f["severity"] == "warning")]
            raise PermanentError(
                f"{label} is not valid{' (strict_mode: warnings count)' if params.get('strict_mode') else ''}"
                f", so no COG was made: {_findings_text(counted)}")
        meta = report["metadata"]
        detected = (report.get("raster_type") or {}).get("detected")
        # band 4 of 4 is alpha when the data says so (GDAL labels any 4-band uint8 so)
        alpha = meta["bands"] == 4 and detected == "rgba"
        if params["output_tier"] == "all":
            tiers = fitting_tiers(meta["bands"], meta["dtype"], alpha)
        elif tier_fits(params["output_tier"], meta["bands"], meta["dtype"], alpha):
            tiers = [params["output_tier"]]
        else:
            raise PermanentError(
                f"output_tier {params['output_tier']} does not suit {label} "
                f"({meta['bands']} band(s) of {meta['dtype']}): visualization (JPEG) needs "
                "3-band 8-bit data; choose analysis, archive or all")
    finally:
        remove(folder)
    return {"summary": report, "tiers": tiers, "categorical": detected == "categorical",
            "alpha_band": 4 if alpha else None}


def cog_blob(params: dict[str, Any], tier: str) -> str:
    from jobs.process_raster import stem_of

    return f"{params['output_folder']}/{stem_of(params['blob_name'])}_cog_{tier}.tif"


def process_raster_cog(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    job_id = context["job_id"]
    storage = get_blob_storage()
    settings = get_settings()
    tier = params["tier"]
    folder = Path(tempfile.mkdtemp(prefix="raster-cog-"))
    try:
        started = time.monotonic()
        source_info = storage.get_properties(params["container_name"], params["blob_name"])
        path = fetch_raster(storage, params["container_name"], params["blob_name"], folder)
        downloaded = time.monotonic()
        output = folder / f"cog_{tier}.tif"
        made = make_cog(path, output, tier, params)
        path.unlink(missing_ok=True)  # the input's disk space, before the upload
        container = settings.silver_cogs_container
        name = cog_blob(params, tier)
        uploading = time.monotonic()
        storage.create_container(container)
        storage.upload_file(container, name, output, content_type="image/tiff",
                            metadata={JOB_METADATA_KEY: job_id})
        uploaded = time.monotonic()
        source = f"{params['container_name']}/{params['blob_name']}"
        item = raster_item(output, params["item"], params["collection_id"],
                           storage.url(container, name), source_info.last_modified,
                           {**provenance(source, job_id), "geojobs:tier": tier,
                            "geojobs:cog_blob": f"{container}/{name}"})
    finally:
        remove(folder)
    seconds = {"download": round(downloaded - started, 3), **made["seconds"],
               "upload": round(uploaded - uploading, 3),
               "item": round(time.monotonic() - uploaded, 3)}
    return {**made, "blob": name, "container": container, "item_id": params["item"],
            "seconds": seconds, "item": item}


def catalog_rasters(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Upsert raster items: those given (process_raster's COG tasks made them), or the
    one of the blob named (stac_catalog_raster: it must be a valid COG;
    stac_catalog_container: any readable raster)."""
    job_id = context.get("job_id", "")
    collection = params["collection_id"]
    if "items" in params:
        written = upsert_items(params["items"], collection, job_id)
        return {"collection_id": collection, "items": written}
    started = time.monotonic()
    item = item_for_blob(params["container_name"], params["blob_name"], params["item_id"],
                         collection, job_id, params.get("require_cog", True))
    written = upsert_items([item], collection, job_id)[0]
    return {"item_id": item["id"], "collection_id": collection,
            "outcome": written["outcome"], "blob_name": params["blob_name"],
            "bbox": item["bbox"], "datetime": written["datetime"],
            "datetime_source": item["properties"].get("geojobs:datetime_source"),
            "seconds": round(time.monotonic() - started, 3)}


def process_raster_cleanup(params: dict[str, Any], context: dict[str, Any]
                           ) -> dict[str, Any]:
    """A failed job's partial outputs: the COGs it uploaded (blobs it marked as its own,
    never another job's at the same name) and the items it created."""
    from jobs.process_raster import OUTPUT_TIERS

    job_id = context["job_id"]
    job_params = context.get("job_parameters") or {}
    storage = get_blob_storage()
    container = get_settings().silver_cogs_container
    deleted, items = [], []
    if job_params and storage.container_exists(container):
        for tier in OUTPUT_TIERS[:-1]:
            name = cog_blob(job_params, tier)
            try:
                info = storage.get_properties(container, name)
            except PermanentError:
                continue
            if info.metadata.get(JOB_METADATA_KEY) == job_id and \
                    storage.delete_blob(container, name):
                deleted.append(name)
    if job_params:
        stac = StacRepository()
        collection = job_params.get("collection_id", "system-rasters")
        base = job_params.get("item_id")
        for item_id in [base] + [f"{base}-{t}" for t in OUTPUT_TIERS[:-1]]:
            item = stac.get_item(collection, item_id) if item_id else None
            if item and (item.get("properties") or {}).get(
                    "geojobs:created_by_job") == job_id:
                stac.delete_item(collection, item_id)
                items.append(item_id)
    return {"cogs_deleted": deleted, "items_deleted": items}
