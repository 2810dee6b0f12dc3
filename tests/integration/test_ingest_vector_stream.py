"""ingest_vector's prepare streaming a one-chunk file into its staging table while it reads
it, against real Azurite and PostGIS: a prepare that crashes halfway through its streamed
COPY leaves nothing, and its retry (or a second delivery) loads every row once; a layer
whose type changes after the first batch, or a file with more rows than its feature count
said, falls back to loading what prepare kept; the catalogue's facts from prepare are the
ones a full read of the table gives."""

from __future__ import annotations

import uuid

import geopandas as gpd
import pytest
from shapely.geometry import MultiPolygon, box

from exceptions import TransientError
from infrastructure.geo_db import get_geo_database
from infrastructure.postgis_catalog import PostgisCatalog
from infrastructure.stac_repository import StacRepository
from jobs import ALL_JOBS
from services import service_ingest_vector as ingest
from services import vector_prepare, vector_stream
from tests.e2e import vector_files as vf


def staged(job_id: str) -> dict:
    """The staging table's rows, distinct keys, smallest and largest key (None: no table)
    and the job's ledger rows."""
    with get_geo_database().connection() as conn:
        ledger = conn.execute("SELECT chunk, rows FROM geo_ingest.loaded_chunks"
                              " WHERE job_id = %s ORDER BY chunk", (job_id,)).fetchall()
        if conn.execute("SELECT to_regclass(%s) AS t", (f'geo_ingest."s_{job_id[:40]}"',)
                        ).fetchone()["t"] is None:
            return {"table": None, "ledger": ledger}
        row = conn.execute(f'SELECT count(*) AS n, count(DISTINCT id) AS ids, min(id) AS lo,'
                           f' max(id) AS hi FROM geo_ingest."s_{job_id[:40]}"').fetchone()
    return {"table": dict(row), "ledger": [dict(r) for r in ledger]}


def params_for(blob: str, table: str, **more) -> dict:
    return ALL_JOBS["ingest_vector"].validate_job_parameters(
        {"blob_name": blob, "table_name": table, **more})


@pytest.fixture
def batches_of_100(monkeypatch):
    monkeypatch.setattr(vector_prepare, "READ_BATCH", 100)
    monkeypatch.setattr(vector_prepare, "STREAM_BATCH", 100)


@pytest.fixture
def aborts(monkeypatch) -> list:
    """The rows each stream held when prepare rolled it back."""
    real, seen = vector_stream.StreamedLoad.abort, []

    def abort(self):
        seen.append(self.rows)
        real(self)

    monkeypatch.setattr(vector_stream.StreamedLoad, "abort", abort)
    return seen


@pytest.fixture
def no_fallback(monkeypatch):
    """Fails the test if prepare loads the chunk the old way (after reading it all)."""
    def refuse(*args, **kwargs):
        raise AssertionError("prepare did not stream the chunk")

    monkeypatch.setattr(vector_prepare, "load_table", refuse)


def test_a_prepare_crashing_halfway_through_its_stream_is_retried_and_loads_once(
        blob_storage, geo_database, batches_of_100, no_fallback, monkeypatch):
    # Given a one-chunk file of 300 points read in 3 batches, whose third batch's COPY
    # dies after the first two were written into the COPY
    vf.upload(blob_storage, "pts.gpkg", vf.written(vf.points(300), ".gpkg"))
    params = params_for("pts.gpkg", "pts")
    job_id = uuid.uuid4().hex * 2
    real, calls = vector_stream.binary_blocks, []

    def crashing(table, *args, **kwargs):
        calls.append(table.num_rows)
        if len(calls) == 3:
            raise ConnectionResetError("worker killed halfway through the COPY")
        yield from real(table, *args, **kwargs)

    monkeypatch.setattr(vector_stream, "binary_blocks", crashing)
    with pytest.raises(ConnectionResetError):
        ingest.prepare(params, {"job_id": job_id})
    # Then nothing of the stream stays: no staging table, no ledger row
    assert calls == [100, 100, 100]
    assert staged(job_id) == {"table": None, "ledger": []}

    # When the task is retried, and then delivered once more
    monkeypatch.setattr(vector_stream, "binary_blocks", real)
    first = ingest.prepare(params, {"job_id": job_id})
    again = ingest.prepare(params, {"job_id": job_id})
    # Then each holds every row once, keys 1 to 300, one ledger row, nothing to load
    assert first["chunks"] == again["chunks"] == [
        {"index": 0, "blob": None, "rows": 300, "first_id": 1, "loaded": True}]
    assert staged(job_id) == {"table": {"n": 300, "ids": 300, "lo": 1, "hi": 300},
                              "ledger": [{"chunk": 0, "rows": 300}]}
    assert ALL_JOBS["ingest_vector"].create_tasks_for_stage(
        2, params, job_id, [{"result": again}]) == []
    published = ingest.publish(params, {"job_id": job_id})
    assert (published["rows_loaded"], published["outcome"]) == (300, "created")
    with get_geo_database().connection() as conn:
        assert conn.execute("SELECT count(*) AS n, count(DISTINCT id) AS ids FROM geo.pts"
                            ).fetchone() == {"n": 300, "ids": 300}


