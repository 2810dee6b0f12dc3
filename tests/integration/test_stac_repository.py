"""The STAC repository (pgstac's own functions) and the PostGIS table catalogue against a
real PostGIS server and pgstac: a collection created once under concurrency, an item
inserted then updated, search by collection and bbox, and the facts of tables in EPSG:4326
and projected SRIDs, empty, and without a geometry column."""

from __future__ import annotations

import math
import threading

import pytest

from exceptions import RequirementError
from infrastructure.geo_db import get_geo_database
from infrastructure.postgis_catalog import PostgisCatalog, PostgisTableError
from infrastructure.resources import Resources
from infrastructure.stac_repository import StacRepository
from infrastructure.submit_checks import geo_table_exists, geo_vector_table

R = 6378137.0  # the Web Mercator sphere


def mercator_to_lonlat(x: float, y: float) -> tuple[float, float]:
    return (math.degrees(x / R), math.degrees(2 * math.atan(math.exp(y / R)) - math.pi / 2))


def sql(*statements: str) -> None:
    with get_geo_database().connection() as conn:
        for statement in statements:
            conn.execute(statement)


def item(item_id: str, bbox: list[float], collection: str = "test-items",
         **properties) -> dict:
    x0, y0, x1, y1 = bbox
    return {"type": "Feature", "stac_version": "1.0.0", "id": item_id,
            "collection": collection, "bbox": bbox,
            "geometry": {"type": "Polygon", "coordinates": [
                [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]},
            "properties": {"datetime": "2026-01-31T12:00:00Z", **properties},
            "assets": {}, "links": []}


def keep_created(previous: dict, new: dict) -> dict:
    return {**new, "properties": {**new["properties"],
                                  "created": previous["properties"]["created"]}}


# -- the STAC repository ----------------------------------------------------------------
def test_a_collection_is_created_once_when_many_ask_at_once(geo_database):
    # Given eight writers starting together
    stac = StacRepository()
    barrier = threading.Barrier(8)
    created, errors = [], []

    def ensure():
        try:
            barrier.wait()
            created.append(stac.ensure_collection("system-vectors", "PostGIS tables"))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=ensure) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one created it, none failed, and it is a STAC collection
    assert errors == []
    assert sorted(created) == [False] * 7 + [True]
    collection = stac.get_collection("system-vectors")
    assert collection["type"] == "Collection" and collection["description"] == "PostGIS tables"
    assert stac.ensure_collection("system-vectors", "other") is False


def test_an_item_is_inserted_then_updated_and_read_back(geo_database):
    stac = StacRepository()
    stac.ensure_collection("test-items", "test")
    # When an item is written twice under the same id
    first = stac.upsert_item(item("a", [10, 50, 11, 51], rows=1, created="2026-01-01T00:00:00Z"))
    second = stac.upsert_item(item("a", [10, 50, 12, 52], rows=2, created="2026-02-02T00:00:00Z"),
                              merge=keep_created)
    # Then the first is an insert, the second an update that kept the item's creation
    assert (first.outcome, first.previous) == ("inserted", None)
    assert second.outcome == "updated" and second.previous["properties"]["rows"] == 1
    stored = stac.get_item("test-items", "a")
    assert stored["bbox"] == [10, 50, 12, 52]
    assert stored["properties"]["rows"] == 2
    assert stored["properties"]["created"] == "2026-01-01T00:00:00Z"
    assert stac.get_item("test-items", "missing") is None
    assert len(stac.search(["test-items"])) == 1


def test_concurrent_writers_of_one_item_report_one_insert(geo_database):
    stac = StacRepository()
    stac.ensure_collection("test-items", "test")
    barrier = threading.Barrier(6)
    outcomes = []

    def write(n):
        barrier.wait()
        outcomes.append(stac.upsert_item(item("same", [0, 0, 1 + n, 1])).outcome)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["inserted"] + ["updated"] * 5


def test_search_by_collection_and_bbox(geo_database):
    stac = StacRepository()
    stac.ensure_collection("test-items", "test")
    stac.ensure_collection("elsewhere", "test")
    stac.upsert_item(item("paris", [2.2, 48.8, 2.5, 48.9]))
    stac.upsert_item(item("oslo", [10.6, 59.8, 10.9, 60.0]))
    stac.upsert_item(item("paris-too", [2.2, 48.8, 2.5, 48.9], collection="elsewhere"))

    def ids(**query):
        return sorted(f["id"] for f in stac.search(**query))

    assert ids(collections=["test-items"]) == ["oslo", "paris"]
    assert ids(collections=["test-items"], bbox=[2, 48, 3, 49]) == ["paris"]
    assert ids(collections=["test-items"], bbox=[-80, -10, -70, 0]) == []
    assert ids(collections=["test-items", "elsewhere"], bbox=[2, 48, 3, 49]) == [
        "paris", "paris-too"]
    assert ids(collections=["test-items"], ids=["oslo"]) == ["oslo"]


