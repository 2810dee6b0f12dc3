"""What some producers write that GDAL hands on as it is and the rest of ingest_vector
cannot take: a Shapefile's .dbf in a legacy encoding that nothing names, and MultiPatch
or TIN surfaces (ESRI's 3D shapes) that GEOS cannot read."""

from __future__ import annotations

import codecs
import glob
import struct
from pathlib import Path
from typing import Optional


def surface_as_multipolygon(wkb: Optional[bytes]) -> Optional[bytes]:
    """A 2D PolyhedralSurface or TIN (a MultiPatch's parts, a 3D building) as the
    MultiPolygon of its faces, a Triangle as a Polygon: the same WKB under other type
    codes (GEOS reads none of them). Other geometries as they are."""
    if wkb is None or len(wkb) < 9:
        return wkb
    order = "<" if wkb[0] == 1 else ">"
    code = struct.unpack_from(f"{order}I", wkb, 1)[0]
    if code == 17:
        return wkb[:1] + struct.pack(f"{order}I", 3) + wkb[5:]
    if code not in (15, 16):
        return wkb
    out = bytearray(wkb)
    struct.pack_into(f"{order}I", out, 1, 6)
    (parts,) = struct.unpack_from(f"{order}I", wkb, 5)
    at = 9
    for _ in range(parts):
        part = "<" if wkb[at] == 1 else ">"
        struct.pack_into(f"{part}I", out, at + 1, 3)
        (rings,) = struct.unpack_from(f"{part}I", wkb, at + 5)
        at += 9
        for _ in range(rings):
            (points,) = struct.unpack_from(f"{part}I", wkb, at)
            at += 4 + 16 * points
    return bytes(out)


def dbf_encoding(shp: Path) -> Optional[str]:
    """The encoding to read a Shapefile's .dbf with when nothing names it (no .cpg beside
    it, no language driver id in its header): GDAL then hands its bytes on undecoded, and
    text in a legacy encoding cannot be loaded. UTF-8 if every byte decodes as such (None:
    as GDAL reads it), else Windows-1252 (what such files are written in: Latin-1 with
    the printable 0x80-0x9F), else Latin-1 (every byte is a character)."""
    siblings = {p.suffix.lower(): p for p in shp.parent.glob(f"{glob.escape(shp.stem)}.*")}
    dbf = siblings.get(".dbf")
    if ".cpg" in siblings or dbf is None:
        return None
    with open(dbf, "rb") as f:
        header = f.read(32)
        if len(header) < 32 or header[29] != 0:
            return None  # the language driver id names the code page: GDAL uses it
        f.seek(int.from_bytes(header[8:10], "little"))  # the records (the header is binary)
        candidates = {name: codecs.getincrementaldecoder(name)()
                      for name in ("utf-8", "cp1252")}
        while candidates and (block := f.read(1 << 22)):
            for name, decoder in list(candidates.items()):
                try:
                    decoder.decode(block)
                except UnicodeDecodeError:
                    del candidates[name]
    if "utf-8" in candidates:
        return None
    return "CP1252" if candidates else "ISO-8859-1"
