"""python -m local_host upload CONTAINER PATH...: put files and folders into blob storage.

A folder is uploaded recursively, each file's blob name its path relative to that folder
(forward slashes), as `az storage blob upload-batch --source FOLDER` names them; a file
given directly is named by its file name. The container is created if missing. Goes
through infrastructure/blob_storage.py like the jobs do.
"""

from __future__ import annotations

import mimetypes
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, TextIO

# Azure's rules for a container name.
_CONTAINER_NAME = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*")


class UploadError(Exception):
    """The command cannot run as asked (nothing was uploaded)."""


@dataclass(frozen=True)
class Upload:
    path: Path
    blob: str
    size: int


def check_container_name(name: str) -> None:
    if not (3 <= len(name) <= 63 and _CONTAINER_NAME.fullmatch(name)):
        raise UploadError(
            f"{name!r} is not a valid container name: 3 to 63 characters, lowercase letters, "
            "digits and hyphens, starting and ending with a letter or digit, no two "
            "hyphens in a row (e.g. bronze-rasters)")


def plan_uploads(paths: Iterable[str | Path]) -> list[Upload]:
    """Every file to upload and its blob name, checked before anything is sent."""
    uploads: list[Upload] = []
    for given in paths:
        path = Path(given)
        if path.is_file():
            uploads.append(Upload(path, path.name, path.stat().st_size))
        elif path.is_dir():
            for folder, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    file = Path(folder) / name
                    if file.is_file():  # not a broken link, socket or fifo
                        uploads.append(Upload(file, file.relative_to(path).as_posix(),
                                              file.stat().st_size))
        else:
            raise UploadError(f"{given}: no such file or folder")
    seen: dict[str, Path] = {}
    for upload in uploads:
        if upload.blob in seen:
            raise UploadError(f"{seen[upload.blob]} and {upload.path} would both be blob "
                              f"{upload.blob!r}; upload them in separate commands")
        seen[upload.blob] = upload.path
    return uploads


def upload_paths(container: str, paths: Iterable[str | Path], storage=None,
                 out: Optional[TextIO] = None) -> list[Upload]:
    """Upload files and folders into container (created if missing); returns what was
    uploaded."""
    from infrastructure.blob_storage import get_blob_storage

    check_container_name(container)
    uploads = plan_uploads(paths)
    storage = storage or get_blob_storage()
    if storage.create_container(container) and out is not None:
        print(f"created container {container}", file=out, flush=True)
    for upload in uploads:
        content_type = mimetypes.guess_type(upload.path.name)[0]
        storage.upload_file(container, upload.blob, upload.path, content_type=content_type)
        if out is not None:
            print(f"  {upload.blob} ({upload.size:,} bytes)", file=out, flush=True)
    if out is not None:
        total = sum(u.size for u in uploads)
        print(f"uploaded {len(uploads)} file(s), {total:,} bytes, to container {container} "
              f"({storage.service.url.rstrip('/')}/{container})", file=out, flush=True)
    return uploads