# -- the PostGIS table catalogue ----------------------------------------------------------
def test_points_in_4326(geo_database):
    sql("CREATE TABLE geo.wells (id int, name text, geom geometry(Point, 4326))",
        "INSERT INTO geo.wells VALUES (1, 'a', 'SRID=4326;POINT(10 50)'),"
        " (2, 'b', 'SRID=4326;POINT(12.5 52.25)'), (3, 'c', NULL)")
    facts = PostgisCatalog().describe("geo", "wells")
    assert (facts.geometry_column, facts.srid, facts.row_count) == ("geom", 4326, 3)
    assert facts.geometry_types == ["POINT"]
    assert facts.bbox == pytest.approx([10, 50, 12.5, 52.25])


def test_a_projected_srid_gives_a_bbox_in_4326(geo_database):
    # Given polygons in Web Mercator (EPSG:3857), in a schema-qualified mixed-case table
    x0, y0, x1, y1 = 1_000_000.0, 6_000_000.0, 1_500_000.0, 6_800_000.0
    sql('CREATE TABLE geo."Parcels" (gid serial, the_geom geometry(MultiPolygon, 3857))',
        f"INSERT INTO geo.\"Parcels\" (the_geom) VALUES"
        f" (ST_Multi(ST_MakeEnvelope({x0}, {y0}, {x0 + 1000}, {y0 + 1000}, 3857))),"
        f" (ST_Multi(ST_MakeEnvelope({x1 - 1000}, {y1 - 1000}, {x1}, {y1}, 3857)))")
    facts = PostgisCatalog().describe("geo", "Parcels")
    # Then the extent is in longitude and latitude, as the spherical formulas say
    lon0, lat0 = mercator_to_lonlat(x0, y0)
    lon1, lat1 = mercator_to_lonlat(x1, y1)
    assert facts.bbox == pytest.approx([lon0, lat0, lon1, lat1], abs=1e-7)
    assert facts.bbox == pytest.approx([8.983153, 47.353705, 13.474729, 51.999306], abs=1e-5)
    assert (facts.srid, facts.geometry_column, facts.geometry_types) == (
        3857, "the_geom", ["MULTIPOLYGON"])


def test_a_utm_zone_and_an_unconstrained_column_with_mixed_types(geo_database):
    # EPSG:32632 (UTM 32N): x 500000 is the central meridian, 9 degrees east; there the
    # latitudes are the footpoint latitudes of the northings (the series formulas)
    sql("CREATE TABLE geo.survey (geom geometry)",
        "INSERT INTO geo.survey VALUES ('SRID=32632;POINT(500000 5000000)'),"
        " ('SRID=32632;LINESTRING(500000 5000000, 500000 5100000)')")
    facts = PostgisCatalog().describe("geo", "survey")
    assert facts.srid == 32632 and facts.geometry_types == ["LINESTRING", "POINT"]
    assert facts.bbox[0] == pytest.approx(9.0) and facts.bbox[2] == pytest.approx(9.0)
    assert facts.bbox[1] == pytest.approx(45.153477, abs=1e-5)
    assert facts.bbox[3] == pytest.approx(46.053574, abs=1e-5)


def test_an_empty_table_has_no_extent(geo_database):
    sql("CREATE TABLE geo.empty (geom geometry(Polygon, 4326))")
    catalog = PostgisCatalog()
    facts = catalog.describe("geo", "empty")
    assert (facts.row_count, facts.geometry_types, facts.bbox) == (0, [], None)
    assert catalog.has_geometries("geo", "empty", "geom") is False


def test_a_table_without_a_geometry_column_or_missing_is_named(geo_database):
    sql("CREATE TABLE geo.plain (id int, name text)")
    catalog = PostgisCatalog()
    with pytest.raises(PostgisTableError, match="table geo.plain has no geometry column") as exc:
        catalog.describe("geo", "plain")
    assert exc.value.resource == "geo.plain"
    with pytest.raises(PostgisTableError, match="table geo.nothing does not exist"):
        catalog.geometry_column("geo", "nothing")
    assert catalog.exists("geo", "plain") and not catalog.exists("geo", "nothing")


def test_geometries_without_an_srid_are_refused(geo_database):
    sql("CREATE TABLE geo.nosrid (geom geometry)",
        "INSERT INTO geo.nosrid VALUES ('POINT(1 2)')")
    with pytest.raises(PostgisTableError, match="has no SRID"):
        PostgisCatalog().describe("geo", "nosrid")



def test_the_geospatial_submit_checks_look_in_the_geospatial_database(geo_database, database):
    # Given a table in the geospatial database only (not in the engine's)
    sql("CREATE TABLE geo.roads (geom geometry(LineString, 4326))")
    resources = Resources()
    geo_table_exists(resources, "geo", "roads")
    with pytest.raises(RequirementError, match="table geo.rivers does not exist") as exc:
        geo_table_exists(resources, "geo", "rivers")
    assert exc.value.resource == "geo.rivers"
    with pytest.raises(RequirementError, match="geo.roads has no rows with a geometry"):
        geo_vector_table(resources, "geo", "roads")
    sql("INSERT INTO geo.roads VALUES ('SRID=4326;LINESTRING(0 0, 1 1)')")
    geo_vector_table(resources, "geo", "roads")
    assert not resources.tables.exists("geo", "roads")
