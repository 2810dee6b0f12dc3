"""The container jobs' pure parts: parameters (Azure's container names, normalized
extensions, ranges), the blob filter, format sniffing, size buckets and the inventory's
aggregation. Storage itself is exercised against Azurite in tests/integration."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from exceptions import JobValidationError
from jobs import ALL_JOBS
from services.container_inventory import aggregate_inventory
from services.blob_filter import MB, BlobFilter, extension_of
from services.format_sniffing import mismatch, sniff
from services.service_summarize_container import bucket_of

JOBS = ("summarize_container", "list_container_contents", "list_container_contents_diamond")
WHEN = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize("job_type", JOBS)
@pytest.mark.parametrize("name", ["abc", "a-b-c", "x" * 63, "bronze-rasters", "0a9"])
def test_azure_container_names_are_accepted(job_type, name):
    assert ALL_JOBS[job_type].validate_job_parameters({"container_name": name})[
        "container_name"] == name


@pytest.mark.parametrize("job_type", JOBS)
@pytest.mark.parametrize("name", ["ab", "x" * 64, "Bronze", "a--b", "-ab", "ab-", "a_b",
                                  "a.b", ""])
def test_other_container_names_are_refused_with_the_rule_in_words(job_type, name):
    with pytest.raises(JobValidationError) as raised:
        ALL_JOBS[job_type].validate_job_parameters({"container_name": name})
    assert raised.value.parameter == "container_name"
    assert "3 to 63 characters: lowercase letters, digits and single hyphens" in str(
        raised.value)


@pytest.mark.parametrize("job_type", JOBS)
def test_extensions_written_differently_are_the_same_job(job_type):
    job = ALL_JOBS[job_type]

    def job_id(extensions):
        return job.generate_job_id(job.validate_job_parameters(
            {"container_name": "vendor", "filter": {"extensions": extensions}}))

    assert job_id([".tif", "TIF", "gpkg"]) == job_id(["GPKG", "tif"]) == job_id(
        ["tif", ".gpkg"])
    assert job_id(["tif"]) != job_id(["tiff"])


def test_a_snapshot_makes_another_job_of_the_same_scan():
    job = ALL_JOBS["summarize_container"]
    ids = {job.generate_job_id(job.validate_job_parameters(p)) for p in (
        {"container_name": "vendor"}, {"container_name": "vendor", "snapshot": "2026-12"},
        {"container_name": "vendor", "snapshot": "2027-01"})}
    assert len(ids) == 3


@pytest.mark.parametrize("job_type, limit, ok", [
    ("summarize_container", 1_000_000, True), ("summarize_container", 1_000_001, False),
    ("list_container_contents", 100_000, True), ("list_container_contents", 100_001, False),
    ("list_container_contents", 0, False)])
def test_file_limits(job_type, limit, ok):
    params = {"container_name": "vendor", "file_limit": limit}
    if ok:
        assert ALL_JOBS[job_type].validate_job_parameters(params)["file_limit"] == limit
    else:
        with pytest.raises(JobValidationError, match="file_limit"):
            ALL_JOBS[job_type].validate_job_parameters(params)


def test_list_defaults_to_ten_thousand_and_summarize_to_no_limit():
    assert ALL_JOBS["list_container_contents"].validate_job_parameters(
        {"container_name": "vendor"})["file_limit"] == 10_000
    assert "file_limit" not in ALL_JOBS["summarize_container"].validate_job_parameters(
        {"container_name": "vendor"})


@pytest.mark.parametrize("flt, parameter", [
    ({"min_size_mb": 5, "max_size_mb": 1}, "filter.max_size_mb"),
    ({"modified_after": "2026-02-01", "modified_before": "2026-01-01"},
     "filter.modified_before"),
    ({"extensions": []}, "filter.extensions"),
    ({"min_size_mb": -1}, "filter.min_size_mb"),
    ({"colour": "red"}, "filter.colour"),
])
def test_bad_filters_are_refused_naming_the_field(flt, parameter):
    with pytest.raises(JobValidationError) as raised:
        ALL_JOBS["summarize_container"].validate_job_parameters(
            {"container_name": "vendor", "filter": flt})
    assert raised.value.parameter == parameter


@pytest.mark.parametrize("name, extension", [
    ("a/b/scene.TIF", "tif"), ("x.tar.gz", "gz"), ("README", "(none)"), (".hidden", "(none)"),
    ("dir.v2/file", "(none)"), ("photo.JPEG", "jpeg")])
def test_extension_of(name, extension):
    assert extension_of(name) == extension


def test_the_filter_applies_each_rule():
    flt = BlobFilter.from_params({"prefix": "2026/", "extensions": ["tif"],
                                  "min_size_mb": 1, "max_size_mb": 2,
                                  "modified_after": "2026-05-01T00:00:00",
                                  "modified_before": "2026-07-01T00:00:00Z"})
    assert flt.matches("2026/a.TIF", MB, WHEN)
    assert not flt.matches("2025/a.tif", MB, WHEN)  # prefix
    assert not flt.matches("2026/a.png", MB, WHEN)  # extension
    assert not flt.matches("2026/a.tif", MB - 1, WHEN)  # too small
    assert not flt.matches("2026/a.tif", 2 * MB + 1, WHEN)  # too big
    assert not flt.matches("2026/a.tif", MB, datetime(2026, 4, 1, tzinfo=timezone.utc))
    assert not flt.matches("2026/a.tif", MB, datetime(2026, 8, 1, tzinfo=timezone.utc))
    # A naive time (no zone) is UTC, compared with aware bounds without crashing.
    assert flt.matches("2026/a.tif", MB, datetime(2026, 6, 1, 12))
    assert BlobFilter.from_params({}).matches("anything", 0, WHEN)


@pytest.mark.parametrize("head, fmt", [
    (b"II*\x00rest", "tiff"), (b"MM\x00*rest", "tiff"), (b"II+\x00\x08\x00", "bigtiff"),
    (b"SQLite format 3\x00" + b"\x00" * 52 + b"GPKG" + b"\x00" * 8, "geopackage"),
    (b"SQLite format 3\x00" + b"\x00" * 60, "sqlite"), (b"PK\x03\x04....", "zip"),
    (b"%PDF-1.7\n", "pdf"), (b"\xff\xd8\xff\xe0", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\x89HDF\r\n\x1a\n", "hdf5"), (b"CDF\x01\x00", "netcdf"), (b"PAR1\x15", "parquet"),
    (b"id,name\n1,caf\xc3\xa9\n", "text"), (b"", "empty"), (b"\x00\x01\x02\x03", "unknown"),
    ("x" * 511 + "\u00e9", "text")])  # a character cut off at the end is still text
def test_sniff(head, fmt):
    if isinstance(head, str):
        head = head.encode()[:512]
    assert sniff(head) == fmt


@pytest.mark.parametrize("extension, fmt, expected", [
    ("tif", "tiff", False), ("tif", "bigtiff", False), ("tif", "text", True),
    ("tif", "empty", True), ("gpkg", "geopackage", False), ("gpkg", "zip", True),
    ("csv", "text", False), ("csv", "zip", True), ("csv", "empty", False), ("bin", "unknown", None),
    ("(none)", "text", None)])
def test_mismatch(extension, fmt, expected):
    assert mismatch(extension, fmt) is expected


@pytest.mark.parametrize("size, bucket", [
    (0, "under_10_mb"), (10 * MB - 1, "under_10_mb"), (10 * MB, "10_to_100_mb"),
    (100 * MB, "100_mb_to_1_gb"), (1024 * MB, "1_to_10_gb"),
    (10 * 1024 * MB, "10_gb_and_over")])
def test_size_buckets(size, bucket):
    assert bucket_of(size) == bucket


def test_the_inventory_counts_successes_failures_formats_and_mismatches():
    def ok(name, ext, fmt, size, bad=False):
        return {"task_id": name, "status": "completed", "result": {
            "name": name, "extension": ext, "format": fmt, "size": size,
            "extension_mismatch": bad}}

    outcomes = [ok("a.tif", "tif", "tiff", 100), ok("b.TIF", "tif", "text", 5, bad=True),
                ok("c.csv", "csv", "text", 7),
                {"task_id": "t4", "status": "failed",
                 "result": {"error": "blob vendor/d.tif does not exist"}}]
    report = aggregate_inventory(outcomes)
    assert report == {
        "blobs_analyzed": 4, "succeeded": 3, "failed": 1, "total_bytes": 112,
        "by_extension": {"csv": {"count": 1, "bytes": 7}, "tif": {"count": 2, "bytes": 105}},
        "by_format": {"text": {"count": 2, "bytes": 12}, "tiff": {"count": 1, "bytes": 100}},
        "mismatches": [{"name": "b.TIF", "extension": "tif", "format": "text"}],
        "largest": {"name": "a.tif", "size": 100},
        "errors": [{"task_id": "t4", "error": "blob vendor/d.tif does not exist"}]}
