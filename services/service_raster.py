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
from services.raster_source_cache import raster_source, release_source
from services.raster_sources import remove
from services.raster_stac import item_for_blob, provenance, raster_item, upsert_items

JOB_METADATA_KEY = "geojobs_job_id"


def _findings_text(findings: list[dict[str, Any]]) -> str:
    return "; ".join(f"{f['severity']}: {f['message']}" for f in findings)


def _tiers(params: dict[str, Any], report: dict[str, Any], label: str
           ) -> tuple[list[str], bool, Any]:
    """The tiers to make, whether band 4 is alpha, and the type used (detected, or the
    raster_type given when the data does not contradict it); a raster that is
    not valid (or a tier that does not suit it) is a PermanentError naming why."""
    if not report["valid"]:
        counted = [f for f in report["findings"] if f["severity"] == "error" or (
            params.get("strict_mode") and f["severity"] == "warning")]
        raise PermanentError(
            f"{label} is not valid{' (strict_mode: warnings count)' if params.get('strict_mode') else ''}"
            f", so no COG was made: {_findings_text(counted)}")
    meta = report["metadata"]
    kind = report.get("raster_type") or {}
    detected = kind.get("used") or kind.get("detected")
    # band 4 of 4 is alpha when the data says so (GDAL labels any 4-band uint8 so)
    alpha = meta["bands"] == 4 and "rgba" in (detected, kind.get("detected"))
    if params["output_tier"] == "all":
        return fitting_tiers(meta["bands"], meta["dtype"], alpha), alpha, detected
    if tier_fits(params["output_tier"], meta["bands"], meta["dtype"], alpha):
        return [params["output_tier"]], alpha, detected
    raise PermanentError(
        f"output_tier {params['output_tier']} does not suit {label} "
        f"({meta['bands']} band(s) of {meta['dtype']}): visualization (JPEG) needs "
        "3-band 8-bit data; choose analysis, archive or all")


def process_raster_validate(params: dict[str, Any], context: dict[str, Any]
                            ) -> dict[str, Any]:
    from services.raster_validation import validate_raster

    container, blob = params["container_name"], params["blob_name"]
    label = f"{container}/{blob}"
    folder = Path(tempfile.mkdtemp(prefix="raster-validate-"))
    started = time.monotonic()
    try:
        # the source stays on this instance for the COG stage (released by the STAC stage)
        with raster_source(get_blob_storage(), container, blob, folder) as path:
            downloaded = time.monotonic()
            report = validate_raster(str(path), label, params)
        tiers, alpha, detected = _tiers(params, report, label)
    except BaseException:
        release_source(get_blob_storage(), container, blob)  # no COG stage follows
        raise
    finally:
        remove(folder)
    return {"summary": report, "tiers": tiers, "categorical": detected == "categorical",
            "alpha_band": 4 if alpha else None,
            "seconds": {"download": round(downloaded - started, 3),
                        "validate": round(time.monotonic() - downloaded, 3)}}


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
        output = folder / f"cog_{tier}.tif"
        container = settings.silver_cogs_container
        name = cog_blob(params, tier)
        storage.create_container(container)
        with raster_source(storage, params["container_name"], params["blob_name"],
                           folder, source_info) as path:
            downloaded = time.monotonic()
            # the COG's blocks go up as GDAL writes them; the blob appears at commit,
            # once the COG is whole and valid
            with storage.growing_upload(container, name, output, content_type="image/tiff",
                                        metadata={JOB_METADATA_KEY: job_id}) as upload:
                made = make_cog(path, output, tier, params)
                if path.parent == folder:
                    path.unlink(missing_ok=True)  # the input's disk space
                uploading = time.monotonic()
                upload.commit()
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
            "seconds": seconds, "item": item,
            "upload_blocks": {"while_converting": upload.staged_early,
                              "staged_again": upload.restaged}}


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


def process_raster_stac(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """process_raster's last stage: the items upserted, then this instance's copy of the
    source (kept for the COG stage) removed."""
    result = catalog_rasters(params, context)
    source = params.get("source") or {}
    if source:
        release_source(get_blob_storage(), source["container_name"],
                       source["blob_name"])
    return result


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
    if job_params.get("blob_name"):
        release_source(storage, job_params["container_name"], job_params["blob_name"])
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
