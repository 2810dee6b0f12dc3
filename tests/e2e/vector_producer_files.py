"""Vector files as other producers write them, made byte by byte (CI has no GDAL command
line tools, and pyogrio never writes some of these): Shapefiles with M values or a .dbf in
a legacy encoding, GeoParquet with coordinates GDAL would never write."""

from __future__ import annotations

import io
import json
import struct
from typing import Optional

WGS84_PRJ = (b'GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,'
             b'298.257223563]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]]')
POINT, POLYLINE, POINT_Z, POLYLINE_Z, POINT_M, POLYLINE_M = 1, 3, 11, 13, 21, 23


def _record(shape_type: int, coords: list[tuple[float, ...]]) -> bytes:
    """One shape's content: a point, or a polyline of one part; its Z and M (ESRI's
    order: X Y, then the Zs, then the Ms)."""
    xs, ys = [c[0] for c in coords], [c[1] for c in coords]
    has_z = shape_type in (POINT_Z, POLYLINE_Z)
    has_m = shape_type in (POINT_M, POLYLINE_M) or has_z
    if shape_type in (POINT, POINT_Z, POINT_M):
        (x, y, *rest) = coords[0]
        out = struct.pack("<idd", shape_type, x, y)
        return out + b"".join(struct.pack("<d", v) for v in rest)
    out = struct.pack("<i4dii", shape_type, min(xs), min(ys), max(xs), max(ys), 1,
                      len(coords)) + struct.pack("<i", 0)
    out += b"".join(struct.pack("<dd", c[0], c[1]) for c in coords)
    for index, present in ((2, has_z), (3 if has_z else 2, has_m)):
        if present:
            values = [c[index] for c in coords]
            out += struct.pack("<dd", min(values), max(values))
            out += b"".join(struct.pack("<d", v) for v in values)
    return out


def _header(shape_type: int, length_bytes: int, bbox: tuple[float, ...]) -> bytes:
    return (struct.pack(">7i", 9994, 0, 0, 0, 0, 0, length_bytes // 2)
            + struct.pack("<ii4d4d", 1000, shape_type, *bbox, 0, 0, 0, 0))


def _dbf(fields: list[str], rows: list[list[str]], encoding: str, ldid: int) -> bytes:
    width = 40
    header = struct.pack("<BBBBIHH20x", 3, 126, 1, 1, len(rows), 33 + 32 * len(fields),
                         1 + width * len(fields))
    header = header[:29] + bytes([ldid]) + header[30:]
    descriptors = b"".join(struct.pack("<11sc4xBB14x", name.encode("ascii"), b"C",
                                       width, 0) for name in fields)
    body = b"".join(b" " + b"".join(v.encode(encoding).ljust(width, b" ")
                                    for v in row) for row in rows)
    return header + descriptors + b"\r" + body + b"\x1a"


def shapefile(shape_type: int, shapes: list[list[tuple[float, ...]]],
              fields: list[str], rows: list[list[str]], encoding: str = "utf-8",
              cpg: Optional[str] = "UTF-8", ldid: int = 0) -> dict[str, bytes]:
    """A Shapefile's files by extension: shp, shx, dbf, prj (WGS 84) and cpg (unless
    None: a .dbf whose encoding only its bytes tell)."""
    records = [_record(shape_type, coords) for coords in shapes]
    xs = [c[0] for coords in shapes for c in coords]
    ys = [c[1] for coords in shapes for c in coords]
    bbox = (min(xs), min(ys), max(xs), max(ys))
    shp, shx = io.BytesIO(), io.BytesIO()
    offset = 100
    for number, content in enumerate(records, start=1):
        shp.write(struct.pack(">ii", number, len(content) // 2) + content)
        shx.write(struct.pack(">ii", offset // 2, len(content) // 2))
        offset += 8 + len(content)
    files = {"shp": _header(shape_type, offset, bbox) + shp.getvalue(),
             "shx": _header(shape_type, 100 + 8 * len(records), bbox) + shx.getvalue(),
             "dbf": _dbf(fields, rows, encoding, ldid), "prj": WGS84_PRJ}
    if cpg is not None:
        files["cpg"] = cpg.encode()
    return files


def point_wkb(x: float, y: float) -> bytes:
    return struct.pack("<BIdd", 1, 1, x, y)


def polygon_wkb(ring: list[tuple[float, float]]) -> bytes:
    return struct.pack("<BIII", 1, 3, 1, len(ring)) + b"".join(
        struct.pack("<dd", x, y) for x, y in ring)


def geoparquet(wkb: list[Optional[bytes]], types: list[str], **columns: list) -> bytes:
    """A GeoParquet file of these WKB values (no CRS: OGC:CRS84) and columns, written
    with pyarrow alone as other writers do."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({**columns, "geometry": pa.array(wkb, pa.binary())})
    geo = {"version": "1.0.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": types}}}
    table = table.replace_schema_metadata({b"geo": json.dumps(geo).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def multipatch(faces: list[list[tuple[float, float, float]]]) -> dict[str, bytes]:
    """A MultiPatch Shapefile (ESRI's 3D shapes, type 31) of one feature per face, each a
    triangle strip (GDAL reads it as a TIN), with a UTF-8 .dbf of one column."""
    records = []
    for strip in faces:
        xs, ys, zs = zip(*strip)
        content = struct.pack("<i4dii", 31, min(xs), min(ys), max(xs), max(ys), 1,
                              len(strip)) + struct.pack("<ii", 0, 0)  # part 0: a strip
        content += b"".join(struct.pack("<dd", x, y) for x, y, _ in strip)
        content += struct.pack("<dd", min(zs), max(zs)) + struct.pack(f"<{len(zs)}d", *zs)
        records.append(content)
    xs = [p[0] for f in faces for p in f]
    ys = [p[1] for f in faces for p in f]
    bbox = (min(xs), min(ys), max(xs), max(ys))
    shp, shx, offset = io.BytesIO(), io.BytesIO(), 100
    for number, content in enumerate(records, start=1):
        shp.write(struct.pack(">ii", number, len(content) // 2) + content)
        shx.write(struct.pack(">ii", offset // 2, len(content) // 2))
        offset += 8 + len(content)
    return {"shp": _header(31, offset, bbox) + shp.getvalue(),
            "shx": _header(31, 100 + 8 * len(records), bbox) + shx.getvalue(),
            "dbf": _dbf(["part"], [[f"f{i}"] for i in range(len(faces))], "utf-8", 0),
            "prj": WGS84_PRJ, "cpg": b"UTF-8"}
