"""ingest_vector's handlers against real Azurite and PostGIS: a chunk delivered twice (one
after the other, or at the same time) and a load that crashes halfway through its COPY
and is retried each load the chunk's rows exactly once; prepare run again starts over;
publish delivered again answers what it did."""

from __future__ import annotations

import threading
import uuid

import pytest

from infrastructure.geo_db import get_geo_database
from infrastructure.vector_staging import VectorStaging
from jobs import ALL_JOBS
from services import service_ingest_vector as ingest
from tests.e2e import vector_files as vf


def count(job_id: str) -> int:
    with get_geo_database().connection() as conn:
        return conn.execute(f'SELECT count(*) AS n FROM geo_ingest."s_{job_id[:40]}"'
                            ).fetchone()["n"]


@pytest.fixture
def prepared(blob_storage, geo_database):
    vf.upload(blob_storage, "pts.gpkg", vf.written(vf.points(300), ".gpkg"))
    params = ALL_JOBS["ingest_vector"].validate_job_parameters(
        {"blob_name": "pts.gpkg", "table_name": "pts", "chunk_size": 100})
    job_id = uuid.uuid4().hex * 2
    result = ingest.prepare(params, {"job_id": job_id})
    assert [c["rows"] for c in result["chunks"]] == [100, 100, 100]
    tasks = ALL_JOBS["ingest_vector"].create_tasks_for_stage(
        2, params, job_id, [{"result": result}])
    return job_id, params, result, [t["parameters"] for t in tasks]


def test_a_chunk_delivered_twice_loads_once(prepared):
    job_id, _, _, loads = prepared
    first = ingest.load_chunk(loads[0], {"job_id": job_id})
    again = ingest.load_chunk(loads[0], {"job_id": job_id})
    assert (first["loaded"], again["loaded"]) == (True, False)
    assert count(job_id) == 100


def test_a_chunk_delivered_twice_at_once_loads_once(prepared):
    job_id, _, _, loads = prepared
    outcomes, barrier = [], threading.Barrier(2)

    def deliver():
        barrier.wait()
        outcomes.append(ingest.load_chunk(loads[1], {"job_id": job_id})["loaded"])

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [False, True]
    assert count(job_id) == 100


@pytest.mark.parametrize("fmt", ["binary", "csv"])
def test_a_load_crashing_halfway_is_retried_and_loads_once(prepared, monkeypatch, fmt):
    job_id, _, _, loads = prepared
    from services import vector_load

    if fmt == "csv":  # every column could go in binary: the CSV path made to run
        monkeypatch.setattr(vector_load, "binary_types", lambda *args: None)
    name = f"{fmt}_blocks"
    real = getattr(vector_load, name)

    def crashing(table, *args, **kwargs):
        # half the rows reach COPY, then the crash
        yield from (real(table.slice(0, 50), *args, trailer=False) if fmt == "binary"
                    else real(table.slice(0, 50)))
        raise ConnectionResetError("worker killed halfway through the COPY")

    monkeypatch.setattr(vector_load, name, crashing)
    with pytest.raises(ConnectionResetError):
        ingest.load_chunk(loads[2], {"job_id": job_id})
    assert count(job_id) == 0  # the COPY's transaction rolled back with its ledger row
    monkeypatch.setattr(vector_load, name, real)
    assert ingest.load_chunk(loads[2], {"job_id": job_id})["loaded"] is True
    assert count(job_id) == 100


def test_prepare_again_starts_over_and_publish_again_answers_the_same(prepared):
    job_id, params, _, loads = prepared
    ingest.load_chunk(loads[0], {"job_id": job_id})
    again = ingest.prepare(params, {"job_id": job_id})  # a retry after a crash
    assert count(job_id) == 0 and len(again["chunks"]) == 3
    for load in loads:
        ingest.load_chunk(load, {"job_id": job_id})
    first = ingest.publish(params, {"job_id": job_id})
    second = ingest.publish(params, {"job_id": job_id})
    assert first["rows_loaded"] == second["rows_loaded"] == 300
    assert second["outcome"] == first["outcome"] == "created"
    with get_geo_database().connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM geo.pts").fetchone()["n"] == 300
    run = VectorStaging().run(job_id)
    assert run.state == "published"


