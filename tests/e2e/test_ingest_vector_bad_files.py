"""ingest_vector on files that can never be processed, over real HTTP against Azurite and
PostGIS: each fails its job at once (its task never retried), naming the file and the
cause, and leaves nothing behind (no claim, no staging table, no chunk, no table)."""

from __future__ import annotations

import pytest

from config import reset_settings
from tests.e2e import vector_files as vf
from tests.e2e.host_calls import call, run
from tests.e2e.test_ingest_vector import cleaned_up, host, leftovers, query  # noqa: F401


def fails_at_once(host, storage, blob: str, **extra) -> str:
    """Run the job on blob; it fails on its first try, cleaned up; returns its error."""
    job = run(host, "ingest_vector", {"blob_name": blob, "table_name": "target", **extra},
              timeout=120)
    assert job["status"] == "failed", job
    code, tasks = call(host, "GET", f"/api/jobs/{job['job_id']}/tasks?stage=1")
    assert code == 200, tasks
    assert [t["retries"] for t in tasks["tasks"]] == [0]  # never retried
    cleaned_up(host, job)
    assert query("SELECT count(*) AS n FROM geo_ingest.runs")[0]["n"] == 0
    assert query("SELECT count(*) AS n FROM pg_tables WHERE schemaname IN"
                 " ('geo', 'geo_ingest') AND tablename NOT IN ('runs', 'loaded_chunks')"
                 )[0]["n"] == 0
    assert leftovers(storage) == []
    assert blob.split("/")[-1] in job["error_details"]
    return job["error_details"]


def gpkg_bytes() -> bytes:
    return vf.written(vf.points(200), ".gpkg")


@pytest.mark.parametrize("name,data,says", [
    ("text.gpkg", b"name,value\na,1\n", "is not a GeoPackage: its content looks like text"),
    ("image.geojson", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100,
     "is not a GeoJSON text file: its content looks like png"),
    ("list.json", b'[{"a": 1}]', "is not GeoJSON: it does not start with '{'"),
    ("zip.kml", vf.zipped({"doc.kml": b"<kml/>"}), "is not a KML text file"),
    ("tiff.zip", b"II*\x00" + b"\x00" * 100, "is not a zip archive"),
    ("empty.csv", b"", "is empty"),
])
def test_a_file_that_is_not_what_its_extension_says(host, blob_storage, name, data, says):
    vf.upload(blob_storage, name, data)
    assert says in fails_at_once(host, blob_storage, name)


