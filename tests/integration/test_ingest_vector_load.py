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


def test_a_load_crashing_halfway_is_retried_and_loads_once(prepared, monkeypatch):
    job_id, _, _, loads = prepared
    from services import vector_load

    real = vector_load.csv_blocks

    def crashing(table):
        blocks = real(table.slice(0, 50))  # half the rows reach COPY, then the crash
        yield from blocks
        raise ConnectionResetError("worker killed halfway through the COPY")

    monkeypatch.setattr(vector_load, "csv_blocks", crashing)
    with pytest.raises(ConnectionResetError):
        ingest.load_chunk(loads[2], {"job_id": job_id})
    assert count(job_id) == 0  # the COPY's transaction rolled back with its ledger row
    monkeypatch.setattr(vector_load, "csv_blocks", real)
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
