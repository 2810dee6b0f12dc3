"""validate_raster_job's handler: download the raster to a temporary folder (never into
memory), validate it there (services/raster_validation.py), remove the folder.

A file that cannot be read as a raster raises RasterFileError (permanent: the task fails
at once, naming the file and the cause); a storage outage stays transient and is retried.
Running it twice does no harm: it only reads."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from infrastructure.blob_storage import get_blob_storage
from services.raster_sources import fetch_raster, remove
from services.raster_validation import validate_raster


def validate_raster_task(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    container, blob = params["container_name"], params["blob_name"]
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="validate-raster-"))
    try:
        path = fetch_raster(get_blob_storage(), container, blob, folder)
        size = path.stat().st_size
        downloaded = time.monotonic()
        report = validate_raster(str(path), f"{container}/{blob}", params)
    finally:
        remove(folder)
    return {**report, "file_size": size,
            "seconds": {"download": round(downloaded - started, 3),
                        "validate": round(time.monotonic() - downloaded, 3)}}
