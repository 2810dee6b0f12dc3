"""stac_catalog_vectors' handler in-process against a real PostGIS and pgstac: what the
submit check cannot see (a table emptied after submit) and a task delivered twice."""

from __future__ import annotations

import pytest

from exceptions import PermanentError
from infrastructure.geo_db import get_geo_database
from infrastructure.stac_repository import StacRepository
from services.service_stac_catalog_vectors import stac_catalog_vectors


def sql(*statements: str) -> None:
    with get_geo_database().connection() as conn:
        for statement in statements:
            conn.execute(statement)


def test_the_handler_refuses_a_table_emptied_after_submit_and_tolerates_a_redelivery(
        geo_database):
    # Given a table that passed the submit check, then lost its rows
    sql("CREATE TABLE geo.shrinking (geom geometry(Point, 4326))")
    params = {"schema": "geo", "table_name": "shrinking", "collection_id": "system-vectors"}
    # Then its task fails permanently, naming the table, and writes nothing
    with pytest.raises(PermanentError, match="table geo.shrinking has no geometries"):
        stac_catalog_vectors(params, {"job_id": "j1"})
    assert StacRepository().get_collection("system-vectors") is None
    # A task delivered twice reports its own insert both times; another job, an update
    sql("INSERT INTO geo.shrinking VALUES ('SRID=4326;POINT(1 2)')")
    outcomes = [stac_catalog_vectors(params, {"job_id": job})["outcome"]
                for job in ("j1", "j1", "j2")]
    assert outcomes == ["inserted", "inserted", "updated"]
    stored = StacRepository().get_item("system-vectors", "postgis-geo-shrinking")
    assert stored["geometry"] == {"type": "Point", "coordinates": [1, 2]}
    assert (stored["properties"]["geojobs:created_by_job"],
            stored["properties"]["geojobs:job_id"]) == ("j1", "j2")
