"""A blob's real format from its first bytes, and whether its extension agrees.
Signatures: TIFF and BigTIFF (II*/MM*, II+/MM+), SQLite (GeoPackage by its application id
at offset 68), ZIP, PDF, JPEG, PNG, NetCDF classic, HDF5 (NetCDF-4), Parquet, and text."""

from __future__ import annotations

from typing import Optional

SNIFF_BYTES = 512  # what is read of each blob

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"),
    (b"II+\x00", "bigtiff"), (b"MM\x00+", "bigtiff"),
    (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"PK\x07\x08", "zip"),
    (b"%PDF-", "pdf"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\x89HDF\r\n\x1a\n", "hdf5"),
    (b"CDF\x01", "netcdf"), (b"CDF\x02", "netcdf"), (b"CDF\x05", "netcdf"),
    (b"PAR1", "parquet"),
)
_GEOPACKAGE_IDS = (b"GPKG", b"GP10", b"GP11")

# What each extension's content may be; extensions not listed are not judged.
EXPECTED: dict[str, frozenset[str]] = {
    **dict.fromkeys(("tif", "tiff", "gtiff", "cog"), frozenset({"tiff", "bigtiff"})),
    "gpkg": frozenset({"geopackage", "sqlite"}),
    **dict.fromkeys(("sqlite", "sqlite3", "db"), frozenset({"sqlite", "geopackage"})),
    **dict.fromkeys(("zip", "kmz"), frozenset({"zip"})),
    "pdf": frozenset({"pdf"}),
    **dict.fromkeys(("jpg", "jpeg"), frozenset({"jpeg"})),
    "png": frozenset({"png"}),
    "nc": frozenset({"netcdf", "hdf5"}),
    **dict.fromkeys(("h5", "hdf5", "he5", "hdf"), frozenset({"hdf5"})),
    **dict.fromkeys(("parquet", "geoparquet"), frozenset({"parquet"})),
    # an empty text file is still a text file
    **dict.fromkeys(("txt", "csv", "tsv", "json", "geojson", "xml", "kml", "gml", "prj",
                     "wkt", "md"), frozenset({"text", "empty"})),
}


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut off at the end
            return False
        text = head[:exc.start].decode("utf-8")
    printable = sum(c.isprintable() or c in "\r\n\t" for c in text)
    return printable >= 0.95 * max(len(text), 1)


def sniff(head: bytes) -> str:
    """The format of a blob whose first bytes are `head`: one of tiff, bigtiff,
    geopackage, sqlite, zip, pdf, jpeg, png, hdf5, netcdf, parquet, text, empty,
    unknown."""
    if not head:
        return "empty"
    if head.startswith(b"SQLite format 3\x00"):
        return "geopackage" if head[68:72] in _GEOPACKAGE_IDS else "sqlite"
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    return "text" if _looks_like_text(head) else "unknown"


def mismatch(extension: str, fmt: str) -> Optional[bool]:
    """True when the extension promises another format than the content's; None when
    the extension is not one this judges."""
    expected = EXPECTED.get(extension)
    return None if expected is None else fmt not in expected
