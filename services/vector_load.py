"""ingest_vector's COPY of one chunk (an Arrow table: id, the columns, geom as WKB) into
the job's staging table: the geometries as hex WKB (the data buffer hex-encoded at once, no
Python object per row; a layer of single and multi types gets its singles wrapped as
one-part multis), the rows as CSV blocks, or in COPY's binary format when every column's
type allows (services/vector_binary.py), written with the chunk's ledger row in one
transaction (infrastructure/vector_staging.py), so the chunk loads exactly once."""

from __future__ import annotations

import io
import struct
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from infrastructure.vector_staging import GEOMETRY, KEY, VectorStaging
from services.vector_binary import binary_blocks, binary_types

CSV_SLICE_ROWS = 50_000
# A single type's WKB code and its multi type's (ISO 2D).
_MULTI_OF = {1: 4, 2: 5, 3: 6}


def multi_wkb(wkb: bytes) -> bytes:
    """A single Point, LineString or Polygon's WKB wrapped as a one-part multi geometry
    (already multi: unchanged)."""
    code = struct.unpack("<I" if wkb[0] == 1 else ">I", wkb[1:5])[0]
    multi = _MULTI_OF.get(code)
    return wkb if multi is None else struct.pack("<BII", 1, multi, 1) + wkb


def hex_wkb(column: pa.Array, multi: bool = False) -> pa.Array:
    """The binary column as lowercase hex strings (nulls stay null)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if multi:
        return pa.array([None if v is None else multi_wkb(v).hex()
                         for v in column.to_pylist()], pa.string())
    if pa.types.is_large_binary(column.type):
        column = column.cast(pa.binary())
    n = len(column)
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[
        column.offset:column.offset + n + 1]
    data_buffer = column.buffers()[2]
    data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0]:offsets[-1]] \
        if data_buffer is not None else np.zeros(0, np.uint8)
    out = memoryview(data).hex().encode("ascii")  # C speed, one string for the chunk
    new_offsets = ((offsets - offsets[0]).astype(np.int64) * 2)
    if new_offsets[-1] > np.iinfo(np.int32).max:
        return pa.array([None if v is None else v.hex() for v in column.to_pylist()],
                        pa.large_string())
    validity = column.buffers()[0]
    if validity is not None and column.offset:
        column = pa.concat_arrays([column])  # validity bits from offset 0
        validity = column.buffers()[0]
    return pa.StringArray.from_buffers(n, pa.py_buffer(new_offsets.astype(np.int32)),
                                       pa.py_buffer(out), validity, column.null_count)


def csv_blocks(table: pa.Table) -> Iterator[bytes]:
    for start in range(0, table.num_rows, CSV_SLICE_ROWS):
        sink = io.BytesIO()
        pacsv.write_csv(table.slice(start, CSV_SLICE_ROWS), sink,
                        pacsv.WriteOptions(include_header=False))
        yield sink.getvalue()


def copy_rows(table: pa.Table, multi: bool) -> tuple[list[str], pa.Table]:
    """The attribute columns' names, and the table as COPY reads it: id, the columns, geom
    as hex WKB."""
    geometry = hex_wkb(table.column(GEOMETRY), multi)
    table = table.set_column(table.column_names.index(GEOMETRY), GEOMETRY, geometry)
    columns = [c for c in table.column_names if c not in (KEY, GEOMETRY)]
    return columns, table.select([KEY, *columns, GEOMETRY])


def wrapped_wkb(column: pa.Array) -> pa.Array:
    """The binary column with its singles wrapped as one-part multis."""
    return pa.array([None if v is None else multi_wkb(v) for v in column.to_pylist()],
                    pa.binary())


def encode(table: pa.Table, multi: bool, types: dict[str, str]
           ) -> tuple[list[str], str, Iterator[Any]]:
    """The attribute columns' names, the COPY format and its blocks for the chunk, given
    the staging table's column types: binary when every column's type can go so
    (services/vector_binary.py), else CSV with hex WKB."""
    columns = [c for c in table.column_names if c not in (KEY, GEOMETRY)]
    names = [KEY, *columns, GEOMETRY]
    pg_types = binary_types(types, names)
    if pg_types is None:
        columns, rows = copy_rows(table, multi)
        return columns, "csv", csv_blocks(rows)
    if multi:
        table = table.set_column(table.column_names.index(GEOMETRY), GEOMETRY,
                                 wrapped_wkb(table.column(GEOMETRY).combine_chunks()))
    return columns, "binary", binary_blocks(table.select(names), pg_types)


def load_table(job_id: str, chunk: int, table: pa.Table, multi: bool) -> bool:
    """COPY the chunk into the staging table once; False when it was loaded already."""
    return VectorStaging().copy_chunk(job_id, chunk, table.num_rows,
                                      lambda types: encode(table, multi, types))
