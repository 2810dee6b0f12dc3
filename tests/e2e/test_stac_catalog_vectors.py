"""stac_catalog_vectors over real HTTP (the local host on a loopback port) against the local
PostGIS server and pgstac: tables this test creates (points, polygons, a projected SRID,
an empty table, one without a geometry column), the item read back through pgstac's
search, a second run updating it, and bad input answered 400 naming it."""

from __future__ import annotations

import pytest

from infrastructure.geo_db import get_geo_database
from infrastructure.stac_repository import StacRepository
from local_host import LocalHost
from tests.e2e.host_calls import call, run


@pytest.fixture
def host(database, geo_database):
    with LocalHost(port=0, close_database=False, banner=False) as running:
        yield running


def sql(*statements: str) -> None:
    with get_geo_database().connection() as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture
def tables(geo_database):
    sql("CREATE TABLE geo.wells (id int, geom geometry(Point, 4326))",
        "INSERT INTO geo.wells VALUES (1, 'SRID=4326;POINT(10 50)'),"
        " (2, 'SRID=4326;POINT(12.5 52.25)'), (3, NULL)",
        "CREATE TABLE geo.fields (id int, geom geometry(Geometry, 4326))",
        "INSERT INTO geo.fields VALUES"
        " (1, 'SRID=4326;POLYGON((-3 40, -2 40, -2 41, -3 41, -3 40))'),"
        " (2, 'SRID=4326;MULTIPOLYGON(((1 42, 2 42, 2 43, 1 42)))')",
        # Web Mercator: 1,000,000 m east, 6,000,000 m north .. 1,500,000, 6,800,000
        "CREATE TABLE geo.parcels_3857 (gid serial, shape geometry(Polygon, 3857))",
        "INSERT INTO geo.parcels_3857 (shape) VALUES"
        " (ST_MakeEnvelope(1000000, 6000000, 1500000, 6800000, 3857))",
        "CREATE TABLE geo.empty (geom geometry(Point, 4326))",
        "CREATE TABLE geo.plain (id int, name text)")


def catalog(host, table, **extra) -> dict:
    job = run(host, "stac_catalog_vectors", {"table_name": table, **extra})
    assert job["status"] == "completed", job["error_details"]
    return job["result_data"]


def test_points_are_catalogued_and_found_through_pgstac_search(host, tables):
    r = catalog(host, "wells", source_file="bronze-vectors/wells.gpkg",
                source_datetime="2026-03-01T08:00:00+01:00")
    assert r["item_id"] == "postgis-geo-wells" and r["collection"] == "system-vectors"
    assert r["outcome"] == "inserted"
    assert r["bbox"] == pytest.approx([10, 50, 12.5, 52.25])
    assert (r["row_count"], r["geometry_types"], r["srid"]) == (3, ["POINT"], 4326)
    assert (r["datetime"], r["datetime_source"]) == ("2026-03-01T07:00:00Z", "source_datetime")
    # The item is in pgstac, found by its collection and a bbox around it, not elsewhere
    stac = StacRepository()
    found = stac.search(["system-vectors"], bbox=[11, 51, 11.5, 51.5])
    assert [f["id"] for f in found] == ["postgis-geo-wells"]
    assert stac.search(["system-vectors"], bbox=[100, -10, 101, -9]) == []
    item = found[0]
    props = item["properties"]
    assert props["table:row_count"] == 3 and props["proj:epsg"] == 4326
    assert props["geojobs:geometry_types"] == ["POINT"]
    assert props["geojobs:source_file"] == "bronze-vectors/wells.gpkg"
    assert props["datetime"] == "2026-03-01T07:00:00Z"
    assert item["assets"]["data"]["href"] == "postgis:geo.wells"
    assert stac.get_collection("system-vectors")["type"] == "Collection"


def test_polygons_and_a_projected_srid(host, tables):
    r = catalog(host, "fields", collection_id="farm.fields_v1")
    assert r["collection"] == r["collection_id"] == "farm.fields_v1"
    assert r["outcome"] == "inserted"
    assert r["geometry_types"] == ["MULTIPOLYGON", "POLYGON"]
    assert r["bbox"] == pytest.approx([-3, 40, 2, 43])
    assert r["datetime_source"] == "catalogued_at"

    r = catalog(host, "parcels_3857")
    assert (r["srid"], r["row_count"], r["geometry_types"]) == (3857, 1, ["POLYGON"])
    # in degrees, not metres
    assert r["bbox"] == pytest.approx([8.983153, 47.353705, 13.474729, 51.999306], abs=1e-5)
    item = StacRepository().get_item("system-vectors", "postgis-geo-parcels_3857")
    assert item["geometry"]["type"] == "Polygon" and item["properties"]["proj:epsg"] == 3857


def test_running_twice_updates_the_item(host, tables):
    first = catalog(host, "wells")
    sql("INSERT INTO geo.wells VALUES (4, 'SRID=4326;POINT(20 60)')")
    # The same parameters are the same job; a snapshot catalogues the table again
    code, again = call(host, "POST", "/api/jobs/submit/stac_catalog_vectors",
                       {"table_name": "wells"})
    assert code == 200 and again["idempotent"]
    second = catalog(host, "wells", snapshot="after-load")
    assert (first["outcome"], second["outcome"]) == ("inserted", "updated")
    assert second["item_id"] == first["item_id"]
    assert second["row_count"] == 4 and second["bbox"] == pytest.approx([10, 50, 20, 60])
    items = StacRepository().search(["system-vectors"], ids=["postgis-geo-wells"])
    assert len(items) == 1 and items[0]["properties"]["table:row_count"] == 4
    # the item keeps which job created it
    assert items[0]["properties"]["geojobs:created_by_job"] != \
        items[0]["properties"]["geojobs:job_id"]


def test_bad_tables_and_input_are_a_400_naming_them_and_nothing_is_stored(host, tables,
                                                                         database):
    def refused(params):
        code, body = call(host, "POST", "/api/jobs/submit/stac_catalog_vectors", params)
        assert code == 400, body
        return body

    body = refused({"table_name": "plain"})
    assert (body["parameter"], body["resource"]) == ("table_name", "geo.plain")
    assert "table geo.plain has no geometry column" in body["error"]
    body = refused({"table_name": "nowhere"})
    assert body["resource"] == "geo.nowhere" and "does not exist" in body["error"]
    body = refused({"table_name": "empty"})
    assert body["resource"] == "geo.empty" and "no rows with a geometry" in body["error"]
    body = refused({"table_name": "wells", "schema": "public"})
    assert body["parameter"] == "schema"
    assert "allowed schemas (geo; GEO_ALLOWED_SCHEMAS), got 'public'" in body["error"]
    body = refused({"table_name": "wells", "collection_id": "Bad Name"})
    assert body["parameter"] == "collection_id" and "lowercase letters" in body["error"]
    body = refused({"table_name": "1; DROP TABLE x"})
    assert body["parameter"] == "table_name" and "underscores" in body["error"]
    body = refused({})
    assert body["parameter"] == "table_name"
    with database.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM app.jobs").fetchone()["n"] == 0
    assert StacRepository().get_collection("system-vectors") is None

