"""infrastructure/blob_storage.py against a real Azurite (the session's `azurite` fixture):
paged listing, prefixes, properties and metadata, byte ranges, streamed transfers larger
than a chunk, missing containers and blobs, unreachable storage."""

from __future__ import annotations

import io
import os
import socket
import time

import pytest

from config import get_settings, reset_settings
from infrastructure.blob_storage import (
    CHUNK_BYTES, BlobNotFoundError, BlobStorage, StorageUnavailableError, get_blob_storage,
)
from local_host.azurite import connection_string
from local_host.storage import zone_containers


def put(storage: BlobStorage, container: str, blob: str, data: bytes, **kwargs):
    return storage.upload_from(container, blob, io.BytesIO(data), length=len(data), **kwargs)


def test_fixture_installs_the_storage_with_fresh_zone_containers(blob_storage):
    assert get_blob_storage() is blob_storage
    names = zone_containers(get_settings())
    assert len(set(names)) == 7
    for name in names:
        assert blob_storage.container_exists(name)
        assert list(blob_storage.list_blobs(name)) == []
    assert get_settings().bronze_rasters_container.startswith("bronze-rasters-")


def test_listing_goes_page_by_page_in_name_order(blob_storage, blob_container):
    names = [f"tiles/{i:03d}.tif" for i in range(23)]
    for name in reversed(names):
        put(blob_storage, blob_container, name, name.encode())
    pages = blob_storage.service.get_container_client(blob_container).list_blobs(
        results_per_page=5).by_page()
    assert len(list(pages)) == 5  # the service really pages at this size

    listed = list(blob_storage.list_blobs(blob_container, page_size=5))
    assert [b.name for b in listed] == names
    assert all(b.size == len(b.name) for b in listed)


def test_listing_under_a_prefix(blob_storage, blob_container):
    for name in ("a/1.txt", "a/2.txt", "ab.txt", "b/1.txt"):
        put(blob_storage, blob_container, name, b"x")
    assert [b.name for b in blob_storage.list_blobs(blob_container, prefix="a/")] == \
        ["a/1.txt", "a/2.txt"]
    assert [b.name for b in blob_storage.list_blobs(blob_container, prefix="a")] == \
        ["a/1.txt", "a/2.txt", "ab.txt"]
    assert list(blob_storage.list_blobs(blob_container, prefix="zzz")) == []
    assert len(list(blob_storage.list_blobs(blob_container, prefix=""))) == 4


def test_properties_and_metadata(blob_storage, blob_container):
    written = put(blob_storage, blob_container, "dem/tile.tif", b"0123456789",
                  content_type="image/tiff", metadata={"source": "survey", "epsg": "4326"})
    info = blob_storage.get_properties(blob_container, "dem/tile.tif")
    assert info == written
    assert (info.name, info.size, info.content_type) == ("dem/tile.tif", 10, "image/tiff")
    assert info.metadata == {"source": "survey", "epsg": "4326"}
    assert info.etag and '"' not in info.etag
    assert info.last_modified.tzinfo is not None

    listed = list(blob_storage.list_blobs(blob_container, include_metadata=True))
    assert listed[0].metadata == {"source": "survey", "epsg": "4326"}
    assert listed[0].etag == info.etag and listed[0].content_type == "image/tiff"
    assert list(blob_storage.list_blobs(blob_container))[0].metadata == {}

    put(blob_storage, blob_container, "dem/tile.tif", b"changed")
    assert blob_storage.get_properties(blob_container, "dem/tile.tif").etag != info.etag


def test_read_range(blob_storage, blob_container):
    put(blob_storage, blob_container, "bytes.bin", bytes(range(100)))
    assert blob_storage.read_range(blob_container, "bytes.bin", 0, 4) == bytes([0, 1, 2, 3])
    assert blob_storage.read_range(blob_container, "bytes.bin", 10, 5) == bytes(range(10, 15))
    # Fewer at the end of the blob, none past it.
    assert blob_storage.read_range(blob_container, "bytes.bin", 95, 50) == bytes(range(95, 100))
    assert blob_storage.read_range(blob_container, "bytes.bin", 100, 10) == b""
    assert blob_storage.read_range(blob_container, "bytes.bin", 5000, 10) == b""
    assert blob_storage.read_range(blob_container, "bytes.bin", 3, 0) == b""
    # An empty blob has no bytes anywhere.
    put(blob_storage, blob_container, "empty.bin", b"")
    assert blob_storage.read_range(blob_container, "empty.bin", 0, 10) == b""
    with pytest.raises(BlobNotFoundError):
        blob_storage.read_range(blob_container, "missing.bin", 0, 10)


