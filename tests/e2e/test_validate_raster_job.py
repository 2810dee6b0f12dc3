"""validate_raster_job over real HTTP (the local host on a loopback port) against Azurite,
on rasters these tests make with rasterio (tests/e2e/raster_files.py): projected and
geographic CRSs, no CRS with and without source_crs, 1, 3, 4 and 6 bands, uint8, uint16,
int16, float32 and float64, nodata present and absent; a raster with errors completes its
job with valid false and its findings. Bad input: a missing blob is a 400 naming
blob_name (storage out of reach, a 503); a text file named .tif, a truncated TIFF and a
raster over RASTER_MAX_FILE_MB fail the job at once, never retried, naming the file and
the cause."""

from __future__ import annotations

import time

import numpy as np
import pytest

from config import reset_settings
from local_host import LocalHost
from tests.e2e import raster_files as rf
from tests.e2e.host_calls import TERMINAL, call


@pytest.fixture
def host(database, blob_storage):
    with LocalHost(port=0, close_database=False, banner=False) as running:
        yield running


def submit(host, params: dict) -> str:
    code, created = call(host, "POST", "/api/jobs/submit/validate_raster_job", params)
    assert code == 201, created
    return created["job_id"]


def wait(host, job_id: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, job = call(host, "GET", f"/api/jobs/status/{job_id}")
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end: {job['status']}")


def retries(host, job_id: str) -> list[int]:
    code, tasks = call(host, "GET", f"/api/jobs/{job_id}/tasks")
    assert code == 200, tasks
    return [t["retries"] for t in tasks["tasks"]]


def codes(result: dict, severity: str) -> set[str]:
    return {f["code"] for f in result["findings"] if f["severity"] == severity}


CASES = {  # blob -> (raster, extra parameters, expected metadata and type)
    "photo/rgb.tif": (lambda: rf.geotiff(rf.photo()), {},
                      {"bands": 3, "dtype": "uint8", "epsg": 32633, "type": "rgb",
                       "nodata_present": False}),
    "photo/rgba.tif": (lambda: rf.geotiff(rf.photo_with_alpha()), {},
                       {"bands": 4, "dtype": "uint8", "type": "rgba"}),
    "dem/float32.tif": (lambda: rf.geotiff(rf.with_corner(rf.elevation(1800, 1800), -9999),
                                           nodata=-9999.0), {},
                        {"bands": 1, "dtype": "float32", "type": "dem", "nodata": -9999,
                         "nodata_present": True}),
    "dem/int16_degrees.tif": (lambda: rf.geotiff(rf.elevation(dtype="int16"),
                                                 crs=rf.GEOGRAPHIC, nodata=-32768), {},
                              {"bands": 1, "dtype": "int16", "epsg": 4326, "type": "dem",
                               "nodata": -32768, "nodata_present": False}),
    "dem/float64.tif": (lambda: rf.geotiff(rf.elevation(dtype="float64")), {},
                        {"dtype": "float64", "type": "dem", "warning": "bit_depth_64"}),
    "landcover.tif": (lambda: rf.geotiff(rf.land_cover()), {"raster_type": "categorical"},
                      {"bands": 1, "dtype": "uint8", "type": "categorical"}),
    "scene/ms_uint16.tif": (lambda: rf.geotiff(rf.bands_of_reflectance(6)), {},
                            {"bands": 6, "dtype": "uint16", "type": "multispectral"}),
    "scene/ms_float32.tif": (lambda: rf.geotiff(rf.bands_of_reflectance(6,
                                                                        dtype="float32")),
                             {}, {"bands": 6, "dtype": "float32", "type": "multispectral"}),
    "scene/rgbn.tif": (lambda: rf.geotiff(rf.red_green_blue_nir()), {},
                       {"bands": 4, "dtype": "uint16", "type": "nir"}),
    "nocrs/given.tif": (lambda: rf.geotiff(rf.elevation(), crs=None),
                        {"source_crs": "EPSG:32633"},
                        {"epsg": 32633, "crs_source": "source_crs", "type": "dem"}),
}


def test_rasters_of_every_kind_are_reported_on(host, blob_storage):
    for blob, (make, _, _) in CASES.items():
        rf.upload(blob_storage, blob, make())
    jobs = {blob: submit(host, {"blob_name": blob, **extra})
            for blob, (_, extra, _) in CASES.items()}
    for blob, job_id in jobs.items():
        expected = CASES[blob][2]
        job = wait(host, job_id)
        assert job["status"] == "completed", job["error_details"]
        r = job["result_data"]
        assert r["job_type"] == "validate_raster_job"
        assert r["source"] == f"{rf.bronze()}/{blob}" and r["source_etag"]
        assert r["valid"] is True, (blob, r["findings"])
        assert r["raster_type"]["detected"] == expected["type"], (blob, r["raster_type"])
        m = r["metadata"]
        for key in ("bands", "dtype", "epsg", "nodata", "nodata_present", "crs_source"):
            if key in expected:
                assert m[key] == expected[key], (blob, key, m[key])
        if "warning" in expected:
            assert expected["warning"] in codes(r, "warning")
        assert m["bounds_wgs84"] is not None and len(m["bounds"]) == 4
        assert {"crs", "width", "height", "dtypes", "block_size", "is_tiled",
                "overviews"} <= set(m)
        assert r["recommended"]["blocksize"] == 512 and r["recommended"]["compression"]
        for finding in r["findings"]:
            assert finding["severity"] in ("error", "warning", "info") and finding["message"]
        assert retries(host, job_id) == [0]
    rgb = wait(host, jobs["photo/rgb.tif"])["result_data"]
    assert rgb["recommended"]["compression"] == "JPEG"
    # the same file again is the same job
    code, again = call(host, "POST", "/api/jobs/submit/validate_raster_job",
                       {"blob_name": "photo/rgb.tif"})
    assert code == 200 and again["job_id"] == jobs["photo/rgb.tif"], again


def test_a_raster_with_errors_completes_with_valid_false(host, blob_storage):
    rf.upload(blob_storage, "nocrs.tif", rf.geotiff(rf.elevation(), crs=None))
    rf.upload(blob_storage, "dem64.tif", rf.geotiff(rf.elevation(dtype="float64")))
    rf.upload(blob_storage, "meters_as_degrees.tif",
              rf.geotiff(rf.elevation(), crs=rf.GEOGRAPHIC, transform=rf.utm_transform()))
    rf.upload(blob_storage, "dem.tif", rf.geotiff(rf.elevation()))
    runs = {
        "no_crs": submit(host, {"blob_name": "nocrs.tif"}),
        "contradicted_crs": submit(host, {"blob_name": "dem.tif",
                                          "source_crs": "EPSG:32632"}),
        "contradicted_type": submit(host, {"blob_name": "dem.tif", "raster_type": "rgb"}),
        "strict": submit(host, {"blob_name": "dem64.tif", "strict_mode": True}),
        "bounds": submit(host, {"blob_name": "meters_as_degrees.tif"}),
    }
    expected = {"no_crs": ("error", "crs_missing"),
                "contradicted_crs": ("error", "crs_contradicts"),
                "contradicted_type": ("error", "raster_type_contradicted"),
                "strict": ("warning", "bit_depth_64"),
                "bounds": ("error", "bounds_implausible")}
    for name, job_id in runs.items():
        job = wait(host, job_id)
        assert job["status"] == "completed", job["error_details"]
        r = job["result_data"]
        assert r["valid"] is False, (name, r["findings"])
        severity, code = expected[name]
        assert code in codes(r, severity), (name, r["findings"])
    no_crs = wait(host, runs["no_crs"])["result_data"]
    assert no_crs["metadata"]["crs"] is None and no_crs["metadata"]["bounds_wgs84"] is None
    assert "source_crs" in " ".join(f["message"] for f in no_crs["findings"])


def fails_at_once(host, blob: str) -> str:
    job = wait(host, submit(host, {"blob_name": blob}))
    assert job["status"] == "failed", job
    assert retries(host, job["job_id"]) == [0]  # never retried
    assert f"{rf.bronze()}/{blob}" in job["error_details"], job["error_details"]
    return job["error_details"]


def test_files_that_are_not_rasters_fail_at_once(host, blob_storage, monkeypatch):
    rf.upload(blob_storage, "notes.tif", b"station,height\nA,120\nB,340\n" * 20)
    assert "is not a GeoTIFF: its content looks like text" in fails_at_once(host, "notes.tif")
    whole = rf.geotiff(rf.elevation(1500, 1500))
    rf.upload(blob_storage, "cut.tif", rf.truncated(whole, 0.4))
    error = fails_at_once(host, "cut.tif")
    assert "cannot be read" in error and "truncated or corrupt" in error
    rf.upload(blob_storage, "header.tif", whole[:300])
    assert "truncated or corrupt" in fails_at_once(host, "header.tif")  # a header alone
    rf.upload(blob_storage, "empty.tif", b"")
    assert "is empty" in fails_at_once(host, "empty.tif")
    rf.upload(blob_storage, "big.tif", rf.geotiff(rf.elevation(400, 400)))
    monkeypatch.setenv("RASTER_MAX_FILE_MB", "0.1")
    reset_settings()
    assert "RASTER_MAX_FILE_MB (0.1 MB)" in fails_at_once(host, "big.tif")


def test_a_missing_blob_is_a_400_naming_it(host, blob_storage, database):
    code, body = call(host, "POST", "/api/jobs/submit/validate_raster_job",
                      {"blob_name": "nowhere/missing.tif"})
    assert code == 400, body
    assert body["parameter"] == "blob_name" and "missing.tif" in body["resource"]
    code, body = call(host, "POST", "/api/jobs/submit/validate_raster_job",
                      {"blob_name": "a.tif", "source_crs": "EPSG:not-a-crs"})
    assert code == 400 and body["parameter"] == "source_crs", body
    code, body = call(host, "POST", "/api/jobs/submit/validate_raster_job",
                      {"blob_name": "a.tif", "raster_type": "hyperspectral"})
    assert code == 400 and body["parameter"] == "raster_type", body
    with database.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM app.jobs").fetchone()["n"] == 0


def test_storage_out_of_reach_at_submit_is_a_503(host, blob_storage, database):
    from azure.storage.blob import BlobServiceClient

    from infrastructure.blob_storage import BlobStorage, get_blob_storage, set_blob_storage

    rf.upload(blob_storage, "dem.tif", rf.geotiff(np.ones((20, 20), np.float32)))
    working = get_blob_storage()
    set_blob_storage(BlobStorage(BlobServiceClient.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw"
        "==;BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;", retry_total=0)))
    try:
        code, body = call(host, "POST", "/api/jobs/submit/validate_raster_job",
                          {"blob_name": "dem.tif"})
        assert code == 503, body
    finally:
        set_blob_storage(working)
    with database.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM app.jobs").fetchone()["n"] == 0
