"""The container jobs over real HTTP (the local host on a loopback port) against a real
Azurite container this test fills: mixed extensions and letter cases, nested prefixes,
sizes in two buckets, modification times on both sides of a filter, a mislabelled file.
Every number is exact."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from local_host import LocalHost
from tests.e2e.host_calls import call, run
from services.blob_filter import MB

TIFF = b"II*\x00"
BIGTIFF = b"II+\x00\x08\x00"
PNG = b"\x89PNG\r\n\x1a\n"
GPKG = b"SQLite format 3\x00" + b"\x00" * 52 + b"GPKG" + b"\x00" * 8
ZIP = b"PK\x03\x04"

EARLY = {  # name -> content, uploaded first
    "raw/a.tif": TIFF + b"\x00" * 1000,
    "raw/B.TIF": BIGTIFF + b"\x00" * 2000,
    "raw/nested/deep/c.Tif": PNG + b"\x00" * 500,  # a PNG named .tif: a mismatch
    "docs/readme.txt": b"hello, world\n" * 20,
    "docs/report.PDF": b"%PDF-1.7\n" + b"x" * 700,
    "data/big.gpkg": GPKG + b"\x00" * (10 * MB + 1 - len(GPKG)),  # 10-100 MB bucket
    "data/empty.csv": b"",
    "NOEXT": b"hello",
}
LATE = {  # uploaded after a pause: modified after the filter's time
    "late/d.tif": TIFF + b"\x01" * 96,
    "late/e.zip": ZIP + b"\x02" * 196,
}
ALL = {**EARLY, **LATE}


def size(names) -> int:
    return sum(len(ALL[n]) for n in names)


def fill(storage, container: str, pause: bool) -> datetime:
    """Upload the early blobs, then the late ones; returns a time between the two (with
    pause: strictly between their modification times, which have whole seconds)."""
    for name, data in EARLY.items():
        storage.upload_from(container, name, _reader(data), length=len(data))
    time.sleep(1.1 if pause else 0)
    between = datetime.now(timezone.utc)
    time.sleep(1.1 if pause else 0)
    for name, data in LATE.items():
        storage.upload_from(container, name, _reader(data), length=len(data))
    return between


@pytest.fixture
def filled(blob_storage, blob_container):
    """The container filled, and a time between the early and the late blobs (only
    tests marked times get a pause between them)."""
    return blob_container, fill(blob_storage, blob_container, pause=False)


@pytest.fixture
def filled_apart(blob_storage, blob_container):
    return blob_container, fill(blob_storage, blob_container, pause=True)


def _reader(data: bytes):
    import io

    return io.BytesIO(data)


@pytest.fixture
def host(database, blob_storage):
    with LocalHost(port=0, close_database=False, banner=False) as running:
        yield running


def test_summarize_container_counts_everything_exactly(host, filled):
    container, _ = filled
    job = run(host, "summarize_container", {"container_name": container})
    assert job["status"] == "completed", job["error_details"]
    r = job["result_data"]
    assert (r["files_matched"], r["files_scanned"], r["bytes_matched"]) == (
        10, 10, size(ALL))
    assert r["by_extension"] == {
        "(none)": {"count": 1, "bytes": 5},
        "csv": {"count": 1, "bytes": 0},
        "gpkg": {"count": 1, "bytes": 10 * MB + 1},
        "pdf": {"count": 1, "bytes": size(["docs/report.PDF"])},
        "tif": {"count": 4, "bytes": size(["raw/a.tif", "raw/B.TIF", "raw/nested/deep/c.Tif",
                                           "late/d.tif"])},
        "txt": {"count": 1, "bytes": 260},
        "zip": {"count": 1, "bytes": 200},
    }
    assert r["size_buckets"]["under_10_mb"] == {"count": 9, "bytes": size(ALL) - 10 * MB - 1}
    assert r["size_buckets"]["10_to_100_mb"] == {"count": 1, "bytes": 10 * MB + 1}
    assert r["size_buckets"]["10_gb_and_over"] == {"count": 0, "bytes": 0}
    assert (r["largest"]["name"], r["largest"]["size"]) == ("data/big.gpkg", 10 * MB + 1)
    assert (r["smallest"]["name"], r["smallest"]["size"]) == ("data/empty.csv", 0)
    assert r["newest"] is not None and r["oldest"] is not None
    assert r["hit_file_limit"] is False and r["hit_time_limit"] is False
    assert r["scan_seconds"] >= 0


@pytest.mark.parametrize("flt, names", [
    ({"extensions": [".TIF"]}, ["raw/a.tif", "raw/B.TIF", "raw/nested/deep/c.Tif",
                                "late/d.tif"]),
    ({"extensions": ["pdf", "Zip"]}, ["docs/report.PDF", "late/e.zip"]),
    ({"prefix": "raw/"}, ["raw/a.tif", "raw/B.TIF", "raw/nested/deep/c.Tif"]),
    ({"prefix": "raw/nested/"}, ["raw/nested/deep/c.Tif"]),
    ({"min_size_mb": 1}, ["data/big.gpkg"]),
    ({"max_size_mb": 0.0001}, ["data/empty.csv", "NOEXT", "late/d.tif"]),  # <= 104 bytes
])
def test_summarize_container_filters(host, filled, flt, names):
    container, _ = filled
    job = run(host, "summarize_container", {"container_name": container, "filter": flt})
    r = job["result_data"]
    assert (r["files_matched"], r["bytes_matched"]) == (len(names), size(names)), flt


def test_summarize_container_filters_by_modification_time(host, filled_apart):
    container, between = filled_apart
    for flt, names in (({"modified_after": between.isoformat()}, list(LATE)),
                       # a time without a zone is UTC
                       ({"modified_before": between.replace(tzinfo=None).isoformat()},
                        list(EARLY)),
                       ({"modified_after": between.isoformat(), "prefix": "late/d"},
                        ["late/d.tif"])):
        r = run(host, "summarize_container", {"container_name": container,
                                              "filter": flt})["result_data"]
        assert (r["files_matched"], r["bytes_matched"]) == (len(names), size(names)), flt
    r = run(host, "summarize_container", {"container_name": container})["result_data"]
    assert r["newest"]["name"] in LATE and r["oldest"]["name"] in EARLY


@pytest.mark.parametrize("limit, matched, hit", [(3, 3, True), (10, 10, False),
                                                 (11, 10, False)])
def test_file_limit_is_reported_only_when_it_cut_the_matches_short(host, filled, limit,
                                                                   matched, hit):
    container, _ = filled
    r = run(host, "summarize_container",
            {"container_name": container, "file_limit": limit})["result_data"]
    assert (r["files_matched"], r["hit_file_limit"]) == (matched, hit)


@pytest.mark.parametrize("job_type", ["list_container_contents",
                                      "list_container_contents_diamond"])
def test_list_container_contents_analyzes_every_blob(host, filled, job_type):
    container, _ = filled
    job = run(host, job_type, {"container_name": container})
    assert job["status"] == "completed", job["error_details"]
    r = job["result_data"]
    assert (r["blobs_found"], r["blobs_analyzed"], r["succeeded"], r["failed"]) == (
        10, 10, 10, 0)
    assert r["total_bytes"] == size(ALL)
    assert r["by_format"] == {
        "bigtiff": {"count": 1, "bytes": size(["raw/B.TIF"])},
        "empty": {"count": 1, "bytes": 0},
        "geopackage": {"count": 1, "bytes": 10 * MB + 1},
        "pdf": {"count": 1, "bytes": size(["docs/report.PDF"])},
        "png": {"count": 1, "bytes": size(["raw/nested/deep/c.Tif"])},
        "text": {"count": 2, "bytes": 265},
        "tiff": {"count": 2, "bytes": size(["raw/a.tif", "late/d.tif"])},
        "zip": {"count": 1, "bytes": 200},
    }
    assert r["by_extension"]["tif"] == {"count": 4, "bytes": size(
        ["raw/a.tif", "raw/B.TIF", "raw/nested/deep/c.Tif", "late/d.tif"])}
    assert r["mismatches"] == [{"name": "raw/nested/deep/c.Tif", "extension": "tif",
                                "format": "png"}]
    assert r["largest"] == {"name": "data/big.gpkg", "size": 10 * MB + 1}
    assert r["errors"] == []
    assert [s["total"] for s in job["stages"]] == ([1, 10, 1] if "diamond" in job_type
                                                   else [1, 10])


def test_list_container_contents_respects_the_filter_and_the_limit(host, filled):
    container, _ = filled
    r = run(host, "list_container_contents", {
        "container_name": container, "filter": {"extensions": ["tif"]},
        "file_limit": 2})["result_data"]
    assert (r["blobs_found"], r["blobs_analyzed"], r["hit_file_limit"]) == (2, 2, True)


def test_bad_input_is_a_400_naming_it_and_nothing_is_stored(host, blob_storage, database):
    for job_type in ("summarize_container", "list_container_contents",
                     "list_container_contents_diamond"):
        code, body = call(host, "POST", f"/api/jobs/submit/{job_type}",
                          {"container_name": "Not_A_Container"})
        assert code == 400 and body["parameter"] == "container_name"
        assert "lowercase letters, digits and single hyphens" in body["error"]
        code, body = call(host, "POST", f"/api/jobs/submit/{job_type}",
                          {"container_name": "no-such-container"})
        assert code == 400, body
        assert (body["parameter"], body["resource"]) == ("container_name",
                                                         "no-such-container")
        assert "container no-such-container does not exist" in body["error"]
        code, body = call(host, "POST", f"/api/jobs/submit/{job_type}",
                          {"container_name": "abc", "filter": {"extensions": "tif"}})
        assert code == 400 and body["parameter"] == "filter.extensions"
    with database.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM app.jobs").fetchone()["n"] == 0


def test_storage_unreachable_at_submit_is_a_503_and_nothing_is_stored(host, database,
                                                                       blob_container):
    from infrastructure.blob_storage import BlobStorage, get_blob_storage, set_blob_storage
    from azure.storage.blob import BlobServiceClient

    working = get_blob_storage()
    set_blob_storage(BlobStorage(BlobServiceClient.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw"
        "==;BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;", retry_total=0)))
    try:
        started = time.monotonic()
        code, body = call(host, "POST", "/api/jobs/submit/summarize_container",
                          {"container_name": blob_container})
        assert code == 503, body
        assert time.monotonic() - started < 15
    finally:
        set_blob_storage(working)
    with database.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM app.jobs").fetchone()["n"] == 0
        assert conn.execute("SELECT count(*) AS n FROM app.queue_messages").fetchone()["n"] == 0


def test_the_same_parameters_find_the_same_job_and_a_snapshot_scans_again(host, filled):
    container, _ = filled
    first = run(host, "summarize_container", {"container_name": container})
    code, again = call(host, "POST", "/api/jobs/submit/summarize_container",
                       {"container_name": container})
    assert code == 200 and again["job_id"] == first["job_id"] and again["idempotent"]
    assert again["result_data"]["files_matched"] == 10
    second = run(host, "summarize_container", {"container_name": container,
                                               "snapshot": "again"})
    assert second["job_id"] != first["job_id"]
