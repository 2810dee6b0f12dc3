"""The container jobs when the world moves under them (against real Azurite): a blob
deleted between listing and analysis, storage failing mid-job, a scan near its time
budget. The engine's harness delivers the messages, so each step happens when the test
says."""

from __future__ import annotations

import io
import threading

from azure.storage.blob import BlobServiceClient

from config import JOBS_QUEUE, TASKS_QUEUE
from infrastructure.blob_storage import BlobStorage, get_blob_storage, set_blob_storage
from services.service_summarize_container import summarize_container

DEAD_END = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
            "KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;")


def put(storage, container: str, names: list[str]) -> None:
    for name in names:
        data = b"II*\x00" + name.encode()
        storage.upload_from(container, name, io.BytesIO(data), length=len(data))


def listed(engine, job_type: str, container: str) -> str:
    """Submit, open stage 1 and run its listing task; returns the job id."""
    job = engine.submit(job_type, {"container_name": container})
    engine.deliver(JOBS_QUEUE)
    engine.deliver(TASKS_QUEUE)
    return job["job_id"]


def test_a_blob_deleted_after_listing_fails_its_task_alone(engine, blob_storage,
                                                          blob_container):
    # Given a listing of four blobs, one of which is deleted before it is analyzed,
    put(blob_storage, blob_container, ["a.tif", "b.tif", "c.tif", "d.tif"])
    job_id = listed(engine, "list_container_contents", blob_container)
    assert blob_storage.delete_blob(blob_container, "c.tif")
    # When the job runs on,
    engine.drain()
    job = engine.status(job_id)
    # Then that task fails permanently (no retries), the others succeed, and the job ends
    # completed_with_errors with the failure named.
    assert job["status"] == "completed_with_errors", job["error_details"]
    r = job["result_data"]
    assert (r["blobs_found"], r["blobs_analyzed"], r["succeeded"], r["failed"]) == (4, 4, 3, 1)
    [error] = r["errors"]
    assert f"blob {blob_container}/c.tif does not exist" in error["error"]
    assert r["tasks_failed"] == 1
    with engine.machine.state_manager.db.connection() as conn:
        retries = conn.execute("SELECT max(retry_count) AS n FROM app.tasks"
                               " WHERE parent_job_id = %s", (job_id,)).fetchone()["n"]
    assert retries == 0


def test_the_diamond_aggregates_a_failed_analysis_too(engine, blob_storage, blob_container):
    put(blob_storage, blob_container, ["a.tif", "b.tif"])
    job_id = listed(engine, "list_container_contents_diamond", blob_container)
    blob_storage.delete_blob(blob_container, "a.tif")
    engine.drain()
    job = engine.status(job_id)
    assert job["status"] == "completed_with_errors"
    r = job["result_data"]
    assert (r["blobs_found"], r["succeeded"], r["failed"]) == (2, 1, 1)
    assert [s["total"] for s in job["stages"]] == [1, 2, 1]


def test_storage_failing_mid_job_is_retried_and_loses_no_task(engine, blob_storage,
                                                             blob_container):
    # Given a listing of three blobs,
    put(blob_storage, blob_container, ["a.tif", "b.tif", "c.tif"])
    job_id = listed(engine, "list_container_contents", blob_container)
    # When storage cannot be reached while the analyses first run,
    set_blob_storage(BlobStorage(BlobServiceClient.from_connection_string(
        DEAD_END, retry_total=0)))
    try:
        engine.deliver(JOBS_QUEUE)
        engine.deliver(TASKS_QUEUE)
    finally:
        set_blob_storage(blob_storage)
    with engine.machine.state_manager.db.connection() as conn:
        rows = conn.execute("SELECT status, retry_count FROM app.tasks WHERE"
                            " parent_job_id = %s AND stage = 2", (job_id,)).fetchall()
    # Then each analysis is queued for a retry (transient), none failed,
    assert [(r["status"], r["retry_count"]) for r in rows] == [("queued", 1)] * 3
    # and once storage is back, every blob is analyzed.
    engine.drain()
    job = engine.status(job_id)
    assert job["status"] == "completed", job["error_details"]
    assert (job["result_data"]["succeeded"], job["result_data"]["failed"]) == (3, 0)


def test_a_scan_near_its_deadline_returns_what_it_has(blob_storage, blob_container):
    put(blob_storage, blob_container, [f"f{i:03}.tif" for i in range(1200)])
    # Given a handler context whose time runs out after the first look at the clock,
    looks = []

    def time_left() -> float:
        looks.append(1)
        return 600.0 if len(looks) == 1 else 0.0

    context = {"time_left": time_left, "cancelled": threading.Event()}
    # When the scan runs, Then it stops at the next look (every 500 blobs) and reports
    # what it counted, flagged, instead of running into its timeout.
    r = summarize_container({"container_name": blob_container, "filter": {}}, context)
    assert r["hit_time_limit"] is True and r["hit_file_limit"] is False
    assert r["files_scanned"] == r["files_matched"] == 500
    # and with time to spare, it scans everything.
    full = summarize_container({"container_name": blob_container, "filter": {}},
                               {"time_left": lambda: 600.0})
    assert (full["files_scanned"], full["hit_time_limit"]) == (1200, False)
    assert get_blob_storage() is blob_storage
