"""process_raster's handlers against real Azurite, PostGIS and pgstac: a COG task delivered
twice leaves one COG and one STAC item; the cleanup of a failed job deletes the COGs and
items it wrote, never another job's at the same name."""

from __future__ import annotations

from config import get_settings
from infrastructure.stac_repository import StacRepository
from jobs import ALL_JOBS
from services import service_raster as raster
from tests.e2e.test_process_raster import tiff, upload

JOB_A, JOB_B = "a" * 64, "b" * 64


def cog_task(params: dict, tier: str = "analysis") -> dict:
    return {**params, "tier": tier, "categorical": False, "item": params["item_id"]}


def silver(storage) -> list[str]:
    return sorted(b.name for b in storage.list_blobs(get_settings().silver_cogs_container))


def test_a_cog_task_delivered_twice_leaves_one_cog_and_one_item(blob_storage,
                                                                geo_database):
    upload(blob_storage, get_settings().bronze_rasters_container, "dem.tif",
           tiff(1, "float32", "EPSG:4326", 400))
    params = ALL_JOBS["process_raster"].validate_job_parameters({"blob_name": "dem.tif"})
    first = raster.process_raster_cog(cog_task(params), {"job_id": JOB_A})
    again = raster.process_raster_cog(cog_task(params), {"job_id": JOB_A})
    assert first["blob"] == again["blob"] == "dem/dem_cog_analysis.tif"
    assert silver(blob_storage) == ["dem/dem_cog_analysis.tif"]
    stac = {"collection_id": params["collection_id"]}
    one = raster.catalog_rasters({**stac, "items": [first["item"]]}, {"job_id": JOB_A})
    two = raster.catalog_rasters({**stac, "items": [again["item"]]}, {"job_id": JOB_A})
    assert one["items"][0]["outcome"] == two["items"][0]["outcome"] == "inserted"
    found = StacRepository().search(["system-rasters"])
    assert [item["id"] for item in found] == ["dem"]


def test_cleanup_deletes_its_own_outputs_only(blob_storage, geo_database):
    upload(blob_storage, get_settings().bronze_rasters_container, "dem.tif",
           tiff(1, "float32", "EPSG:4326", 400))
    params = ALL_JOBS["process_raster"].validate_job_parameters({"blob_name": "dem.tif"})
    done = raster.process_raster_cog(cog_task(params), {"job_id": JOB_A})
    raster.catalog_rasters({"collection_id": "system-rasters", "items": [done["item"]]},
                           {"job_id": JOB_A})
    context = {"job_id": JOB_B, "job_parameters": params}
    assert raster.process_raster_cleanup({}, context) == {"cogs_deleted": [],
                                                          "items_deleted": []}
    assert silver(blob_storage) == ["dem/dem_cog_analysis.tif"]
    archive = raster.process_raster_cog(cog_task(params, "archive"), {"job_id": JOB_B})
    assert archive["blob"] == "dem/dem_cog_archive.tif"
    cleaned = raster.process_raster_cleanup({}, {**context, "job_id": JOB_A})
    assert cleaned == {"cogs_deleted": ["dem/dem_cog_analysis.tif"], "items_deleted": ["dem"]}
    assert silver(blob_storage) == ["dem/dem_cog_archive.tif"]
    assert StacRepository().get_item("system-rasters", "dem") is None
