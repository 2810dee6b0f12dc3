"""The raster jobs' input: the blob downloaded into a working folder (never into memory),
refused when larger than RASTER_MAX_FILE_MB, and its first bytes checked against what a
raster of its name must be, so a text file named .tif fails at once saying what it looks
like.

Every problem with the file itself is a RasterFileError (permanent: the task fails at
once, naming the file and the cause); storage outages stay transient."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import Any, Optional

from config import get_settings
from exceptions import PermanentError
from services.blob_filter import MB
from services.format_sniffing import EXPECTED, SNIFF_BYTES, sniff


class RasterFileError(PermanentError):
    """The raster cannot be read (not a raster, corrupt, truncated, too large); never
    retried."""


# Formats GDAL reads from one file whose content is text.
TEXT_RASTERS = frozenset({"asc", "xyz", "grd"})
# Never opened: a VRT (or a zip) points GDAL at other files and paths, which a job must not
# follow on the host.
REFUSED = {"vrt": "a VRT references other files: upload the raster itself",
           "zip": "a zip archive: upload the raster itself, unzipped"}
# What a content looks like, in words.
LOOKS_LIKE = {"text": "text", "unknown": "unrecognized binary data", "zip": "a zip archive",
              "pdf": "a PDF document", "parquet": "a Parquet file", "jpeg": "a JPEG image",
              "png": "a PNG image", "geopackage": "a GeoPackage", "sqlite": "an SQLite file",
              "netcdf": "a NetCDF file", "hdf5": "an HDF5 file", "tiff": "a TIFF",
              "bigtiff": "a BigTIFF"}


def extension_of(blob_name: str) -> str:
    name = PurePosixPath(blob_name).name
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def check_raster_content(head: bytes, blob_name: str, label: str) -> str:
    """The content's format (services/format_sniffing.py's names) when it may be a raster
    of this name; else a RasterFileError saying what it looks like."""
    found = sniff(head)
    ext = extension_of(blob_name)
    if found == "empty":
        raise RasterFileError(f"{label} is empty (0 bytes): there is no raster to read")
    expected = EXPECTED.get(ext)
    if ext in ("tif", "tiff", "gtiff", "cog") and found not in expected:
        raise RasterFileError(
            f"{label} is not a GeoTIFF: its content looks like "
            f"{LOOKS_LIKE.get(found, found)}, not a TIFF; check the file (it may have been "
            "saved under the wrong name)")
    if ext in REFUSED or found in REFUSED:
        raise RasterFileError(f"{label} is refused: it is {REFUSED.get(ext) or REFUSED[found]}")
    if found == "text" and b"<VRTDataset" in head:
        raise RasterFileError(f"{label} is refused: it is {REFUSED['vrt']}")
    if found in ("text", "parquet", "pdf") and ext not in TEXT_RASTERS:
        raise RasterFileError(
            f"{label} is not a raster: its content looks like {LOOKS_LIKE[found]}")
    if expected is not None and found not in expected and found != "unknown":
        raise RasterFileError(
            f"{label} is not what its extension .{ext} says: its content looks like "
            f"{LOOKS_LIKE.get(found, found)}")
    return found


def max_file_mb() -> float:
    return get_settings().raster_max_file_mb


def _too_large(label: str, size: int, limit: float) -> RasterFileError:
    return RasterFileError(
        f"{label} is {size / MB:,.1f} MB, more than RASTER_MAX_FILE_MB ({limit:g} MB) "
        "allows: raise the setting, or split the raster into tiles")


def download_checked(blobs: Any, container: str, blob: str, info: Any, path: Path,
                     pinned: bool = False) -> Path:
    """Download container/blob (info: its properties) into path: refused
    (RasterFileError) when larger than RASTER_MAX_FILE_MB or when its content cannot be
    a raster of its name. pinned: only the version info describes (a blob replaced
    meanwhile is infrastructure's BlobChangedError, transient; one of another size
    is refused)."""
    label = f"{container}/{blob}"
    limit = max_file_mb()
    if info.size > limit * MB:
        raise _too_large(label, info.size, limit)
    blobs.download_file(container, blob, path, **({"etag": info.etag} if pinned else {}))
    size = path.stat().st_size
    if size > limit * MB:  # replaced by a larger upload since its properties were read
        raise _too_large(label, size, limit)
    if pinned and size != info.size:
        raise RasterFileError(f"{label} changed size while it was read")
    with open(path, "rb") as f:
        check_raster_content(f.read(SNIFF_BYTES), blob, label)
    return path


def fetch_raster(blobs: Any, container: str, blob: str, folder: Path,
                 info: Any = None) -> Path:
    """Download container/blob into folder and return its path (download_checked's
    refusals). info: its properties, when the caller has read them. A missing blob is
    infrastructure's BlobNotFoundError (permanent too)."""
    info = info or blobs.get_properties(container, blob)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return download_checked(blobs, container, blob, info,
                            folder / (PurePosixPath(blob).name or "raster"))


def remove(folder: Optional[Path]) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
