"""ingest_vector's columns: each source column gets a unique, lowercase PostgreSQL name
and a PostgreSQL type, and its values the form COPY reads.

Names: lowercased; characters other than letters, digits and '_' become '_'; a leading
digit gets a '_' before it; at most 63 bytes; the generated key (id) and the geometry
column (geom) are reserved, so a source column of that name becomes src_id / src_geom;
clashes get _2, _3... Every name that changed is reported.

Types: 8-32-bit integers integer (smallint for 8 and 16), 64-bit bigint (never narrowed),
unsigned 64-bit numeric; floats real/double precision with NaN as NULL; booleans; text;
dates, times; timestamps with a zone timestamptz (the instant kept), without one
timestamp; decimals numeric; binary bytea; lists, structs, maps and GDAL's JSON fields
jsonb."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Optional

import pyarrow as pa
import pyarrow.compute as pc

from infrastructure.vector_staging import GEOMETRY, KEY

RESERVED = {KEY: "src_id", GEOMETRY: "src_geom"}


@dataclass(frozen=True)
class Column:
    source: str
    name: str
    pg_type: str
    kind: str  # how values are converted: plain, nan, json, json_text, bytes, text


def launder(name: str) -> str:
    out = re.sub(r"[^\w]", "_", name.strip().lower(), flags=re.UNICODE)
    if not out:
        out = "column"
    if out[0].isdigit():
        out = f"_{out}"
    while len(out.encode()) > 63:
        out = out[:-1]
    return RESERVED.get(out, out)


def _type_of(arrow_type: pa.DataType, is_json: bool) -> tuple[str, str]:
    t = arrow_type
    if isinstance(t, pa.BaseExtensionType):  # GDAL's JSON fields come as arrow.json
        return _type_of(t.storage_type, is_json or t.extension_name == "arrow.json")
    if pa.types.is_dictionary(t):
        return _type_of(t.value_type, is_json)
    if is_json and (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return "jsonb", "json_text"
    if pa.types.is_boolean(t):
        return "boolean", "plain"
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        return "smallint", "plain"
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return "integer", "plain"
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return "bigint", "plain"
    if pa.types.is_uint64(t):
        return "numeric(20)", "text"
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "real", "nan"
    if pa.types.is_float64(t):
        return "double precision", "nan"
    if pa.types.is_decimal(t):
        return "numeric", "text"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return "text", "plain"
    if pa.types.is_date(t):
        return "date", "plain"
    if pa.types.is_time(t):
        return "time", "plain"
    if pa.types.is_timestamp(t):
        return ("timestamptz" if t.tz else "timestamp"), "plain"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or \
            pa.types.is_fixed_size_binary(t):
        return "bytea", "bytes"
    if pa.types.is_nested(t):
        return "jsonb", "json"
    return "text", "text"


def plan_columns(schema: pa.Schema, json_fields: set[str]) -> tuple[list[Column],
                                                                    dict[str, str]]:
    """The columns and the names that changed ({source: name})."""
    taken = {KEY, GEOMETRY}
    columns, renamed = [], {}
    for field in schema:
        base = launder(field.name)
        name, n = base, 1
        while name in taken:
            n += 1
            suffix = f"_{n}"
            name = base[:63 - len(suffix)] + suffix
        taken.add(name)
        pg_type, kind = _type_of(field.type, field.name in json_fields)
        columns.append(Column(field.name, name, pg_type, kind))
        if name != field.name:
            renamed[field.name] = name
    return columns, renamed


def _json_text(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, list) and value and isinstance(value[0], tuple):
        value = dict(value)  # a map's (key, value) pairs
    return json.dumps(value, default=str, ensure_ascii=False, allow_nan=False) \
        if _finite(value) else json.dumps(_nulls_for_nan(value), default=str)


def _as_json(value: Optional[str]) -> Optional[str]:
    """A JSON field's text as jsonb takes it: GDAL makes a GeoJSON property JSON when its
    features mix types (1, then "A12"), and gives the strings unquoted."""
    if value is None:
        return None
    try:
        json.loads(value, parse_constant=_not_json)  # NaN, Infinity: jsonb refuses them
        return value
    except ValueError:
        return json.dumps(value, ensure_ascii=False)


def _not_json(constant: str) -> None:
    raise ValueError(constant)


def _finite(value: Any) -> bool:
    try:
        json.dumps(value, default=str, allow_nan=False)
        return True
    except ValueError:
        return False


def _nulls_for_nan(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, list):
        return [_nulls_for_nan(v) for v in value]
    if isinstance(value, dict):
        return {k: _nulls_for_nan(v) for k, v in value.items()}
    return value


def convert(table: pa.Table, columns: list[Column]) -> pa.Table:
    """The batch's attributes under their new names, in the form the chunk stores."""
    arrays, names = [], []
    for column in columns:
        values = table.column(column.source)
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        if column.kind == "nan":
            values = pc.if_else(pc.is_nan(values), pa.scalar(None, values.type), values)
        elif column.kind == "json":
            values = pa.array([_json_text(v) for v in values.to_pylist()], pa.string())
        elif column.kind == "json_text":
            values = pa.array([_as_json(v) for v in values.to_pylist()], pa.string())
        elif column.kind == "text":
            values = values.cast(pa.string())
        elif column.kind == "bytes":
            values = pa.array([None if v is None else "\\x" + v.hex()
                               for v in values.to_pylist()], pa.string())
        elif pa.types.is_null(values.type):
            values = values.cast(pa.string())
        elif pa.types.is_large_string(values.type):
            values = values.cast(pa.string())
        arrays.append(values)
        names.append(column.name)
    return pa.table(arrays, names=names) if arrays else pa.table({})
