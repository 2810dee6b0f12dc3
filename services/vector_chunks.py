"""ingest_vector's chunks: the cleaned rows gathered into chunks of chunk_rows (chosen from
the first batch when not given: about 50 MB of GeoParquet), numbered from 1 in file order,
written as GeoParquet and uploaded to the temp container in the background while the file
is read on (one upload at a time: memory holds one chunk). A file that makes one chunk
only is not uploaded: prepare loads it itself."""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from infrastructure.blob_storage import get_blob_storage
from infrastructure.vector_staging import KEY

CHUNK_TARGET_BYTES = 50 * 1024 * 1024
MIN_CHUNK, MAX_CHUNK = 100, 500_000


def chunk_prefix(job_id: str) -> str:
    return f"ingest_vector/{job_id}/"


def chunk_blob(job_id: str, index: int) -> str:
    return f"{chunk_prefix(job_id)}chunk-{index:05d}.parquet"


class ChunkWriter:
    def __init__(self, job_id: str, container: str, folder: Path,
                 chunk_rows: Optional[int], geo_meta: dict[str, Any]):
        self.job_id = job_id
        self.container = container
        self.folder = folder
        self.chunk_rows = chunk_rows
        self.geo_meta = geo_meta
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.next_id = 1
        self.chunks: list[dict[str, Any]] = []
        self.seconds = 0.0  # writing and uploading (the part the reading waited for)
        self._uploads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunk-upload")
        self._upload: Optional[Future] = None

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self.chunk_rows is None:
            per_row = max(table.nbytes / table.num_rows, 1.0)
            self.chunk_rows = int(min(MAX_CHUNK, max(MIN_CHUNK, CHUNK_TARGET_BYTES / per_row)))
        self.pending.append(table)
        self.pending_rows += table.num_rows
        while self.pending_rows >= self.chunk_rows:
            self._flush(self.chunk_rows)

    def _take(self, rows: int) -> pa.Table:
        """The next `rows` pending rows, with their keys."""
        whole = pa.concat_tables(self.pending)
        chunk, rest = whole.slice(0, rows), whole.slice(rows)
        self.pending = [rest] if rest.num_rows else []
        self.pending_rows = rest.num_rows
        ids = pa.array(np.arange(self.next_id, self.next_id + chunk.num_rows), pa.int64())
        return chunk.add_column(0, KEY, ids)

    def _record(self, chunk: pa.Table, blob: Optional[str]) -> None:
        self.chunks.append({"index": len(self.chunks), "blob": blob, "rows": chunk.num_rows,
                            "first_id": self.next_id, **({} if blob else {"loaded": True})})
        self.next_id += chunk.num_rows

    def _flush(self, rows: int) -> None:
        started = time.monotonic()
        chunk = self._take(rows)
        chunk = chunk.replace_schema_metadata({b"geo": json.dumps(self.geo_meta).encode()})
        index = len(self.chunks)
        path = self.folder / f"chunk-{index:05d}.parquet"
        pq.write_table(chunk, path, compression="zstd")
        del chunk
        self._wait()
        name = chunk_blob(self.job_id, index)
        self._upload = self._uploads.submit(self._send, name, path)
        self.chunks.append({"index": index, "blob": name, "rows": rows,
                            "first_id": self.next_id})
        self.next_id += rows
        self.seconds += time.monotonic() - started

    def _send(self, name: str, path: Path) -> None:
        get_blob_storage().upload_file(self.container, name, path)
        path.unlink()

    def _wait(self) -> None:
        if self._upload is not None:
            upload, self._upload = self._upload, None
            upload.result()

    def finish(self) -> Optional[pa.Table]:
        """Flush what is pending and wait for the uploads. When the whole file is one
        chunk, it is returned (with its keys) instead, for prepare to load."""
        try:
            if not self.chunks and self.pending_rows:
                chunk = self._take(self.pending_rows)
                self._record(chunk, None)
                return chunk
            if self.pending_rows:
                self._flush(self.pending_rows)
            started = time.monotonic()
            self._wait()
            self.seconds += time.monotonic() - started
            return None
        finally:
            self._uploads.shutdown(wait=True)

    def close(self) -> None:
        self._uploads.shutdown(wait=True, cancel_futures=True)
