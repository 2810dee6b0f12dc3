"""Blob storage at scale, on a fresh Azurite (local_host/azurite.py) of the bench's own:

- list_container_contents over --storage-blobs blobs, end to end on two local hosts (submit
  to the job's end), beside a plain sequential loop over the same SDK doing the same reads
  (list, then each blob's properties and first 512 bytes), in the same run;
- summarize_container over --summarize-blobs blobs and over a tenth of them, each on a
  fresh host, with the host's peak memory (VmHWM): flat in the blob count is the goal.
"""

from __future__ import annotations

import http.client
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .hosts import HostGroup
from .server import BenchServer

# (extension, first bytes, filler): binary kinds padded with NUL, text kinds with spaces
EXTENSIONS = (("tif", b"II*\x00", b"\x00"), ("gpkg", b"SQLite format 3\x00", b"\x00"),
              ("csv", b"a,b\n1,2\n", b" "), ("zip", b"PK\x03\x04", b"\x00"),
              ("json", b"{}", b" "))
BLOB_BYTES = 1024
UPLOAD_WORKERS = 16


def _storage(connection_string: str) -> Any:
    from azure.storage.blob import BlobServiceClient

    from infrastructure.blob_storage import BlobStorage

    return BlobStorage(BlobServiceClient.from_connection_string(connection_string))


def fill(storage: Any, container: str, count: int, start: int = 0) -> float:
    """Blobs number `start` to `count` - 1 of 1 KiB, in 50 folders, five kinds by
    extension and content; returns the seconds it took (UPLOAD_WORKERS at once)."""
    import io

    storage.create_container(container)

    def put(i: int) -> None:
        ext, head, filler = EXTENSIONS[i % len(EXTENSIONS)]
        data = head + filler * (BLOB_BYTES - len(head))
        storage.upload_from(container, f"d{i % 50:02}/f{i:07}.{ext}", io.BytesIO(data),
                            length=len(data))

    started = time.perf_counter()
    with ThreadPoolExecutor(UPLOAD_WORKERS) as pool:
        for _ in pool.map(put, range(start, count)):
            pass
    return time.perf_counter() - started


def sequential_loop(storage: Any, container: str) -> dict[str, Any]:
    """What a script would do: list, then read each blob's properties and first bytes."""
    from services.format_sniffing import SNIFF_BYTES, sniff

    started = time.perf_counter()
    formats: dict[str, int] = {}
    for blob in storage.list_blobs(container):
        storage.get_properties(container, blob.name)
        fmt = sniff(storage.read_range(container, blob.name, 0, SNIFF_BYTES))
        formats[fmt] = formats.get(fmt, 0) + 1
    return {"seconds": time.perf_counter() - started, "blobs": sum(formats.values()),
            "by_format": formats}


def _submit(url: str, job_type: str, params: dict) -> str:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("POST", f"/api/jobs/submit/{job_type}", json.dumps(params).encode(),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = json.loads(resp.read())
        if resp.status != 201:
            raise RuntimeError(f"submit {job_type}: {resp.status} {body}")
        return body["job_id"]
    finally:
        conn.close()


def job_run(server: BenchServer, connection_string: str, job_type: str, params: dict,
            workdir: Path, timeout: float, tag: str, hosts: int = 1) -> dict[str, Any]:
    """One job on `hosts` fresh local hosts (batch mode: 2 batch invocations at once of 8
    handlers each, per host): seconds from the submit to its end, its result, and the
    largest host's peak memory. Handlers are CPU-bound here (the SDK, beside Azurite on
    the same 2 cores), so a second process (a second GIL) is what adds throughput, as
    FUNCTIONS_WORKER_PROCESS_COUNT or a second instance does in Azure."""
    server.truncate()
    env = {"STORAGE_CONNECTION_STRING": connection_string, "TASK_BATCH_CONCURRENCY": "8",
           "DB_POOL_MAX_SIZE": "40"}
    with HostGroup(hosts, database_url=server.url, mode="batch", task_concurrency=2,
                   stats_prefix=workdir / f"{tag}-sql", log_dir=workdir / tag,
                   extra_env=env) as group:
        started = time.perf_counter()
        job_id = _submit(group.hosts[0].url, job_type, params)
        deadline = time.monotonic() + timeout
        with server.connect() as conn:
            while True:
                row = conn.execute("SELECT status, result_data, error_details FROM app.jobs"
                                   " WHERE job_id = %s", (job_id,)).fetchone()
                if row[0] in ("completed", "failed", "completed_with_errors"):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{job_type} did not end within {timeout:g} s")
                time.sleep(0.05)
        seconds = time.perf_counter() - started
        peak = max((p for p in group.peak_mb() if p is not None), default=None)
    return {"job_type": job_type, "status": row[0], "seconds": seconds, "hosts": hosts,
            "host_peak_mb": peak, "result": row[1], "error": row[2]}


def storage_runs(server: BenchServer, *, blobs: int, summarize_blobs: int, workdir: Path,
                 timeout: float) -> dict[str, Any]:
    from local_host.azurite import Azurite

    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"blobs": blobs, "summarize_blobs": summarize_blobs}
    location = workdir / "azurite"
    shutil.rmtree(location, ignore_errors=True)  # a previous run's blobs would count twice
    with Azurite(port=0, location=location) as azurite:
        storage = _storage(azurite.connection_string)
        if blobs:
            out["fill_seconds"] = fill(storage, "bench-inventory", blobs)
            out["loop"] = sequential_loop(storage, "bench-inventory")
            job = job_run(server, azurite.connection_string, "list_container_contents",
                          {"container_name": "bench-inventory", "file_limit": blobs},
                          workdir, timeout, "inventory", hosts=2)
            result = job.pop("result") or {}
            job["blobs_analyzed"] = result.get("blobs_analyzed")
            job["by_format"] = result.get("by_format")
            out["job"] = job
            out["job_vs_loop"] = out["loop"]["seconds"] / job["seconds"]
        if summarize_blobs:
            small = max(summarize_blobs // 10, 1)
            out["summarize_fill_seconds"] = fill(storage, "bench-summary", small)
            out["summarize_small"] = _summary(server, azurite, small, workdir, timeout)
            out["summarize_fill_seconds"] += fill(storage, "bench-summary",
                                                  summarize_blobs, start=small)
            out["summarize_large"] = _summary(server, azurite, summarize_blobs, workdir,
                                              timeout)
    return out


def _summary(server: BenchServer, azurite: Any, count: int, workdir: Path,
             timeout: float) -> dict[str, Any]:
    run = job_run(server, azurite.connection_string, "summarize_container",
                  {"container_name": "bench-summary", "snapshot": str(count)}, workdir,
                  timeout, f"summary-{count}")
    result = run.pop("result") or {}
    run["files_scanned"] = result.get("files_scanned")
    run["scan_seconds"] = result.get("scan_seconds")
    return run
