"""ingest_vector over real HTTP (the local host on a loopback port) against Azurite, the
local PostGIS server and pgstac, on files these tests make: every format, points, lines
and polygons, mixed single and multi types, curves, null and invalid geometries, a file
without a CRS, a projected CRS, awkward column names, all three if_exists modes."""

from __future__ import annotations

import pytest

from infrastructure.geo_db import get_geo_database
from infrastructure.stac_repository import StacRepository
from local_host import LocalHost
from tests.e2e import vector_files as vf
from tests.e2e.host_calls import call, run


@pytest.fixture
def host(database, blob_storage, geo_database):
    with LocalHost(port=0, close_database=False, banner=False) as running:
        yield running


def query(statement: str, *args) -> list[dict]:
    with get_geo_database().connection() as conn:
        return conn.execute(statement, args).fetchall()


def ingest(host, blob: str, table: str, **extra) -> dict:
    job = run(host, "ingest_vector", {"blob_name": blob, "table_name": table, **extra},
              timeout=120)
    assert job["status"] == "completed", job["error_details"]
    return job["result_data"]


def cleaned_up(host, job: dict, timeout: float = 30) -> dict:
    """The failed job once its cleanup task has ended (the cleanup's record)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, status = call(host, "GET", f"/api/jobs/status/{job['job_id']}")
        cleanup = status.get("cleanup") or {}
        if cleanup.get("status") in ("completed", "failed"):
            assert cleanup["status"] == "completed", cleanup
            return cleanup
        time.sleep(0.1)
    raise AssertionError(f"cleanup of {job['job_id']} did not end")


def leftovers(storage) -> list[str]:
    from config import get_settings

    return [b.name for b in storage.list_blobs(get_settings().silver_temp_container)]


def test_geopackage_points_load_with_index_and_stac_item(host, blob_storage):
    vf.upload(blob_storage, "wells.gpkg", vf.written(vf.points(25), ".gpkg"))
    r = ingest(host, "wells.gpkg", "wells")
    assert (r["rows_read"], r["rows_loaded"], r["rows_dropped"]) == (25, 25, {})
    assert r["table"] == "geo.wells" and r["chunks"] == 1
    assert (r["geometry_type"], r["srid"]) == ("Point", 4326)
    assert r["bbox"] == pytest.approx([10, 50, 10.24, 50.24])
    assert (r["stac_item_id"], r["collection_id"]) == ("postgis-geo-wells", "system-vectors")
    rows = query("SELECT id, name, value, ratio, ST_AsText(geom) AS wkt FROM geo.wells"
                 " ORDER BY id")
    assert [row["id"] for row in rows] == list(range(1, 26))
    assert rows[3]["name"] == "p3" and rows[3]["value"] == 30
    assert rows[0]["wkt"] == "POINT(10 50)"
    indexes = {row["indexname"] for row in query(
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'geo' AND tablename = 'wells'")}
    assert indexes == {"wells_pkey", "wells_geom_gist"}
    column = query("SELECT type, srid FROM geometry_columns WHERE f_table_name = 'wells'")[0]
    assert (column["type"], column["srid"]) == ("POINT", 4326)
    item = StacRepository().get_item("system-vectors", "postgis-geo-wells")
    props = item["properties"]
    assert props["table:row_count"] == 25
    assert props["geojobs:source_file"].endswith("/wells.gpkg")
    assert leftovers(blob_storage) == []
    # the same file again is the same job
    code, again = call(host, "POST", "/api/jobs/submit/ingest_vector",
                       {"blob_name": "wells.gpkg", "table_name": "wells"})
    assert code == 200 and again["status"] == "completed", again


def columns_of(table: str) -> dict[str, str]:
    rows = query("SELECT column_name, data_type FROM information_schema.columns"
                 " WHERE table_schema = 'geo' AND table_name = %s", table)
    return {r["column_name"]: r["data_type"] for r in rows}


def geometry_column(table: str) -> tuple[str, int]:
    row = query("SELECT type, srid FROM geometry_columns WHERE f_table_schema = 'geo'"
                " AND f_table_name = %s", table)[0]
    return row["type"], row["srid"]


@pytest.mark.parametrize("suffix", [".geojson", ".json", ".kml", ".parquet", ".gpkg"])
def test_each_single_file_format(host, blob_storage, suffix):
    frame = vf.points(7)
    vf.upload(blob_storage, f"dir/points{suffix}", vf.written(frame, suffix))
    r = ingest(host, f"dir/points{suffix}", "pts")
    assert (r["rows_read"], r["rows_loaded"]) == (7, 7)
    assert geometry_column("pts") == ("POINT", 4326)
    names = {row["n"] for row in query("SELECT name AS n FROM geo.pts")}
    assert names == {f"p{i}" for i in range(7)}


def test_kmz_and_zipped_shapefile_and_shapefile_with_siblings(host, blob_storage):
    kml = vf.written(vf.points(4), ".kml")
    vf.upload(blob_storage, "points.kmz", vf.zipped({"doc.kml": kml}))
    assert ingest(host, "points.kmz", "from_kmz")["rows_loaded"] == 4
    parts = vf.shapefile_parts(vf.lines(), "roads")
    vf.upload(blob_storage, "roads.zip",
              vf.zipped({f"roads/roads.{ext}": data for ext, data in parts.items()}))
    r = ingest(host, "roads.zip", "from_zip")
    assert (r["rows_loaded"], r["geometry_type"]) == (2, "LineString")
    for ext, data in parts.items():
        vf.upload(blob_storage, f"shp/roads.{ext}", data)
    r = ingest(host, "shp/roads.shp", "from_shp")
    assert r["rows_loaded"] == 2
    assert {row["road"] for row in query("SELECT road FROM geo.from_shp")} == {"A1", "B2"}


def test_csv_by_coordinates_and_by_wkt(host, blob_storage):
    vf.upload(blob_storage, "sites.csv", vf.csv_points(5))
    r = ingest(host, "sites.csv", "sites",
               converter_params={"lat_name": "latitude", "lon_name": "Longitude"})
    assert (r["rows_loaded"], r["srid"]) == (5, 4326)
    row = query("SELECT site, ST_X(geom) AS x, ST_Y(geom) AS y FROM geo.sites"
                " WHERE site = 's2'")[0]
    assert (row["x"], row["y"]) == (12, 52)
    wkt = b"name,shape\nx,\"POINT (500000 5500000)\"\ny,\"POINT (510000 5510000)\"\n"
    vf.upload(blob_storage, "utm.csv", wkt)
    job = run(host, "ingest_vector", {"blob_name": "utm.csv", "table_name": "utm",
                                      "converter_params": {"wkt_column": "shape"}})
    assert job["status"] == "failed" and "source_crs" in job["error_details"]
    r = ingest(host, "utm.csv", "utm", converter_params={"wkt_column": "shape"},
               source_crs="EPSG:32632")
    assert r["rows_loaded"] == 2 and r["srid"] == 4326
    assert "shape" not in columns_of("utm")


def test_mixed_polygons_null_empty_and_invalid(host, blob_storage):
    vf.upload(blob_storage, "mixed.gpkg", vf.written(vf.polygons_mixed(), ".gpkg"))
    r = ingest(host, "mixed.gpkg", "parcels")
    assert r["rows_read"] == 5
    assert r["rows_dropped"] == {"null_geometry": 1, "empty_geometry": 1}
    assert r["rows_loaded"] == 3 and r["rows_repaired"] == 1
    assert r["geometry_type"] == "MultiPolygon"
    assert geometry_column("parcels") == ("MULTIPOLYGON", 4326)
    rows = query("SELECT kind, ST_IsValid(geom) AS ok, ST_NumGeometries(geom) AS parts,"
                 " ST_Area(geom) AS area FROM geo.parcels ORDER BY kind")
    assert [r["kind"] for r in rows] == ["a", "b", "bowtie"]
    assert all(r["ok"] for r in rows)
    bowtie = rows[2]
    assert bowtie["parts"] == 2 and bowtie["area"] == pytest.approx(2.0)


def test_curves_are_linearized(host, blob_storage):
    vf.upload(blob_storage, "curves.gpkg", vf.curved_geopackage())
    r = ingest(host, "curves.gpkg", "curves")
    assert r["rows_loaded"] == 2 and r["geometry_type"] == "Polygon"
    circle = query("SELECT ST_Area(geom) AS area, ST_NPoints(geom) AS n,"
                   " GeometryType(geom) AS t FROM geo.curves WHERE shape = 'circle'")[0]
    assert circle["t"] == "POLYGON" and circle["n"] > 20
    assert circle["area"] == pytest.approx(3.14159, rel=0.01)


def test_file_without_crs_needs_source_crs(host, blob_storage):
    parts = vf.shapefile_parts(vf.points(3, crs=None), "nocrs")
    assert "prj" not in parts
    for ext, data in parts.items():
        vf.upload(blob_storage, f"nocrs.{ext}", data)
    job = run(host, "ingest_vector", {"blob_name": "nocrs.shp", "table_name": "nocrs"})
    assert job["status"] == "failed"
    assert "source_crs" in job["error_details"] and "never guesses" in job["error_details"]
    cleaned_up(host, job)
    assert query("SELECT count(*) AS n FROM geo_ingest.runs")[0]["n"] == 0  # no claim left
    assert leftovers(blob_storage) == []
    r = ingest(host, "nocrs.shp", "nocrs", source_crs="EPSG:4326")
    assert r["rows_loaded"] == 3


def test_projected_file_reprojected_or_kept(host, blob_storage):
    frame = vf.points(3).to_crs("EPSG:3857")
    vf.upload(blob_storage, "merc.gpkg", vf.written(frame, ".gpkg"))
    r = ingest(host, "merc.gpkg", "merc_wgs84")
    assert r["srid"] == 4326 and r["bbox"][0] == pytest.approx(10, abs=1e-6)
    r = ingest(host, "merc.gpkg", "merc_kept", target_crs="EPSG:3857")
    assert r["srid"] == 3857 and geometry_column("merc_kept") == ("POINT", 3857)
    x = query("SELECT ST_X(geom) AS x FROM geo.merc_kept ORDER BY id LIMIT 1")[0]["x"]
    assert x == pytest.approx(1113194.9, abs=1)


def test_awkward_column_names_and_types(host, blob_storage):
    import geopandas as gpd
    from shapely.geometry import Point

    frame = gpd.GeoDataFrame({
        "id": [7, 8], "Geom": ["g1", "g2"], "Name With Spaces": ["a", "b"],
        "2nd": [1.5, float("nan")],
        "naïve": ["x", "y"], "NAME_WITH_SPACES": ["c", "d"]},
        geometry=[Point(0, 0), Point(1, 1)], crs="EPSG:4326")
    vf.upload(blob_storage, "awkward.geojson", vf.written(frame, ".geojson"))
    r = ingest(host, "awkward.geojson", "awkward")
    renamed = r["columns_renamed"]
    assert renamed["id"] == "src_id" and renamed["Geom"] == "src_geom"
    assert renamed["Name With Spaces"] == "name_with_spaces"
    assert renamed["NAME_WITH_SPACES"] == "name_with_spaces_2"
    assert renamed["2nd"] == "_2nd"
    cols = columns_of("awkward")
    assert cols["_2nd"] == "double precision"
    assert "naïve" in cols
    rows = query("SELECT id, src_id, _2nd FROM geo.awkward ORDER BY id")
    assert [(r["id"], r["src_id"]) for r in rows] == [(1, 7), (2, 8)]
    assert rows[1]["_2nd"] is None  # NaN became NULL


def test_types_kept_in_a_geopackage(host, blob_storage):
    import datetime as dt

    import numpy as np
    import pandas as pd

    frame = vf.points(3)
    frame["big"] = np.array([2**62, -2**62, 7], dtype="int64")
    frame["when"] = pd.to_datetime(["2026-01-02T03:04:05+02:00"] * 3, utc=True)
    frame["flag"] = [True, False, True]
    vf.upload(blob_storage, "typed.gpkg", vf.written(frame, ".gpkg"))
    ingest(host, "typed.gpkg", "typed")
    cols = columns_of("typed")
    assert cols["big"] == "bigint" and cols["value"] == "bigint"
    assert cols["ratio"] == "double precision" and cols["name"] == "text"
    assert cols["when"] == "timestamp with time zone" and cols["flag"] == "boolean"
    row = query("SELECT big, \"when\" AS w, flag FROM geo.typed ORDER BY id LIMIT 1")[0]
    assert row["big"] == 2**62 and row["flag"] is True
    assert row["w"] == dt.datetime(2026, 1, 2, 1, 4, 5, tzinfo=dt.timezone.utc)


def test_a_kml_of_several_folders_loads_them_all(host, blob_storage):
    folders = {"Wells": [vf.kml_point(10, 50), vf.kml_point(11, 51)],
               "Springs": [vf.kml_point(12, 52)], "Empty": []}
    vf.upload(blob_storage, "sites.kml", vf.kml_folders(folders))
    r = ingest(host, "sites.kml", "sites")
    assert (r["rows_loaded"], r["geometry_type"]) == (3, "Point")
    names = sorted(row["name"] for row in query("SELECT name FROM geo.sites"))
    assert names == ["Springs-0", "Wells-0", "Wells-1"]
    r = ingest(host, "sites.kml", "springs", converter_params={"layer_name": "Springs"})
    assert r["rows_loaded"] == 1
    line = "<LineString><coordinates>10,50 11,51</coordinates></LineString>"
    vf.upload(blob_storage, "mixed.kml", vf.kml_folders({"A": [vf.kml_point(1, 2)],
                                                         "B": [line]}))
    job = run(host, "ingest_vector", {"blob_name": "mixed.kml", "table_name": "mixed"})
    assert job["status"] == "failed"
    assert "cannot share one column: LineString, Point" in job["error_details"]
