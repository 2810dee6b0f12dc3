"""ingest_vector's streamed load of a file that makes one chunk: prepare COPYs each cleaned
batch into the staging table as it comes, from a thread of its own, so the server parses
and stores rows while the file is read and cleaned on (as ogr2ogr's COPY overlaps its
reading), instead of reading the whole file first.

The staging table, the COPY, the run's facts and the chunk's ledger row are one
transaction (VectorStaging.stream_chunk): a prepare that crashes halfway leaves nothing,
and its retry or a second delivery starts over from its claim, so every row loads once.

The table's geometry type is taken from the first batch that keeps rows; a later batch
that changes it (a multi type after singles, say), or rows past one chunk, make prepare
abort the stream (rolled back) and load the chunk it kept, as when nothing streamed."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Iterator, Optional

import numpy as np
import pyarrow as pa

from infrastructure.vector_staging import GEOMETRY, KEY, VectorStaging
from services.vector_binary import SIGNATURE, TRAILER, binary_blocks, binary_types
from services.vector_load import copy_rows, csv_blocks, wrapped_wkb

_COMMIT, _ABORT = object(), object()
STALL_SECONDS = 600  # past any prepare task's timeout


class StreamAborted(Exception):
    """prepare gave up the stream; its transaction rolls back."""


class StreamedLoad:
    def __init__(self, job_id: str, columns: list[tuple[str, str]], geometry_type: str,
                 srid: int, facts: dict[str, Any]):
        self.geometry_type = geometry_type
        self.rows = 0
        self.waited = 0.0  # seconds the reading waited for the stream
        self._multi = geometry_type.startswith("Multi")
        self._names = [KEY, *(name for name, _ in columns), GEOMETRY]
        self._binary = binary_types({KEY: "bigint", **dict(columns), GEOMETRY: "geometry"},
                                    self._names)
        self._queue: queue.Queue = queue.Queue(maxsize=2)  # memory: two batches ahead
        self._final: Optional[tuple[int, dict[str, Any]]] = None
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(
            target=self._run, args=(job_id, columns, geometry_type, srid, facts),
            name="vector-stream", daemon=True)
        self._thread.start()

    def add(self, table: pa.Table, wrap: bool) -> None:
        """Queue a batch's kept rows (without keys: numbered on from the last batch's);
        wrap: singles among them become one-part multis (the column is multi)."""
        ids = pa.array(np.arange(self.rows + 1, self.rows + 1 + table.num_rows), pa.int64())
        self._put((table.add_column(0, KEY, ids), wrap and self._multi))
        self.rows += table.num_rows

    def commit(self, facts: dict[str, Any]) -> None:
        """End the COPY and commit, with the ledger row and facts; raises what failed."""
        self._final = (self.rows, facts)
        self._put(_COMMIT)
        started = time.monotonic()
        self._thread.join()
        self.waited += time.monotonic() - started
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Roll the stream back (nothing of it stays) and wait for its thread."""
        if self._thread.is_alive():
            try:
                self._put(_ABORT)
            except BaseException:  # noqa: BLE001  the thread failed: it has rolled back
                pass
            self._thread.join()

    def _put(self, item: Any) -> None:
        started = time.monotonic()
        while True:
            if self._error is not None or not self._thread.is_alive():
                raise self._error or RuntimeError("the vector stream ended early")
            try:
                self._queue.put(item, timeout=0.2)
                break
            except queue.Full:
                continue
        self.waited += time.monotonic() - started

    def _encode(self, table: pa.Table, wrap: bool) -> Iterator[Any]:
        """A batch's blocks: COPY's binary format (no signature or end marker: the COPY's
        own) when every column's type allows, else CSV with hex WKB."""
        if self._binary is None:
            _, rows = copy_rows(table, wrap)
            return csv_blocks(rows)
        if wrap:
            table = table.set_column(table.column_names.index(GEOMETRY), GEOMETRY,
                                     wrapped_wkb(table.column(GEOMETRY).combine_chunks()))
        return binary_blocks(table.select(self._names), self._binary, header=False,
                             trailer=False)

    def _blocks(self) -> Iterator[Any]:
        if self._binary is not None:
            yield SIGNATURE
        while True:
            try:
                item = self._queue.get(timeout=STALL_SECONDS)
            except queue.Empty:  # prepare's thread is gone without a word: roll back
                raise StreamAborted() from None
            if item is _COMMIT:
                if self._binary is not None:
                    yield TRAILER
                return
            if item is _ABORT:
                raise StreamAborted()
            table, wrap = item
            del item
            blocks = self._encode(table, wrap)
            del table
            yield from blocks

    def _run(self, job_id: str, columns: list[tuple[str, str]], geometry_type: str,
             srid: int, facts: dict[str, Any]) -> None:
        try:
            VectorStaging().stream_chunk(job_id, 0, columns, geometry_type, srid, facts,
                                         "csv" if self._binary is None else "binary",
                                         self._blocks(), self._done)
        except StreamAborted:
            pass
        except BaseException as exc:  # noqa: BLE001  handed to prepare's thread
            self._error = exc
        finally:
            self._drain()

    def _done(self) -> tuple[int, dict[str, Any]]:
        assert self._final is not None
        return self._final

    def _drain(self) -> None:
        """Free a put() waiting on a full queue once nothing reads it."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return


class OneChunkStream:
    """Whether and what prepare streams: only a file known to make one chunk (its
    feature count, when the format tells it, under the chunk's rows), of one geometry
    type from its first kept rows to its last."""

    def __init__(self, job_id: str, features: int, srid: int):
        self.job_id = job_id
        self.features = features
        self.srid = srid
        self.stream: Optional[StreamedLoad] = None
        self.off = False
        self.waited = 0.0  # seconds the reading waited for the committed stream

    def feed(self, kept: pa.Table, layer_type: tuple[str, bool], chunk_rows: Optional[int],
             flushed: bool, columns: list[tuple[str, str]],
             facts: Any) -> None:
        """After the writer took the batch: flushed says it has written a chunk."""
        if self.off or kept.num_rows == 0:
            return
        geometry_type, promote = layer_type
        if self.stream is None:
            if flushed or self.features < 0 or chunk_rows is None \
                    or self.features >= chunk_rows:
                self.off = True
                return
            self.stream = StreamedLoad(self.job_id, columns, geometry_type, self.srid,
                                       facts())
        elif flushed or geometry_type != self.stream.geometry_type:
            self.abort()
            return
        self.stream.add(kept, promote)

    def commit(self, single: Optional[pa.Table], geometry_type: str,
               facts: dict[str, Any]) -> bool:
        """Commit the stream when it holds the whole file as it must be loaded; else roll
        it back. True when committed (the chunk is loaded)."""
        stream = self.stream
        if stream is None:
            return False
        if single is None or geometry_type != stream.geometry_type \
                or single.num_rows != stream.rows:
            self.abort()
            return False
        self.stream = None
        try:
            stream.commit(facts)
        finally:
            self.waited = stream.waited
        return True

    def abort(self) -> None:
        self.off = True
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.abort()
