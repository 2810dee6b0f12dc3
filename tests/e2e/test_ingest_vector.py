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