def test_read_head_gives_the_whole_blobs_properties_and_its_first_bytes(blob_storage,
                                                                        blob_container):
    # Given blobs larger than, smaller than and equal to the head, and an empty one,
    data = bytes(range(256)) * 8  # 2,048 bytes
    put(blob_storage, blob_container, "big.bin", data, content_type="image/tiff")
    put(blob_storage, blob_container, "small.bin", data[:100])
    put(blob_storage, blob_container, "empty.bin", b"")
    # When their heads are read (one request each),
    info, head = blob_storage.read_head(blob_container, "big.bin", 512)
    # Then the properties are the whole blob's, not the range's.
    assert (info.name, info.size, info.content_type, head) == (
        "big.bin", 2048, "image/tiff", data[:512])
    assert info.etag == blob_storage.get_properties(blob_container, "big.bin").etag
    assert blob_storage.read_head(blob_container, "small.bin", 512)[0].size == 100
    assert blob_storage.read_head(blob_container, "small.bin", 512)[1] == data[:100]
    empty, nothing = blob_storage.read_head(blob_container, "empty.bin", 512)
    assert (empty.size, nothing) == (0, b"")
    with pytest.raises(BlobNotFoundError):
        blob_storage.read_head(blob_container, "gone.bin", 512)


def test_streamed_upload_and_download_larger_than_a_chunk(blob_storage, blob_container,
                                                          tmp_path):
    source = tmp_path / "big.bin"
    data = os.urandom(CHUNK_BYTES * 2 + 12345)  # three chunks, the last one short
    source.write_bytes(data)
    info = blob_storage.upload_file(blob_container, "nested/big.bin", source)
    assert info.size == len(data)
    blocks = blob_storage.service.get_blob_client(
        blob_container, "nested/big.bin").get_block_list()[0]
    assert len(blocks) == 3  # uploaded in blocks of CHUNK_BYTES, not in one request

    target = tmp_path / "copy.bin"
    assert blob_storage.download_file(blob_container, "nested/big.bin", target) == len(data)
    assert target.read_bytes() == data

    class Recorder(io.RawIOBase):
        def __init__(self):
            self.sizes: list[int] = []

        def writable(self) -> bool:
            return True

        def write(self, chunk) -> int:
            self.sizes.append(len(chunk))
            return len(chunk)

    recorder = Recorder()
    assert blob_storage.download_to(blob_container, "nested/big.bin", recorder) == len(data)
    assert max(recorder.sizes) <= CHUNK_BYTES and len(recorder.sizes) >= 3


def test_missing_container_and_blob(blob_storage, blob_container, tmp_path):
    with pytest.raises(BlobNotFoundError) as missing_container:
        list(blob_storage.list_blobs("no-such-container"))
    assert missing_container.value.container == "no-such-container"
    assert "container no-such-container does not exist" in str(missing_container.value)

    with pytest.raises(BlobNotFoundError) as missing_blob:
        blob_storage.get_properties(blob_container, "nope.tif")
    assert (missing_blob.value.container, missing_blob.value.blob) == (blob_container,
                                                                      "nope.tif")
    assert f"blob {blob_container}/nope.tif does not exist" in str(missing_blob.value)

    with pytest.raises(BlobNotFoundError) as blob_in_missing_container:
        blob_storage.get_properties("no-such-container", "nope.tif")
    assert "container no-such-container does not exist" in str(blob_in_missing_container.value)

    with pytest.raises(BlobNotFoundError):
        blob_storage.download_file(blob_container, "nope.tif", tmp_path / "out.bin")
    with pytest.raises(BlobNotFoundError):
        put(blob_storage, "no-such-container", "a.txt", b"x")
    assert not blob_storage.container_exists("no-such-container")


def test_create_container_is_idempotent(blob_storage):
    name = f"idempotent-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    assert blob_storage.create_container(name) is True
    put(blob_storage, name, "kept.txt", b"kept")
    assert blob_storage.create_container(name) is False
    assert [b.name for b in blob_storage.list_blobs(name)] == ["kept.txt"]


def test_delete_blob(blob_storage, blob_container):
    put(blob_storage, blob_container, "gone.txt", b"x")
    assert blob_storage.delete_blob(blob_container, "gone.txt") is True
    assert blob_storage.delete_blob(blob_container, "gone.txt") is False
    assert list(blob_storage.list_blobs(blob_container)) == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_storage_is_transient_and_quick(monkeypatch):
    monkeypatch.setenv("STORAGE_CONNECTION_STRING", connection_string(_closed_port()))
    monkeypatch.delenv("STORAGE_ACCOUNT_URL", raising=False)
    reset_settings()
    try:
        storage = BlobStorage.from_settings()
        for call in (lambda: list(storage.list_blobs("bronze-rasters")),
                     lambda: storage.get_properties("bronze-rasters", "a.tif"),
                     lambda: storage.read_range("bronze-rasters", "a.tif", 0, 10),
                     lambda: storage.create_container("bronze-rasters"),
                     lambda: put(storage, "bronze-rasters", "a.tif", b"x")):
            started = time.monotonic()
            with pytest.raises(StorageUnavailableError, match="unreachable"):
                call()
            assert time.monotonic() - started < 5.0
    finally:
        reset_settings()
