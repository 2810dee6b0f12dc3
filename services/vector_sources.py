"""ingest_vector's input: the blob (and a Shapefile's siblings) downloaded into a working
folder, its content checked against its extension, and an archive (zip, kmz) unpacked
with limits on paths and size. The result names the one file to read and how.

Every problem with the file itself is a VectorFileError (permanent: the task fails at
once, naming the file and the cause); storage outages stay transient."""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Optional

from config import get_settings
from exceptions import PermanentError
from infrastructure.blob_storage import BlobNotFoundError
from services.blob_filter import MB
from services.format_sniffing import SNIFF_BYTES, sniff

# What each format's first bytes must be (services/format_sniffing.py's names).
CONTENT = {"gpkg": {"geopackage", "sqlite"}, "zip": {"zip"}, "kmz": {"zip"},
           "parquet": {"parquet"}, "csv": {"text"}, "geojson": {"text"},
           "json": {"text"}, "kml": {"text"}, "shp": {"shapefile"}}
FORMAT_NAMES = {"gpkg": "a GeoPackage", "zip": "a zip archive", "kmz": "a KMZ (zip) file",
                "parquet": "a (Geo)Parquet file", "csv": "a CSV text file",
                "geojson": "a GeoJSON text file", "json": "a GeoJSON text file",
                "kml": "a KML text file", "shp": "a Shapefile"}
SHAPEFILE_CODE = b"\x00\x00\x27\x0a"
SHP_REQUIRED = ("shx", "dbf")
SHP_OPTIONAL = ("prj", "cpg")
# What a zip may hold for ingest_vector to read (first match wins when there is one).
READABLE_IN_ZIP = ("shp", "gpkg", "geojson", "json", "kml", "csv", "parquet")


class VectorFileError(PermanentError):
    """The input file cannot be read as asked; never retried."""


@dataclass
class SourceFile:
    path: Path
    fmt: str  # csv, geojson, gpkg, kml, shp, parquet
    label: str  # how the user knows it: container/blob[!member]
    extras: dict[str, Any] = field(default_factory=dict)


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(SNIFF_BYTES)


def content_of(head: bytes) -> str:
    if head.startswith(SHAPEFILE_CODE):
        return "shapefile"
    return sniff(head)


def check_content(path: Path, fmt: str, label: str) -> None:
    """The file is what its format says, or a VectorFileError saying what it looks like."""
    head = _head(path)
    found = content_of(head)
    if found == "empty":
        raise VectorFileError(f"{label} is empty (0 bytes): there is nothing to load")
    if found == "unknown" and "text" in CONTENT[fmt] and b"\x00" not in head:
        found = "text"  # text in another encoding than UTF-8 (GDAL reads it)
    if found not in CONTENT[fmt]:
        raise VectorFileError(
            f"{label} is not {FORMAT_NAMES[fmt]}: its content looks like "
            f"{'unrecognized binary data' if found == 'unknown' else found}; check the "
            "file, or give file_extension for its real format")
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n\x1e")  # \x1e: a GeoJSON text sequence's
    if fmt in ("geojson", "json") and not text.startswith(b"{"):
        raise VectorFileError(f"{label} is not GeoJSON: it does not start with '{{'")
    if fmt == "kml" and not text.startswith(b"<"):
        raise VectorFileError(f"{label} is not KML: it does not start with an XML tag")


def _limit_mb(name: str) -> float:
    settings = get_settings()
    return {"VECTOR_MAX_FILE_MB": settings.vector_max_file_mb,
            "VECTOR_MAX_EXTRACTED_MB": settings.vector_max_extracted_mb}[name]


def _download(blobs: Any, container: str, blob: str, folder: Path,
              budget: list[float]) -> Path:
    info = blobs.get_properties(container, blob)
    budget[0] -= info.size
    if budget[0] < 0:
        raise VectorFileError(
            f"{container}/{blob} is {info.size / MB:,.1f} MB: together with its siblings "
            f"more than VECTOR_MAX_FILE_MB ({_limit_mb('VECTOR_MAX_FILE_MB'):g} MB) allows")
    path = folder / PurePosixPath(blob).name
    blobs.download_file(container, blob, path)
    return path


def _sibling(blob_name: str, ext: str) -> list[str]:
    stem, own = blob_name.rsplit(".", 1)
    upper = own.isupper()
    first = ext.upper() if upper else ext
    return [f"{stem}.{first}", f"{stem}.{first.swapcase()}"]


def fetch(blobs: Any, container: str, blob_name: str, fmt: str, converter: dict[str, Any],
          folder: Path) -> SourceFile:
    """Download the blob (and a Shapefile's siblings) into folder and return the file to
    read; an archive is unpacked there with the limits."""
    label = f"{container}/{blob_name}"
    budget = [_limit_mb("VECTOR_MAX_FILE_MB") * MB]
    path = _download(blobs, container, blob_name, folder, budget)
    check_content(path, fmt, label)
    if fmt == "shp":
        for ext in SHP_REQUIRED + SHP_OPTIONAL:
            for candidate in _sibling(blob_name, ext):
                try:
                    _download(blobs, container, candidate, folder, budget)
                    break
                except BlobNotFoundError:
                    continue
            else:
                if ext in SHP_REQUIRED:
                    raise VectorFileError(
                        f"{label} is a Shapefile without its .{ext}: upload "
                        f"{_sibling(blob_name, ext)[0]} beside it (a Shapefile is read "
                        f"with its {', '.join('.' + e for e in SHP_REQUIRED)} siblings)")
        return SourceFile(path, "shp", label, {"has_prj": any(
            (folder / PurePosixPath(c).name).exists() for c in _sibling(blob_name, "prj"))})
    if fmt in ("zip", "kmz"):
        return unpack(path, fmt, converter, folder / "unpacked", label)
    return SourceFile(path, "geojson" if fmt == "json" else fmt, label)


