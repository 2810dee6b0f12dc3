"""COPY's binary format for a chunk (an Arrow table: id, the columns, geom as WKB), built
over Arrow's buffers with numpy and pyarrow's element-wise join, no Python object per row.
The server reads it about twice as fast as the CSV of hex WKB (no CSV to split, no hex to
decode, half the bytes), and the geometries go as the WKB they are.

Each row is a field count (int16), then per field its length (int32, -1 for NULL) and its
bytes: integers and floats big-endian, booleans one byte, text its UTF-8, a geometry its
WKB (PostGIS's geometry_recv; the column's SRID applies, as for hex WKB in CSV). Columns
of other types (numeric, jsonb, bytea, dates and times...) keep the CSV path."""

from __future__ import annotations

import struct
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
SLICE_ROWS = 50_000
# PostgreSQL type -> the Arrow type values are cast to, and its big-endian numpy form
FIXED = {"smallint": (pa.int16(), ">i2"), "integer": (pa.int32(), ">i4"),
         "bigint": (pa.int64(), ">i8"), "real": (pa.float32(), ">f4"),
         "double precision": (pa.float64(), ">f8"), "boolean": (pa.bool_(), "u1")}


def _encodable(pg_type: str) -> bool:
    return pg_type in FIXED or pg_type == "text" or pg_type.startswith("geometry")


def binary_types(types: dict[str, str], names: list[str]) -> Optional[list[str]]:
    """The PostgreSQL types of the named columns when every one can go in binary, else
    None (the CSV path)."""
    if any(name not in types or not _encodable(types[name]) for name in names):
        return None
    return [types[name] for name in names]


def _binary_array(n: int, offsets: np.ndarray, data: np.ndarray) -> pa.Array:
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(
        offsets.astype(np.int32)), pa.py_buffer(np.ascontiguousarray(data))])


def _fixed(values: pa.Array, arrow_type: pa.DataType, dtype: str) -> pa.Array:
    """Each value as its length and big-endian bytes (NULL: length -1, no bytes)."""
    n = len(values)
    values = values.cast(arrow_type)
    valid = np.asarray(values.is_valid())
    width = np.dtype(dtype).itemsize
    raw = values.fill_null(False if arrow_type == pa.bool_() else 0).to_numpy(
        zero_copy_only=False)
    record = np.empty(n, dtype=[("length", ">i4"), ("value", dtype)])
    record["length"] = np.where(valid, width, -1)
    record["value"] = raw
    matrix = record.view(np.uint8).reshape(n, 4 + width)
    if valid.all():
        return _binary_array(n, np.arange(n + 1) * (4 + width), matrix.reshape(-1))
    keep = np.ones(matrix.shape, dtype=bool)
    keep[~valid, 4:] = False
    sizes = np.where(valid, 4 + width, 4)
    return _binary_array(n, np.concatenate([[0], np.cumsum(sizes)]), matrix[keep])


def _variable(values: pa.Array) -> pa.Array:
    """Each value as its length and bytes (NULL: length -1, no bytes)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        values = values.cast(pa.binary() if pa.types.is_string(values.type)
                             else pa.large_binary())
    if pa.types.is_large_binary(values.type):
        values = values.cast(pa.binary())
    n = len(values)
    lengths = pc.binary_length(values).fill_null(-1).to_numpy(zero_copy_only=False)
    prefix = _binary_array(n, np.arange(n + 1) * 4,
                           lengths.astype(">i4").view(np.uint8))
    return pc.binary_join_element_wise(prefix, values, b"", null_handling="replace",
                                       null_replacement=b"")


def _rows(table: pa.Table, pg_types: list[str]) -> pa.Array:
    n = table.num_rows
    fields = [_binary_array(n, np.arange(n + 1) * 2,
                            np.full(n, table.num_columns, ">i2").view(np.uint8))]
    for column, pg_type in zip(table.columns, pg_types):
        column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if pg_type in FIXED:
            fields.append(_fixed(column, *FIXED[pg_type]))
        else:
            fields.append(_variable(column))
    return pc.binary_join_element_wise(*fields, b"")


def binary_blocks(table: pa.Table, pg_types: list[str], header: bool = True,
                  trailer: bool = True) -> Iterator[memoryview]:
    """The table (its columns in the COPY's order, of pg_types) in COPY's binary format,
    a slice of rows at a time; header and trailer say whether the file's signature
    comes first and its end marker last (a streamed COPY writes them once)."""
    if header:
        yield memoryview(SIGNATURE)
    for start in range(0, table.num_rows, SLICE_ROWS):
        rows = _rows(table.slice(start, SLICE_ROWS), pg_types)
        offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32)[
            rows.offset:rows.offset + len(rows) + 1]
        yield memoryview(rows.buffers()[2])[offsets[0]:offsets[-1]]
    if trailer:
        yield memoryview(TRAILER)