def test_a_prepare_delivered_twice_at_once_loads_every_row_once(
        blob_storage, geo_database, batches_of_100, no_fallback):
    # Given one prepare task of a one-chunk file delivered twice, both run at once
    import threading

    vf.upload(blob_storage, "pts.gpkg", vf.written(vf.points(300), ".gpkg"))
    params = params_for("pts.gpkg", "pts")
    job_id = uuid.uuid4().hex * 2
    results, retried, barrier = [], [], threading.Barrier(2)

    def deliver():
        barrier.wait()
        try:
            results.append(ingest.prepare(params, {"job_id": job_id})["chunks"])
        except TransientError as exc:  # the engine tries it again later
            retried.append(str(exc))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then each ends loaded, or (when both claimed at the same instant) the second is
    # told to try again, never that its own job holds the table; the table and the
    # ledger hold every row once
    assert len(results) + len(retried) == 2 and results
    assert all(chunks[0]["loaded"] for chunks in results)
    assert all("another delivery of this job's prepare" in r for r in retried)
    assert staged(job_id) == {"table": {"n": 300, "ids": 300, "lo": 1, "hi": 300},
                              "ledger": [{"chunk": 0, "rows": 300}]}


def test_a_type_that_changes_after_the_first_batch_falls_back_to_the_kept_chunk(
        blob_storage, geo_database, batches_of_100, aborts):
    # Given 150 polygons, then 150 multipolygons: the first batch says Polygon
    polygons = [box(i, 0, i + 0.5, 0.5) for i in range(150)]
    multis = [MultiPolygon([box(i, 2, i + 0.5, 2.5), box(i, 3, i + 0.5, 3.5)])
              for i in range(150)]
    frame = gpd.GeoDataFrame({"n": range(300)}, geometry=polygons + multis,
                             crs="EPSG:4326")
    vf.upload(blob_storage, "mixed.gpkg",
              vf.written(frame, ".gpkg", promote_to_multi=False))
    params = params_for("mixed.gpkg", "mixed")
    job_id = uuid.uuid4().hex * 2
    # When prepare runs
    result = ingest.prepare(params, {"job_id": job_id})
    # Then the stream of the first batch was rolled back, and the table is MultiPolygon
    # with every row once, the singles wrapped
    assert aborts == [100]
    assert (result["geometry_type"], result["promote_to_multi"]) == ("MultiPolygon", True)
    assert staged(job_id)["table"] == {"n": 300, "ids": 300, "lo": 1, "hi": 300}
    with get_geo_database().connection() as conn:
        types = conn.execute(f'SELECT DISTINCT ST_GeometryType(geom) AS t'
                             f' FROM geo_ingest."s_{job_id[:40]}"').fetchall()
    assert [r["t"] for r in types] == ["ST_MultiPolygon"]


def test_more_rows_than_the_feature_count_said_fall_back_to_chunks(
        blob_storage, geo_database, batches_of_100, aborts, monkeypatch):
    # Given a file whose feature count says 50 rows where 300 are read in batches of 100
    # into chunks of 150: the stream starts, then the first chunk fills
    from services.vector_reader import OgrReader

    real_info = OgrReader.info

    def understated(self):
        info = real_info(self)
        info.features = 50
        return info

    monkeypatch.setattr(OgrReader, "info", understated)
    vf.upload(blob_storage, "pts.gpkg", vf.written(vf.points(300), ".gpkg"))
    params = params_for("pts.gpkg", "pts", chunk_size=150)
    job_id = uuid.uuid4().hex * 2
    # When prepare runs and the load tasks load its chunks
    result = ingest.prepare(params, {"job_id": job_id})
    assert [c["rows"] for c in result["chunks"]] == [150, 150] and aborts == [100]
    assert staged(job_id) == {"table": {"n": 0, "ids": 0, "lo": None, "hi": None},
                              "ledger": []}
    for task in ALL_JOBS["ingest_vector"].create_tasks_for_stage(
            2, params, job_id, [{"result": result}]):
        ingest.load_chunk(task["parameters"], {"job_id": job_id})
    # Then every row is there once
    assert staged(job_id)["table"] == {"n": 300, "ids": 300, "lo": 1, "hi": 300}


@pytest.mark.parametrize("target_crs", ["EPSG:4326", "EPSG:3857"])
def test_the_catalogue_facts_from_prepare_are_the_tables_own(
        blob_storage, geo_database, target_crs, no_fallback, monkeypatch):
    # Given polygons and multipolygons (promoted), one invalid and repaired
    vf.upload(blob_storage, "poly.gpkg", vf.written(vf.polygons_mixed(), ".gpkg"))
    params = params_for("poly.gpkg", "poly", target_crs=target_crs)
    job_id = uuid.uuid4().hex * 2
    # When the job's prepare and publish run
    ingest.prepare(params, {"job_id": job_id})
    with monkeypatch.context() as patch:
        patch.setattr(PostgisCatalog, "describe", lambda *a: pytest.fail("table read"))
        published = ingest.publish(params, {"job_id": job_id})
    # Then, without reading the table for them, the item says what a full read says
    facts = PostgisCatalog().describe("geo", "poly")
    assert facts.row_count == published["rows_loaded"] == 3
    assert published["bbox"] == facts.bbox
    item = StacRepository().get_item("system-vectors", published["stac_item_id"])
    assert item["bbox"] == facts.bbox
    assert item["properties"]["table:row_count"] == 3
    assert item["properties"]["geojobs:geometry_types"] == facts.geometry_types \
        == ["MULTIPOLYGON"]
