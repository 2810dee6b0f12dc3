"""summarize_container's handler: one pass over the listing, page by page, keeping only
running totals (memory stays flat however many blobs there are)."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from infrastructure.blob_storage import BlobInfo, get_blob_storage
from services.blob_filter import MB, BlobFilter, extension_of

GB = 1024 * MB
# (name, upper bound in bytes, exclusive)
SIZE_BUCKETS = (("under_10_mb", 10 * MB), ("10_to_100_mb", 100 * MB),
                ("100_mb_to_1_gb", GB), ("1_to_10_gb", 10 * GB),
                ("10_gb_and_over", float("inf")))
# Stop this long before the handler's deadline and report what was scanned.
TIME_MARGIN_SECONDS = 15.0
CHECK_EVERY = 500  # blobs between two looks at the clock


def bucket_of(size: int) -> str:
    return next(name for name, upper in SIZE_BUCKETS if size < upper)


def _entry(blob: BlobInfo) -> dict[str, Any]:
    return {"name": blob.name, "size": blob.size,
            "last_modified": blob.last_modified.isoformat()}


class Summary:
    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0
        self.by_extension: dict[str, dict[str, int]] = {}
        self.buckets = {name: {"count": 0, "bytes": 0} for name, _ in SIZE_BUCKETS}
        self.extremes: dict[str, Optional[BlobInfo]] = dict.fromkeys(
            ("largest", "smallest", "oldest", "newest"))

    def add(self, blob: BlobInfo) -> None:
        self.files += 1
        self.bytes += blob.size
        ext = self.by_extension.setdefault(extension_of(blob.name), {"count": 0, "bytes": 0})
        ext["count"] += 1
        ext["bytes"] += blob.size
        bucket = self.buckets[bucket_of(blob.size)]
        bucket["count"] += 1
        bucket["bytes"] += blob.size
        e = self.extremes
        if e["largest"] is None or blob.size > e["largest"].size:
            e["largest"] = blob
        if e["smallest"] is None or blob.size < e["smallest"].size:
            e["smallest"] = blob
        if e["oldest"] is None or blob.last_modified < e["oldest"].last_modified:
            e["oldest"] = blob
        if e["newest"] is None or blob.last_modified > e["newest"].last_modified:
            e["newest"] = blob

    def result(self) -> dict[str, Any]:
        return {"files_matched": self.files, "bytes_matched": self.bytes,
                "by_extension": dict(sorted(self.by_extension.items())),
                "size_buckets": self.buckets,
                **{k: _entry(v) if v else None for k, v in self.extremes.items()}}


def _out_of_time(context: dict[str, Any]) -> Callable[[], bool]:
    time_left = context.get("time_left")
    cancelled = context.get("cancelled")

    def check() -> bool:
        if cancelled is not None and cancelled.is_set():
            return True
        return time_left is not None and time_left() < TIME_MARGIN_SECONDS
    return check


def summarize_container(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    flt = BlobFilter.from_params(params.get("filter"))
    limit = params.get("file_limit")
    out_of_time = _out_of_time(context or {})
    summary = Summary()
    scanned = 0
    hit_file_limit = hit_time_limit = False
    for blob in get_blob_storage().list_blobs(params["container_name"], prefix=flt.prefix):
        if scanned % CHECK_EVERY == 0 and out_of_time():
            hit_time_limit = True
            break
        scanned += 1
        if not flt.matches(blob.name, blob.size, blob.last_modified):
            continue
        if limit is not None and summary.files >= limit:
            hit_file_limit = True  # a match beyond the limit: the limit cut it short
            break
        summary.add(blob)
    return {**summary.result(), "files_scanned": scanned,
            "scan_seconds": round(time.monotonic() - started, 3),
            "hit_file_limit": hit_file_limit, "hit_time_limit": hit_time_limit}