def test_corrupt_and_truncated_files(host, blob_storage):
    whole = gpkg_bytes()
    vf.upload(blob_storage, "truncated.gpkg", whole[:len(whole) // 3])
    error = fails_at_once(host, blob_storage, "truncated.gpkg")
    assert "cannot be read as gpkg" in error and "corrupt or truncated" in error
    corrupt = whole[:100] + bytes(range(256)) * 40
    vf.upload(blob_storage, "corrupt.gpkg", corrupt)
    assert "cannot be read as gpkg" in fails_at_once(host, blob_storage, "corrupt.gpkg")
    geojson = vf.written(vf.points(50), ".geojson")
    vf.upload(blob_storage, "cut.geojson", geojson[:len(geojson) // 2])
    assert "cannot be read as geojson" in fails_at_once(host, blob_storage, "cut.geojson")
    archive = vf.zipped({"a.geojson": geojson})
    vf.upload(blob_storage, "cut.zip", archive[:len(archive) // 2])
    assert "not a readable zip archive" in fails_at_once(host, blob_storage, "cut.zip")
    parquet = vf.written(vf.points(50), ".parquet")
    vf.upload(blob_storage, "cut.parquet", parquet[:len(parquet) // 2])
    assert "cannot be read as parquet" in fails_at_once(host, blob_storage, "cut.parquet")


def test_archives_that_escape_or_expand_too_far(host, blob_storage, monkeypatch):
    parts = vf.shapefile_parts(vf.points(3), "pts")
    escaping = vf.zipped({f"../../pts.{ext}": data for ext, data in parts.items()})
    vf.upload(blob_storage, "escape.zip", escaping)
    error = fails_at_once(host, blob_storage, "escape.zip")
    assert "escapes its folder" in error and "../../pts." in error
    bomb = vf.zipped({"big.geojson": b"{" + b" " * (3 * 1024 * 1024) + b"}"})
    assert len(bomb) < 100_000
    vf.upload(blob_storage, "bomb.zip", bomb)
    monkeypatch.setenv("VECTOR_MAX_EXTRACTED_MB", "1")
    reset_settings()
    assert "VECTOR_MAX_EXTRACTED_MB (1 MB)" in fails_at_once(host, blob_storage, "bomb.zip")
    monkeypatch.setenv("VECTOR_MAX_FILE_MB", "0.01")
    reset_settings()
    vf.upload(blob_storage, "big.gpkg", gpkg_bytes())
    assert "VECTOR_MAX_FILE_MB (0.01 MB)" in fails_at_once(host, blob_storage, "big.gpkg")


def test_csv_without_the_named_columns(host, blob_storage):
    vf.upload(blob_storage, "sites.csv", vf.csv_points())
    error = fails_at_once(host, blob_storage, "sites.csv",
                          converter_params={"lat_name": "lat", "lon_name": "lon"})
    assert "has no column 'lat' (converter_params.lat_name)" in error
    assert "site, Latitude, Longitude" in error
    error = fails_at_once(host, blob_storage, "sites.csv")
    assert "CSV without geometry" in error and "converter_params.lat_name" in error


def test_geopackage_layers_named(host, blob_storage):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "two.gpkg"
        vf.points(3).to_file(path, layer="wells", engine="pyogrio")
        vf.lines().to_file(path, layer="roads", engine="pyogrio")
        vf.upload(blob_storage, "two.gpkg", path.read_bytes())
    error = fails_at_once(host, blob_storage, "two.gpkg",
                          converter_params={"layer_name": "rivers"})
    assert "has no layer 'rivers'" in error and "wells, roads" in error
    error = fails_at_once(host, blob_storage, "two.gpkg")
    assert "has 2 layers (wells, roads)" in error and "layer_name" in error
    job = run(host, "ingest_vector", {"blob_name": "two.gpkg", "table_name": "roads",
                                      "converter_params": {"layer_name": "roads"}})
    assert job["status"] == "completed" and job["result_data"]["rows_loaded"] == 2


def test_shapefile_without_its_dbf_and_zip_of_several(host, blob_storage):
    parts = vf.shapefile_parts(vf.points(3), "pts")
    for ext in ("shp", "shx", "prj"):
        vf.upload(blob_storage, f"pts.{ext}", parts[ext])
    assert "without its .dbf" in fails_at_once(host, blob_storage, "pts.shp")
    other = vf.shapefile_parts(vf.lines(), "roads")
    both = {**{f"pts.{e}": d for e, d in parts.items()},
            **{f"roads.{e}": d for e, d in other.items()}}
    vf.upload(blob_storage, "both.zip", vf.zipped(both))
    error = fails_at_once(host, blob_storage, "both.zip")
    assert "holds 2 Shapefiles" in error and "converter_params.shp_name" in error
    job = run(host, "ingest_vector", {"blob_name": "both.zip", "table_name": "roads",
                                      "converter_params": {"shp_name": "roads"}})
    assert job["status"] == "completed" and job["result_data"]["rows_loaded"] == 2


def test_mixed_geometry_families_and_plain_parquet(host, blob_storage):
    import geopandas as gpd
    import pandas as pd
    from shapely.geometry import Point, box

    frame = gpd.GeoDataFrame({"k": [1, 2]}, geometry=[Point(0, 0), box(0, 0, 1, 1)],
                             crs="EPSG:4326")
    vf.upload(blob_storage, "mixed.geojson", vf.written(frame, ".geojson"))
    error = fails_at_once(host, blob_storage, "mixed.geojson")
    assert "mixes geometry types that cannot share one column: Point, Polygon" in error
    import io

    buffer = io.BytesIO()
    pd.DataFrame({"a": [1, 2]}).to_parquet(buffer)
    vf.upload(blob_storage, "plain.parquet", buffer.getvalue())
    assert "without GeoParquet's 'geo' metadata" in fails_at_once(
        host, blob_storage, "plain.parquet")
