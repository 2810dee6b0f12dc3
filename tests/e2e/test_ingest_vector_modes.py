"""ingest_vector's table handling over real HTTP against Azurite, PostGIS and pgstac:
if_exists fail (a 400 at submit), replace and append (and an append that does not fit),
one job at a time per table, several chunks, attribute indexes, simplify and snap to grid,
and the STAC item's datetime from the source blob."""

from __future__ import annotations

import pytest

from infrastructure.stac_repository import StacRepository
from tests.e2e import vector_files as vf
from tests.e2e.host_calls import call, run
from tests.e2e.test_ingest_vector import cleaned_up, geometry_column, host, ingest, \
    leftovers, query  # noqa: F401 (host is a fixture)


def test_if_exists_fail_is_a_400_at_submit(host, blob_storage):
    vf.upload(blob_storage, "a.gpkg", vf.written(vf.points(3), ".gpkg"))
    vf.upload(blob_storage, "b.gpkg", vf.written(vf.points(4), ".gpkg"))
    ingest(host, "a.gpkg", "wells")
    code, body = call(host, "POST", "/api/jobs/submit/ingest_vector",
                      {"blob_name": "b.gpkg", "table_name": "wells"})
    assert code == 400, body
    assert body["parameter"] == "table_name" and body["resource"] == "geo.wells"
    assert "already exists" in body["error"]


