"""Uploading a file while it is being written: its blocks are staged as the file grows,
and the blob appears only when the file is complete and committed.

    with storage.growing_upload(container, blob, path, content_type=..., metadata=...) as up:
        write_the_file(path)          # e.g. GDAL writing a COG
        check_it(path)
        info = up.commit()            # the blob, whole, in one step

A watcher thread stages each BLOCK_BYTES block of the file once the file has grown a
block past it (the writer has moved on), WATCH_CONCURRENCY at once. A writer may still go back and change what it
wrote (GDAL rewrites a TIFF's header and offsets at the end): at commit every staged
block is read again and compared (SHA-256) with what was staged, and any that changed is
staged again, so the committed blob is the file as it is at commit, byte for byte.
Nothing is visible before the commit: staged blocks are not part of the blob (a blob it
replaces stays whole until then), and blocks never committed are discarded by the
service. If the body raises, nothing is committed.

Block ids carry a random prefix per upload, so two uploads of one blob at once (a task
delivered twice) never mix their blocks: the last commit wins, whole."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from azure.storage.blob import BlobBlock, ContentSettings

if TYPE_CHECKING:
    from infrastructure.blob_storage import BlobInfo, BlobStorage

BLOCK_BYTES = 4 * 1024 * 1024
POLL_SECONDS = 0.05
WATCH_CONCURRENCY = 2  # blocks staged at once while the file is written


class GrowingUpload:
    def __init__(self, storage: "BlobStorage", container: str, blob: str, path: Path,
                 content_type: Optional[str] = None,
                 metadata: Optional[dict[str, str]] = None, concurrency: int = 4):
        self.storage, self.container, self.blob = storage, container, blob
        self.path = Path(path)
        self.content_type, self.metadata = content_type, metadata
        self.concurrency = concurrency
        self._prefix = uuid.uuid4().hex[:16]
        self._digests: dict[int, bytes] = {}  # block index: SHA-256 of what was staged
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None
        self._count_lock = threading.Lock()
        self.staged_early = 0  # blocks staged while the file was written
        self.restaged = 0  # of those, changed by the writer afterwards

    # -- the block list -------------------------------------------------------------------
    def _block_id(self, index: int) -> str:
        return base64.b64encode(f"{self._prefix}-{index:08d}".encode()).decode()

    def _client(self) -> Any:
        return self.storage.service.get_blob_client(self.container, self.blob)

    def _read(self, index: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(index * BLOCK_BYTES)
            return f.read(BLOCK_BYTES)

    def _stage(self, index: int, data: bytes) -> bytes:
        from infrastructure.blob_storage import _translated

        with _translated(self.container, self.blob):
            self._client().stage_block(self._block_id(index), data, length=len(data))
        return hashlib.sha256(data).digest()

    # -- while the file is written --------------------------------------------------------
    def _watch(self) -> None:
        """Stage each block once the file has grown a block past it, a few at once."""
        pending: list[Future] = []
        next_index = 0
        with ThreadPoolExecutor(max_workers=WATCH_CONCURRENCY) as pool:
            try:
                while not self._stop.wait(POLL_SECONDS):
                    try:
                        size = os.stat(self.path).st_size
                    except FileNotFoundError:
                        continue
                    while (next_index + 2) * BLOCK_BYTES <= size and \
                            len(pending) < WATCH_CONCURRENCY:
                        pending.append(pool.submit(self._stage_read, next_index))
                        next_index += 1
                    for done in [f for f in pending if f.done()]:
                        pending.remove(done)
                        index, digest = done.result()
                        self._digests[index] = digest
            except BaseException as exc:  # kept for commit: only a head start is lost
                self._error = exc
            for future in pending:
                try:
                    index, digest = future.result()
                    self._digests[index] = digest
                except BaseException as exc:
                    self._error = exc

    def _stage_read(self, index: int) -> tuple[int, bytes]:
        digest = self._stage(index, self._read(index))
        with self._count_lock:
            self.staged_early += 1
        return index, digest

    def __enter__(self) -> "GrowingUpload":
        self._thread = threading.Thread(target=self._watch, daemon=True,
                                        name=f"growing-upload-{self.blob}")
        self._thread.start()
        return self

    def _halt(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __exit__(self, *exc: Any) -> None:
        self._halt()

    # -- the end --------------------------------------------------------------------------
    def commit(self) -> "BlobInfo":
        """Stage what is left and what changed, then commit: the blob is the file now."""
        from infrastructure.blob_storage import _info, _translated

        self._halt()
        size = self.path.stat().st_size
        count = -(-size // BLOCK_BYTES)  # an empty file: no blocks, an empty blob
        staged = self._digests if self._error is None else {}

        def settle(index: int) -> None:
            data = self._read(index)
            if index in staged:
                if hashlib.sha256(data).digest() == staged[index]:
                    return
                self.restaged += 1
            self._stage(index, data)

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            list(pool.map(settle, range(count)))
        settings = ContentSettings(content_type=self.content_type) \
            if self.content_type else None
        with _translated(self.container, self.blob):
            client = self._client()
            client.commit_block_list([BlobBlock(self._block_id(i)) for i in range(count)],
                                     content_settings=settings, metadata=self.metadata)
            return _info(client.get_blob_properties())