def _safe_members(archive: zipfile.ZipFile, label: str) -> list[zipfile.ZipInfo]:
    members = []
    for info in archive.infolist():
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise VectorFileError(
                f"{label} holds an entry whose path escapes its folder ({name!r}): the "
                "archive is refused")
        if not info.is_dir():
            members.append(info)
    return members


def _choose(members: list[zipfile.ZipInfo], fmt: str, converter: dict[str, Any],
            label: str) -> zipfile.ZipInfo:
    def ext(info: zipfile.ZipInfo) -> str:
        return info.filename.rsplit(".", 1)[-1].lower() if "." in info.filename else ""

    visible = [m for m in members if not PurePosixPath(m.filename).name.startswith(".")
               and "__MACOSX" not in m.filename]
    if fmt == "kmz":
        kml = [m for m in visible if ext(m) == "kml"]
        if not kml:
            raise VectorFileError(f"{label} is a KMZ without a .kml file inside")
        return next((m for m in kml if PurePosixPath(m.filename).name == "doc.kml"), kml[0])
    shapefiles = [m for m in visible if ext(m) == "shp"]
    wanted = converter.get("shp_name")
    if wanted:
        names = {m.filename: m for m in shapefiles}
        names.update({PurePosixPath(m.filename).name: m for m in shapefiles})
        key = wanted if wanted in names else f"{wanted}.shp"
        if key not in names:
            raise VectorFileError(
                f"{label} holds no Shapefile named {wanted!r}; it holds: "
                f"{', '.join(m.filename for m in shapefiles) or 'no Shapefile'} "
                "(converter_params.shp_name)")
        return names[key]
    if len(shapefiles) > 1:
        raise VectorFileError(
            f"{label} holds {len(shapefiles)} Shapefiles "
            f"({', '.join(m.filename for m in shapefiles)}): name one with "
            "converter_params.shp_name")
    if shapefiles:
        return shapefiles[0]
    for kind in READABLE_IN_ZIP[1:]:
        found = [m for m in visible if ext(m) == kind]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise VectorFileError(
                f"{label} holds several .{kind} files "
                f"({', '.join(m.filename for m in found)}): zip one file per job")
    raise VectorFileError(
        f"{label} holds no file ingest_vector can read (looked for "
        f"{', '.join('.' + k for k in READABLE_IN_ZIP)}); it holds: "
        f"{', '.join(m.filename for m in visible[:20]) or 'nothing'}")


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path,
             budget: list[float], label: str) -> Path:
    """One entry, counted against the budget as it is written (the sizes an archive
    declares can lie)."""
    path = target / PurePosixPath(info.filename.replace("\\", "/")).name
    with archive.open(info) as src, open(path, "wb") as dst:
        while True:
            block = src.read(1024 * 1024)
            if not block:
                break
            budget[0] -= len(block)
            if budget[0] < 0:
                raise VectorFileError(
                    f"{label} expands to more than VECTOR_MAX_EXTRACTED_MB "
                    f"({_limit_mb('VECTOR_MAX_EXTRACTED_MB'):g} MB) allows: the archive "
                    "is refused")
            dst.write(block)
    return path


def unpack(path: Path, fmt: str, converter: dict[str, Any], target: Path,
           label: str) -> SourceFile:
    """The file to read from a zip or kmz, and its siblings (a Shapefile's), extracted
    into target; paths that escape and archives that expand past the limit are refused."""
    target.mkdir(parents=True, exist_ok=True)
    budget = [_limit_mb("VECTOR_MAX_EXTRACTED_MB") * MB]
    try:
        with zipfile.ZipFile(path) as archive:
            members = _safe_members(archive, label)
            declared = sum(m.file_size for m in members)
            if declared > budget[0]:
                raise VectorFileError(
                    f"{label} would expand to {declared / MB:,.1f} MB, more than "
                    f"VECTOR_MAX_EXTRACTED_MB ({_limit_mb('VECTOR_MAX_EXTRACTED_MB'):g} "
                    "MB) allows: the archive is refused")
            chosen = _choose(members, fmt, converter, label)
            inner = chosen.filename.rsplit(".", 1)[-1].lower()
            stem = chosen.filename.rsplit(".", 1)[0]
            wanted = [chosen]
            if inner == "shp":
                wanted += [m for m in members if m is not chosen
                           and m.filename.rsplit(".", 1)[0] == stem]
            extracted = {m.filename: _extract(archive, m, target, budget, label)
                         for m in wanted}
    except zipfile.BadZipFile as exc:
        raise VectorFileError(f"{label} is not a readable zip archive ({exc}): it may be "
                              "truncated or corrupt") from None
    except (zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError) as exc:
        raise VectorFileError(f"{label} cannot be unpacked: {exc}") from None
    inner_label = f"{label}!{chosen.filename}"
    inner_fmt = "kml" if fmt == "kmz" else ("geojson" if inner == "json" else inner)
    main = extracted[chosen.filename]
    if inner_fmt == "shp":
        exts = {p.suffix.lower().lstrip(".") for p in extracted.values()}
        for ext in SHP_REQUIRED:
            if ext not in exts:
                raise VectorFileError(
                    f"{inner_label} is a Shapefile without its .{ext} in the archive")
        check_content(main, "shp", inner_label)
        return SourceFile(main, "shp", inner_label, {"has_prj": "prj" in exts})
    check_content(main, inner_fmt, inner_label)
    return SourceFile(main, inner_fmt, inner_label)


def remove(folder: Optional[Path]) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