def test_replace_swaps_the_table_and_updates_the_item(host, blob_storage):
    vf.upload(blob_storage, "a.gpkg", vf.written(vf.points(3), ".gpkg"))
    vf.upload(blob_storage, "b.geojson", vf.written(vf.lines(), ".geojson"))
    first = ingest(host, "a.gpkg", "things")
    assert first["outcome"] == "created"
    r = ingest(host, "b.geojson", "things", if_exists="replace")
    assert (r["outcome"], r["rows_loaded"], r["geometry_type"]) == ("replaced", 2,
                                                                    "LineString")
    assert geometry_column("things") == ("LINESTRING", 4326)
    assert query("SELECT count(*) AS n FROM geo.things")[0]["n"] == 2
    indexes = {row["indexname"] for row in query(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'things'")}
    assert indexes == {"things_pkey", "things_geom_gist"}
    item = StacRepository().get_item("system-vectors", "postgis-geo-things")
    assert item["properties"]["table:row_count"] == 2
    assert item["properties"]["geojobs:source_file"].endswith("b.geojson")
    # nothing of either job is left in the staging schema
    assert query("SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'geo_ingest'"
                 " AND tablename LIKE 's\\_%%'")[0]["n"] == 0


def test_append_adds_rows_and_a_misfit_fails_naming_the_difference(host, blob_storage):
    vf.upload(blob_storage, "a.gpkg", vf.written(vf.points(3), ".gpkg"))
    second = vf.points(2)
    second["name"] = ["q0", "q1"]
    vf.upload(blob_storage, "b.gpkg", vf.written(second, ".gpkg"))
    ingest(host, "a.gpkg", "pts")
    r = ingest(host, "b.gpkg", "pts", if_exists="append")
    assert (r["outcome"], r["rows_loaded"]) == ("appended", 2)
    rows = query("SELECT id, name FROM geo.pts ORDER BY id")
    assert [row["id"] for row in rows] == [1, 2, 3, 4, 5]
    assert [row["name"] for row in rows][3:] == ["q0", "q1"]
    other = vf.points(2).drop(columns=["ratio"])
    other["extra"] = ["x", "y"]
    vf.upload(blob_storage, "c.gpkg", vf.written(other, ".gpkg"))
    job = run(host, "ingest_vector", {"blob_name": "c.gpkg", "table_name": "pts",
                                      "if_exists": "append"}, timeout=120)
    assert job["status"] == "failed"
    error = job["error_details"]
    assert "columns in the file but not in the table: extra" in error
    assert "columns in the table but not in the file: ratio" in error
    cleaned_up(host, job)
    assert query("SELECT count(*) AS n FROM geo.pts")[0]["n"] == 5  # unchanged
    # its staging table, claim and chunks are gone with the failed job
    assert query("SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'geo_ingest'"
                 " AND tablename LIKE 's\\_%%'")[0]["n"] == 0
    assert query("SELECT count(*) AS n FROM geo_ingest.runs WHERE state = 'loading'"
                 )[0]["n"] == 0
    assert leftovers(blob_storage) == []
    lines = vf.lines()
    vf.upload(blob_storage, "d.geojson", vf.written(lines, ".geojson"))
    ingest(host, "d.geojson", "roads")
    vf.upload(blob_storage, "e.geojson", vf.written(lines.to_crs("EPSG:3857"), ".geojson"))
    job = run(host, "ingest_vector", {"blob_name": "e.geojson", "table_name": "roads",
                                      "if_exists": "append", "target_crs": "EPSG:3857"},
              timeout=120)
    assert job["status"] == "failed"
    assert "column geom's geometry type and SRID: geometry(LineString,3857) in the file, " \
           "geometry(LineString,4326) in the table" in job["error_details"]


def test_a_second_job_on_the_same_table_fails_naming_the_first(host, blob_storage):
    vf.upload(blob_storage, "a.gpkg", vf.written(vf.points(3), ".gpkg"))
    holder = "f" * 64
    query("INSERT INTO geo_ingest.runs (job_id, target_schema, target_table, staging)"
          " VALUES (%s, 'geo', 'busy', 's_x') RETURNING job_id", holder)
    job = run(host, "ingest_vector", {"blob_name": "a.gpkg", "table_name": "busy"})
    assert job["status"] == "failed"
    assert f"being loaded by ingest_vector job {holder}" in job["error_details"]
    cleaned_up(host, job)
    holders = [r["job_id"] for r in query("SELECT job_id FROM geo_ingest.runs")]
    assert holders == [holder]  # the other job's claim is not touched


def test_several_chunks_keys_in_order_and_attribute_indexes(host, blob_storage):
    vf.upload(blob_storage, "many.parquet", vf.written(vf.points(250), ".parquet"))
    r = ingest(host, "many.parquet", "many", chunk_size=100,
               indexes={"attributes": ["name", "Value"]})
    assert (r["chunks"], r["rows_loaded"]) == (3, 250)
    ids = [row["id"] for row in query("SELECT id FROM geo.many ORDER BY id")]
    assert ids == list(range(1, 251))
    indexes = {row["indexname"] for row in query(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'many'")}
    assert indexes == {"many_pkey", "many_geom_gist", "many_name_idx", "many_value_idx"}
    assert leftovers(blob_storage) == []
    job = run(host, "ingest_vector", {"blob_name": "many.parquet", "table_name": "few",
                                      "indexes": {"attributes": ["nope"],
                                                  "spatial": False}})
    assert job["status"] == "failed"
    assert "indexes.attributes names nope" in job["error_details"]
    assert "name, value, ratio" in job["error_details"]


def test_no_spatial_index_simplify_and_snap(host, blob_storage):
    import geopandas as gpd
    from shapely.geometry import LineString

    wiggly = LineString([(i * 0.001, 0.0001 * (i % 2)) for i in range(1001)])
    frame = gpd.GeoDataFrame({"n": [1]}, geometry=[wiggly], crs="EPSG:4326")
    vf.upload(blob_storage, "wiggly.geojson", vf.written(frame, ".geojson"))
    ingest(host, "wiggly.geojson", "raw", indexes={"spatial": False})
    assert {row["indexname"] for row in query(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'raw'")} == {"raw_pkey"}
    ingest(host, "wiggly.geojson", "simple",
           geometry_params={"simplify": {"tolerance": 0.01}})
    points = query("SELECT ST_NPoints(geom) AS n FROM geo.simple")[0]["n"]
    assert points == 2
    ingest(host, "wiggly.geojson", "snapped",
           geometry_params={"quantize": {"snap_to_grid": 0.01}})
    x = query("SELECT ST_X(ST_PointN(geom, 2)) AS x FROM geo.snapped")[0]["x"]
    assert round(x / 0.01, 6) == round(x / 0.01)


def test_item_datetime_is_the_source_blobs_last_modified(host, blob_storage):
    vf.upload(blob_storage, "a.gpkg", vf.written(vf.points(3), ".gpkg"))
    modified = blob_storage.get_properties(vf.bronze(), "a.gpkg").last_modified
    r = ingest(host, "a.gpkg", "dated")
    item = StacRepository().get_item(r["collection_id"], r["stac_item_id"])
    from datetime import datetime

    stamp = datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))
    assert stamp == modified
    assert item["properties"]["geojobs:job_id"]


@pytest.mark.parametrize("bad,parameter", [
    ({"table_name": "9lives"}, "table_name"),
    ({"schema": "public"}, "schema"),
    ({"if_exists": "merge"}, "if_exists"),
    ({"chunk_size": 50}, "chunk_size"),
    ({"target_crs": "EPSG:999999"}, "target_crs"),
    ({"blob_name": "notes.txt"}, "file_extension"),
    ({"converter_params": {"lat_name": "y"}}, "converter_params.lon_name"),
    ({"converter_params": {"shp_name": "x"}}, "converter_params.shp_name"),
    ({"blob_name": "missing.gpkg"}, "blob_name"),
])
def test_bad_parameters_are_a_400_naming_them(host, blob_storage, bad, parameter):
    vf.upload(blob_storage, "a.gpkg", vf.written(vf.points(3), ".gpkg"))
    body = {"blob_name": "a.gpkg", "table_name": "t", **bad}
    code, answer = call(host, "POST", "/api/jobs/submit/ingest_vector", body)
    assert code == 400, answer
    assert answer["parameter"] == parameter, answer


def test_append_to_a_table_made_elsewhere_with_its_own_key(host, blob_storage):
    from infrastructure.geo_db import get_geo_database

    with get_geo_database().connection() as conn:
        conn.execute("CREATE TABLE geo.external (ogc_fid serial PRIMARY KEY, name text,"
                     " value bigint, ratio double precision, geom geometry(Point, 4326))")
        conn.execute("INSERT INTO geo.external (name, value, ratio, geom) VALUES"
                     " ('old', 1, 0.5, 'SRID=4326;POINT(1 1)')")
    vf.upload(blob_storage, "a.gpkg", vf.written(vf.points(3), ".gpkg"))
    r = ingest(host, "a.gpkg", "external", if_exists="append")
    assert (r["outcome"], r["rows_loaded"]) == ("appended", 3)
    rows = query("SELECT ogc_fid, name FROM geo.external ORDER BY ogc_fid")
    assert [(row["ogc_fid"], row["name"]) for row in rows] == [
        (1, "old"), (2, "p0"), (3, "p1"), (4, "p2")]