@pytest.mark.parametrize("multi", [False, True])
def test_binary_copy_loads_what_the_csv_path_loads(geo_database, monkeypatch, multi):
    # Given a chunk with every type the binary format takes, NULLs in each, and its
    # first row sliced off (Arrow offsets not at 0)
    import numpy as np
    import pyarrow as pa
    import shapely
    from shapely.geometry import MultiPoint, Point

    from services import vector_load

    n = 7
    geoms = [Point(i, -i) if i % 2 or not multi else MultiPoint([(i, 1), (2, i)])
             for i in range(n)]
    table = pa.table({
        "id": pa.array(np.arange(1, n + 1), pa.int64()),
        "tiny": pa.array([0, 255, None, 7, 1, 2, 3], pa.uint8()),
        "small": pa.array([-32768, 32767, None, 0, 1, 2, 3], pa.int16()),
        "mid": pa.array([2 ** 31 - 1, None, -2 ** 31, 5, 6, 7, 8], pa.int32()),
        "big": pa.array([None, 2 ** 63 - 1, -2 ** 63, 0, 4, 5, 6], pa.int64()),
        "u32": pa.array([2 ** 32 - 1, 0, None, 1, 2, 3, 4], pa.uint32()),
        "f32": pa.array([1.5, None, -0.25, float("inf"), 0, 1, 2], pa.float32()),
        "f64": pa.array([0.1, 1e-300, None, -1e300, 3.14159265358979, 0, 1], pa.float64()),
        "flag": pa.array([True, False, None, True, True, False, None]),
        "label": pa.array(["a", "", None, "naïve, \"quoted\"\nline", "€", "x" * 300, "z"]),
        "geom": pa.array([shapely.to_wkb(g) for g in geoms], pa.binary()),
    }).slice(1)
    columns = [("tiny", "smallint"), ("small", "smallint"), ("mid", "integer"),
               ("big", "bigint"), ("u32", "bigint"), ("f32", "real"),
               ("f64", "double precision"), ("flag", "boolean"), ("label", "text")]
    geometry = "MultiPoint" if multi else "Point"
    # When it is loaded by the binary path and, for another job, by the CSV path
    loaded, encoded, real = {}, [], vector_load.binary_blocks
    monkeypatch.setattr(vector_load, "binary_blocks",
                        lambda *args, **kw: encoded.append(1) or real(*args, **kw))
    for fmt in ("binary", "csv"):
        job_id = uuid.uuid4().hex * 2
        if fmt == "csv":
            monkeypatch.setattr(vector_load, "binary_types", lambda *args: None)
        VectorStaging().create_staging(job_id, columns, geometry, 4326, {})
        assert vector_load.load_table(job_id, 0, table, multi) is True
        with get_geo_database().connection() as conn:
            loaded[fmt] = conn.execute(
                f'SELECT *, ST_AsEWKT(geom) AS ewkt FROM geo_ingest."s_{job_id[:40]}"'
                " ORDER BY id").fetchall()
    # Then both hold the same rows, as given
    assert encoded == [1]  # the binary path ran once, for the first job
    assert loaded["binary"] == loaded["csv"] and len(loaded["binary"]) == n - 1
    first = loaded["binary"][0]
    assert (first["id"], first["tiny"], first["u32"], first["label"]) == (2, 255, 0, "")
    assert first["ewkt"] == ("SRID=4326;MULTIPOINT(1 -1)" if multi else "SRID=4326;POINT(1 -1)")


def test_an_append_to_no_table_creates_it_indexed_and_analyzed(blob_storage, geo_database):
    # Given a file appended to a table that does not exist yet
    vf.upload(blob_storage, "new.gpkg", vf.written(vf.points(30), ".gpkg"))
    params = ALL_JOBS["ingest_vector"].validate_job_parameters(
        {"blob_name": "new.gpkg", "table_name": "fresh", "if_exists": "append"})
    job_id = uuid.uuid4().hex * 2
    # When prepare and publish run
    ingest.prepare(params, {"job_id": job_id})
    result = ingest.publish(params, {"job_id": job_id})
    # Then the table is created with its primary key, GiST index and statistics
    assert (result["outcome"], result["rows_loaded"]) == ("created", 30)
    assert result["indexes"] == ["fresh_pkey", "fresh_geom_gist"]
    with get_geo_database().connection() as conn:
        names = {r["indexname"] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'geo'"
            " AND tablename = 'fresh'").fetchall()}
        tuples = conn.execute("SELECT reltuples FROM pg_class WHERE oid = 'geo.fresh'::regclass"
                              ).fetchone()["reltuples"]
    assert names == {"fresh_pkey", "fresh_geom_gist"} and tuples == 30
