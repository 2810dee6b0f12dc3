"""process_raster's source, downloaded once per instance: stage 1 (validate) downloads it
into the instance's temporary disk and leaves it there for stage 2 (one COG task per
tier), which would otherwise download the same bytes again; stage 3 (or the cleanup)
removes it.

An entry is one version of one blob: its name holds a hash of container/blob and the
blob's etag, and the download asks storage for exactly that version (a blob replaced in
between is a new entry, never a mix). It is written whole under a temporary name, then
renamed. Users hold a shared lock on it (fcntl.flock on a lock file beside it, which is
never removed: between processes and between threads alike) while they read it, so it is
never removed under a task; a download holds the lock exclusively. The entries together stay under RASTER_SOURCE_CACHE_MB (least
recently used out first, in use never) and none outlives KEEP_SECONDS unused; an entry
is kept only where the disk keeps twice its size free beside it (a COG task's temporary
file and output), else the task downloads into its own folder, as with the setting at
0.

A task on another instance finds no entry and downloads: the cache saves work, it is
never needed for correctness."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from config import get_settings
from services.blob_filter import MB
from services.raster_sources import download_checked, fetch_raster

KEEP_SECONDS = 3600  # an entry unused this long is removed by the next download
WORK_FACTOR = 2  # disk kept free beside an entry, in entry sizes (a COG's temp and output)


def cache_root() -> Path:
    return Path(tempfile.gettempdir()) / "geojobs-raster-sources"


def _entry_dir(blobs: Any, container: str, blob: str) -> Path:
    """The blob's folder: by its URL (the account's, the container's and its name)."""
    digest = hashlib.sha256(blobs.url(container, blob).encode()).hexdigest()[:32]
    return cache_root() / digest


def _version_name(info: Any, blob: str) -> str:
    """One version's file name: its etag, size and last-modified time, and the blob's own
    name (GDAL picks some drivers by the extension)."""
    safe = "".join(c for c in info.etag if c.isalnum())[:64] or "noetag"
    stamp = int(info.last_modified.timestamp() * 1000)
    return f"{safe}-{info.size}-{stamp}-{PurePosixPath(blob).name or 'raster'}"


@contextmanager
def _flock(path: Path, mode: int) -> Iterator[bool]:
    """A lock on path's lock file; yields whether it was taken (non-blocking modes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, mode)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_file(source: Path) -> Path:
    return source.with_name(source.name + ".lock")


def _entries() -> list[tuple[Path, os.stat_result]]:
    """The entries and their stat (one removed meanwhile by another task is left out)."""
    root = cache_root()
    found = []
    for folder in (root.iterdir() if root.is_dir() else ()):
        try:
            listed = list(folder.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            continue
        for path in listed:
            if not path.name.endswith((".lock", ".part")):
                try:
                    found.append((path, path.stat()))
                except FileNotFoundError:
                    continue
    return found


def _free_bytes() -> int:
    return shutil.disk_usage(cache_root()).free


def _make_room(room_for: int, limit: int) -> bool:
    """Remove unused entries: those unused for KEEP_SECONDS, then the least recently used
    until room_for more bytes fit under limit and leave the disk room for the work on
    them (a COG task writes a temporary file and its output beside the source: twice the
    source again). An entry in use (locked) is kept; one another task removes meanwhile
    is simply gone. Returns whether the new entry fits."""
    now = time.time()
    entries = sorted(_entries(), key=lambda e: e[1].st_mtime)
    total = sum(stat.st_size for _, stat in entries)
    freed = 0

    def fits() -> bool:
        return total + room_for <= limit and \
            _free_bytes() + freed - room_for >= WORK_FACTOR * room_for

    for path, stat in entries:
        stale = now - stat.st_mtime > KEEP_SECONDS
        if not stale and fits():
            break
        with _flock(_lock_file(path), fcntl.LOCK_EX | fcntl.LOCK_NB) as taken:
            if taken:
                path.unlink(missing_ok=True)
                total -= stat.st_size
    return fits()


@contextmanager
def raster_source(blobs: Any, container: str, blob: str, work: Path,
                  info: Any = None) -> Iterator[Path]:
    """The blob's raster as a local file, for reading only, while the block runs: the
    instance's cached copy (downloaded now if there is none), or with the cache off (or
    the file too large for it) a download into the folder `work`. info: the blob's
    properties, when the caller has read them. Raises as fetch_raster does
    (RasterFileError, BlobNotFoundError)."""
    settings = get_settings()
    limit = int(settings.raster_source_cache_mb * MB)
    info = info or blobs.get_properties(container, blob)
    if info.size > settings.raster_max_file_mb * MB or info.size > limit:
        yield fetch_raster(blobs, container, blob, work, info)  # the limit's error
        return
    path = _entry_dir(blobs, container, blob) / _version_name(info, blob)
    lock = _lock_file(path)
    with _flock(lock, fcntl.LOCK_SH):
        if path.is_file() and path.stat().st_size == info.size:
            os.utime(path)
            yield path
            return
    with _flock(lock, fcntl.LOCK_EX):
        if not (path.is_file() and path.stat().st_size == info.size) and \
                not _make_room(info.size, limit):
            path = None  # no room to keep it: a download of the task's own, below
        elif not (path.is_file() and path.stat().st_size == info.size):
            part = path.with_name(path.name + ".part")
            try:
                os.replace(download_checked(blobs, container, blob, info, part, pinned=True),
                           path)
            finally:
                part.unlink(missing_ok=True)
    # Readers hold the shared lock; between the two a removal may have come first.
    with _flock(lock, fcntl.LOCK_SH):
        if path is not None and path.is_file():
            os.utime(path)
            yield path
            return
    yield fetch_raster(blobs, container, blob, work, info)


def release_source(blobs: Any, container: str, blob: str) -> int:
    """Remove this blob's entries on this instance (every version) unless in use; returns
    how many were removed."""
    folder = _entry_dir(blobs, container, blob)
    removed = 0
    if not folder.is_dir():
        return 0
    for path in list(folder.iterdir()):
        if path.name.endswith((".lock", ".part")) or not path.is_file():
            continue
        with _flock(_lock_file(path), fcntl.LOCK_EX | fcntl.LOCK_NB) as taken:
            if taken:
                path.unlink(missing_ok=True)
                removed += 1
    return removed
