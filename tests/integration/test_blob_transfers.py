"""Transfers of whole files against a real Azurite: a file uploaded while it is written
(infrastructure/blob_upload.py) and a download pinned to one version of a blob."""

from __future__ import annotations

import io
import os
import threading

import pytest

from infrastructure import blob_upload
from infrastructure.blob_storage import BlobChangedError, BlobNotFoundError

BLOCK = 64 * 1024


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(blob_upload, "BLOCK_BYTES", BLOCK)
    monkeypatch.setattr(blob_upload, "POLL_SECONDS", 0.005)


def write_slowly(path, parts: list[bytes], wrote: threading.Event, go_on: threading.Event):
    """Append the parts one by one, then (once told) go back and change the first bytes
    and a byte in the middle, as GDAL does with a TIFF's header at the end."""
    with open(path, "wb") as f:
        for part in parts:
            f.write(part)
            f.flush()
        wrote.set()
        go_on.wait(10)
        f.seek(0)
        f.write(b"HEADER")
        f.seek(5 * BLOCK + 7)
        f.write(b"!")


def test_a_growing_file_is_staged_while_written_and_committed_whole(
        blob_storage, blob_container, small_blocks, tmp_path):
    path = tmp_path / "cog.tif"
    parts = [os.urandom(BLOCK // 2 + i) for i in range(40)]  # about 20 blocks
    wrote, go_on = threading.Event(), threading.Event()
    with blob_storage.growing_upload(blob_container, "out/cog.tif", path,
                                     content_type="image/tiff",
                                     metadata={"job": "j1"}) as upload:
        writer = threading.Thread(target=write_slowly, args=(path, parts, wrote, go_on))
        writer.start()
        assert wrote.wait(10)
        deadline = threading.Event()
        while upload.staged_early < 10 and not deadline.wait(0.01):
            pass
        go_on.set()
        writer.join()
        # staged blocks are not the blob: nothing is visible before the commit
        with pytest.raises(BlobNotFoundError):
            blob_storage.get_properties(blob_container, "out/cog.tif")
        info = upload.commit()
    expected = path.read_bytes()
    assert expected.startswith(b"HEADER") and expected[5 * BLOCK + 7:5 * BLOCK + 8] == b"!"
    got = io.BytesIO()
    blob_storage.download_to(blob_container, "out/cog.tif", got)
    assert got.getvalue() == expected
    assert info.size == len(expected)
    assert info.content_type == "image/tiff" and info.metadata == {"job": "j1"}
    assert upload.staged_early >= 10  # a head start was taken while the file grew
    assert upload.restaged == 2  # the blocks the writer changed afterwards, and only those


def test_an_upload_whose_writer_fails_commits_nothing(blob_storage, blob_container,
                                                      small_blocks, tmp_path):
    blob_storage.upload_from(blob_container, "out/cog.tif", io.BytesIO(b"the old one"))
    path = tmp_path / "cog.tif"
    with pytest.raises(RuntimeError, match="conversion failed"):
        with blob_storage.growing_upload(blob_container, "out/cog.tif", path):
            path.write_bytes(os.urandom(10 * BLOCK))
            raise RuntimeError("conversion failed")
    got = io.BytesIO()
    blob_storage.download_to(blob_container, "out/cog.tif", got)
    assert got.getvalue() == b"the old one"  # the blob it would have replaced, whole


def test_an_empty_file_becomes_an_empty_blob(blob_storage, blob_container, tmp_path):
    path = tmp_path / "empty"
    with blob_storage.growing_upload(blob_container, "empty", path) as upload:
        path.write_bytes(b"")
        assert upload.commit().size == 0


def test_a_download_pinned_to_a_version_refuses_a_replaced_blob(blob_storage,
                                                                blob_container, tmp_path):
    first = blob_storage.upload_from(blob_container, "src.tif", io.BytesIO(b"one" * 1000))
    assert blob_storage.download_file(blob_container, "src.tif", tmp_path / "a",
                                      etag=first.etag) == 3000
    blob_storage.upload_from(blob_container, "src.tif", io.BytesIO(b"two" * 1000))
    with pytest.raises(BlobChangedError, match="replaced while it was read"):
        blob_storage.download_file(blob_container, "src.tif", tmp_path / "b",
                                   etag=first.etag)
