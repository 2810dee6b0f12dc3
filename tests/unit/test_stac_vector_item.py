"""The STAC item stac_catalog_vectors writes for a table (pure: no database)."""

from __future__ import annotations

from datetime import datetime, timezone

from infrastructure.postgis_catalog import TableFacts
from services.stac_vector_item import bbox_geometry, keep_creation, vector_item

RUN = datetime(2026, 12, 4, 15, 0, 0, tzinfo=timezone.utc)


def facts(bbox):
    return TableFacts("geo", "wells", "geom", 3857, 7, ["POINT"], bbox, ["geom"])


def test_the_item_has_a_deterministic_id_and_says_how_its_datetime_was_chosen():
    item = vector_item(facts([1.0, 2.0, 3.0, 4.0]), "system-vectors", "job1", RUN,
                       source_file="bronze-vectors/wells.csv")
    assert (item["id"], item["collection"], item["type"]) == (
        "postgis-geo-wells", "system-vectors", "Feature")
    props = item["properties"]
    assert (props["datetime"], props["geojobs:datetime_source"]) == (
        "2026-12-04T15:00:00Z", "catalogued_at")
    assert (props["proj:epsg"], props["table:row_count"], props["geojobs:source_file"]) == (
        3857, 7, "bronze-vectors/wells.csv")
    assert item["geometry"]["type"] == "Polygon" and item["bbox"] == [1.0, 2.0, 3.0, 4.0]
    assert item["assets"]["data"]["href"] == "postgis:geo.wells"
    given = vector_item(facts([1.0, 2.0, 3.0, 4.0]), "c", "job1", RUN,
                        source_datetime="2020-01-01T00:00:00Z")["properties"]
    assert (given["datetime"], given["geojobs:datetime_source"]) == (
        "2020-01-01T00:00:00Z", "source_datetime")


def test_a_bbox_without_area_is_a_point_or_a_line():
    assert bbox_geometry([1, 2, 1, 2]) == {"type": "Point", "coordinates": [1, 2]}
    assert bbox_geometry([1, 2, 1, 5])["type"] == "LineString"
    assert bbox_geometry([1, 2, 3, 2])["type"] == "LineString"


def test_an_update_keeps_when_and_by_which_job_the_item_was_created():
    old = vector_item(facts([0, 0, 1, 1]), "c", "job1", datetime(2025, 1, 1, tzinfo=timezone.utc))
    new = vector_item(facts([0, 0, 2, 2]), "c", "job2", RUN)
    merged = keep_creation(old, new)["properties"]
    assert (merged["created"], merged["updated"]) == ("2025-01-01T00:00:00Z",
                                                      "2026-12-04T15:00:00Z")
    assert (merged["geojobs:created_by_job"], merged["geojobs:job_id"]) == ("job1", "job2")
    assert new["properties"]["geojobs:created_by_job"] == "job2"  # the caller's is untouched
