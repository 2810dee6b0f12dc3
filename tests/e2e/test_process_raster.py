"""process_raster, stac_catalog_raster and stac_catalog_container over real HTTP (the local
host on a loopback port) against Azurite, PostGIS and pgstac, on rasters made here with
rasterio: each COG passes rio-cogeo's validator and is catalogued with the projection and
raster extensions, a plain URL and the right datetime."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate

from config import get_settings
from infrastructure.stac_repository import StacRepository
from local_host import LocalHost
from tests.e2e.host_calls import call, run


@pytest.fixture
def host(database, blob_storage, geo_database):
    with LocalHost(port=0, close_database=False, banner=False) as running:
        yield running


def tiff(bands: int = 3, dtype: str = "uint8", crs: str | None = "EPSG:32633",
         size: int = 700, nodata=None, tags: dict | None = None) -> bytes:
    """A striped (not tiled) GeoTIFF of smooth data, as cameras and old tools write."""
    y, x = np.mgrid[0:size, 0:size]
    base = (np.sin(x / 37.0) + np.cos(y / 23.0) + 2) * 60
    data = np.stack([base + 10 * b for b in range(bands)]).astype(dtype)
    geographic = crs == "EPSG:4326"
    transform = from_origin(10, 50, 0.001, 0.001) if geographic else \
        from_origin(500000, 5500000, 10, 10)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.tif"
        with rasterio.open(path, "w", driver="GTiff", width=size, height=size,
                           count=bands, dtype=dtype, crs=crs, transform=transform,
                           nodata=nodata) as out:
            out.write(data)
            if tags:
                out.update_tags(**tags)
        return path.read_bytes()


def upload(storage, container: str, name: str, data: bytes) -> None:
    storage.upload_from(container, name, io.BytesIO(data), length=len(data))


def cog_bytes(storage, blob: str) -> bytes:
    buffer = io.BytesIO()
    storage.download_to(get_settings().silver_cogs_container, blob, buffer)
    return buffer.getvalue()


def assert_valid_cog(data: bytes) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.tif"
        path.write_bytes(data)
        valid, errors, _ = cog_validate(str(path), quiet=True)
        assert valid, errors
        with rasterio.open(path) as cog:
            return {"blocks": cog.block_shapes[0], "overviews": cog.overviews(1),
                    "crs": cog.crs, "compression": cog.compression.value,
                    "nodata": cog.nodata, "count": cog.count}


def test_rgb_all_tiers_catalogued(host, blob_storage):
    bronze = get_settings().bronze_rasters_container
    upload(blob_storage, bronze, "scenes/photo.tif",
           tiff(tags={"TIFFTAG_DATETIME": "2025:06:01 10:30:00"}))
    job = run(host, "process_raster", {"blob_name": "scenes/photo.tif",
                                       "output_tier": "all"}, timeout=180)
    assert job["status"] == "completed", job["error_details"]
    r = job["result_data"]
    tiers = {c["tier"]: c for c in r["cogs"]}
    assert set(tiers) == {"visualization", "analysis", "archive"}
    assert tiers["visualization"]["compression"] == "JPEG"
    assert tiers["analysis"]["compression"] == "DEFLATE"
    assert tiers["archive"]["compression"] == "ZSTD"
    assert sorted(r["stac_item_ids"]) == ["photo-analysis", "photo-archive",
                                          "photo-visualization"]
    for tier, cog in tiers.items():
        assert cog["blob"] == f"photo/photo_cog_{tier}.tif"
        facts = assert_valid_cog(cog_bytes(blob_storage, cog["blob"]))
        assert facts["blocks"] == (512, 512) and facts["overviews"] == [2]
        assert cog["overview_levels"] == [2] and cog["crs"] == "EPSG:32633"
    item = StacRepository().get_item("system-rasters", "photo-analysis")
    assert item["properties"]["datetime"] == "2025-06-01T10:30:00Z"
    assert item["properties"]["proj:epsg"] == 32633 or \
        item["properties"].get("proj:code") == "EPSG:32633"
    bands = item["assets"]["data"]["raster:bands"]
    assert len(bands) == 3 and bands[0]["data_type"] == "uint8"
    assert "statistics" in bands[0]
    href = item["assets"]["data"]["href"]
    assert href.endswith("/photo/photo_cog_analysis.tif") and "sig=" not in href
    assert "cloud-optimized" in item["assets"]["data"]["type"]
    west, south, east, north = item["bbox"]
    assert 14 < west < east < 16 and 49 < south < north < 50.5  # UTM 33N, in degrees


@pytest.mark.parametrize("bands,dtype,nodata", [
    (1, "float32", -9999.0), (1, "int16", None), (1, "float64", None),
    (4, "uint16", 0), (6, "uint16", None),
])
def test_analysis_tier_for_other_kinds(host, blob_storage, bands, dtype, nodata):
    bronze = get_settings().bronze_rasters_container
    upload(blob_storage, bronze, "r.tif", tiff(bands, dtype, "EPSG:4326", 600, nodata))
    job = run(host, "process_raster", {"blob_name": "r.tif", "output_tier": "all"},
              timeout=180)
    assert job["status"] == "completed", job["error_details"]
    r = job["result_data"]
    assert sorted(c["tier"] for c in r["cogs"]) == ["analysis", "archive"]
    facts = assert_valid_cog(cog_bytes(blob_storage, "r/r_cog_analysis.tif"))
    assert facts["count"] == bands and facts["nodata"] == nodata
    item = StacRepository().get_item("system-rasters", "r-analysis")
    assert item["assets"]["data"]["raster:bands"][0]["data_type"] == dtype
    assert item["properties"]["geojobs:datetime_source"] == "source_last_modified"


def test_no_crs_needs_source_crs_and_target_crs_reprojects(host, blob_storage):
    bronze = get_settings().bronze_rasters_container
    upload(blob_storage, bronze, "nocrs.tif", tiff(1, "float32", None))
    job = run(host, "process_raster", {"blob_name": "nocrs.tif"}, timeout=120)
    assert job["status"] == "failed" and "source_crs" in job["error_details"]
    assert "no COG was made" in job["error_details"]
    job = run(host, "process_raster", {"blob_name": "nocrs.tif",
                                       "source_crs": "EPSG:32633",
                                       "target_crs": "EPSG:4326"}, timeout=120)
    assert job["status"] == "completed", job["error_details"]
    cog = job["result_data"]["cogs"][0]
    assert cog["crs"] == "EPSG:4326" and cog["tier"] == "analysis"
    assert job["result_data"]["stac_item_ids"] == ["nocrs"]


def test_visualization_of_a_dem_is_refused_and_catalog_jobs(host, blob_storage):
    bronze = get_settings().bronze_rasters_container
    upload(blob_storage, bronze, "dem.tif", tiff(1, "float32", "EPSG:4326"))
    job = run(host, "process_raster", {"blob_name": "dem.tif",
                                       "output_tier": "visualization"}, timeout=120)
    assert job["status"] == "failed"
    assert "output_tier visualization does not suit" in job["error_details"]
    # stac_catalog_raster: a COG is catalogued; a plain striped TIFF is refused
    silver = get_settings().silver_cogs_container
    job = run(host, "process_raster", {"blob_name": "dem.tif"}, timeout=120)
    assert job["status"] == "completed", job["error_details"]
    job = run(host, "stac_catalog_raster", {"blob_name": "dem/dem_cog_analysis.tif",
                                            "item_id": "dem-again"})
    assert job["status"] == "completed", job["error_details"]
    assert job["result_data"]["item_id"] == "dem-again"
    assert job["result_data"]["outcome"] == "inserted"
    upload(blob_storage, silver, "striped.tif", tiff(1, "int16", "EPSG:4326", 1100))
    job = run(host, "stac_catalog_raster", {"blob_name": "striped.tif"})
    assert job["status"] == "failed"
    assert "not a valid Cloud Optimized GeoTIFF" in job["error_details"]


def test_stac_catalog_container_counts_inserts_updates_and_failures(host, blob_storage,
                                                                   blob_container):
    for name in ("a.tif", "sub/b.tif", "c.TIF"):
        upload(blob_storage, blob_container, name, tiff(1, "uint8", "EPSG:4326", 300))
    upload(blob_storage, blob_container, "broken.tif", b"this is not a tiff at all")
    upload(blob_storage, blob_container, "notes.txt", b"ignored: not a .tif")
    job = run(host, "stac_catalog_container", {"container_name": blob_container},
              timeout=120)
    assert job["status"] == "completed_with_errors", job["error_details"]
    r = job["result_data"]
    assert (r["found"], r["inserted"], r["updated"], r["failed"]) == (4, 3, 0, 1)
    assert "broken.tif" in r["errors"][0]["error"]
    stac = StacRepository()
    assert stac.get_item("system-rasters", "sub-b") is not None
    code, again = call(host, "POST", "/api/jobs/submit/stac_catalog_container",
                       {"container_name": blob_container, "snapshot": "second"})
    assert code == 201, again
    job = run(host, "stac_catalog_container", {"container_name": blob_container,
                                               "snapshot": "third"}, timeout=120)
    r = job["result_data"]
    assert (r["found"], r["inserted"], r["updated"], r["failed"]) == (4, 0, 3, 1)


def test_bad_rasters_fail_at_once_and_write_nothing(host, blob_storage, monkeypatch):
    from config import reset_settings

    bronze = get_settings().bronze_rasters_container
    code, body = call(host, "POST", "/api/jobs/submit/process_raster",
                      {"blob_name": "missing.tif"})
    assert code == 400 and body["parameter"] == "blob_name", body
    whole = tiff(3, "uint8", "EPSG:32633", 600)
    upload(blob_storage, bronze, "text.tif", b"just some text, not a raster\n" * 20)
    upload(blob_storage, bronze, "cut.tif", whole[:len(whole) // 3])
    upload(blob_storage, bronze, "big.tif", whole)
    cases = [("text.tif", "text"), ("cut.tif", "cut.tif")]
    for blob, says in cases:
        job = run(host, "process_raster", {"blob_name": blob}, timeout=120)
        assert job["status"] == "failed", job
        assert blob in job["error_details"] and says in job["error_details"]
        code, tasks = call(host, "GET", f"/api/jobs/{job['job_id']}/tasks")
        assert [t["retries"] for t in tasks["tasks"] if t["stage"] == 1] == [0]
    monkeypatch.setenv("RASTER_MAX_FILE_MB", "0.1")
    reset_settings()
    job = run(host, "process_raster", {"blob_name": "big.tif"}, timeout=120)
    assert job["status"] == "failed" and "RASTER_MAX_FILE_MB" in job["error_details"]
    assert list(blob_storage.list_blobs(get_settings().silver_cogs_container)) == []


def test_rgba_photo_gets_a_jpeg_with_its_alpha_as_mask(host, blob_storage):
    from tests.e2e import raster_files as rf

    bronze = get_settings().bronze_rasters_container
    upload(blob_storage, bronze, "rgba.tif",
           rf.geotiff(rf.photo_with_alpha(), colorinterp=["red", "green", "blue", "alpha"]))
    job = run(host, "process_raster", {"blob_name": "rgba.tif", "output_tier": "all"},
              timeout=180)
    assert job["status"] == "completed", job["error_details"]
    tiers = sorted(c["tier"] for c in job["result_data"]["cogs"])
    assert tiers == ["analysis", "archive", "visualization"]
    data = cog_bytes(blob_storage, "rgba/rgba_cog_visualization.tif")
    facts = assert_valid_cog(data)
    assert facts["count"] == 3 and facts["compression"] == "JPEG"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "v.tif"
        path.write_bytes(data)
        with rasterio.open(path) as cog:
            mask = cog.dataset_mask()
    assert mask[0, 0] == 0 and mask[-1, -1] == 255  # the collar is masked out
    # a 4-band uint8 that is not RGBA (its 4th band is data) gets no JPEG
    upload(blob_storage, bronze, "nir8.tif", rf.geotiff(rf.red_green_blue_nir(
        dtype="uint8"), descriptions=["red", "green", "blue", "nir"]))
    job = run(host, "process_raster", {"blob_name": "nir8.tif", "output_tier": "all"},
              timeout=180)
    assert job["status"] == "completed", job["error_details"]
    assert sorted(c["tier"] for c in job["result_data"]["cogs"]) == ["analysis", "archive"]


def test_jpeg_quality_reaches_gdal(tmp_path):
    """The visualization tier's jpeg_quality is GDAL's JPEG_QUALITY: a lower quality makes a
    smaller file (QUALITY, the wrong name, was ignored with a warning)."""
    from services.raster_cog import make_cog

    source = tmp_path / "photo.tif"
    source.write_bytes(tiff(3, "uint8", "EPSG:32633", 800))
    sizes = {}
    for quality in (30, 95):
        made = make_cog(source, tmp_path / f"q{quality}.tif", "visualization",
                        {"jpeg_quality": quality})
        sizes[quality] = made["size"]
    assert sizes[30] < sizes[95] * 0.8
