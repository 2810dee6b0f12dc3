"""Blob storage: the one interface handlers, submit checks and task builders use for the
jobs' data (never the SDK directly).

Authenticates with the app's managed identity (STORAGE_ACCOUNT_URL, DefaultAzureCredential)
or a connection string (STORAGE_CONNECTION_STRING; locally Azurite's development account).
Listing goes page by page (a million-blob container never sits in one list); downloads and
uploads stream in chunks, so a file larger than memory passes through. The SDK's errors
are translated at this boundary: a missing container or blob is BlobNotFoundError (a
permanent failure), storage that cannot be reached is StorageUnavailableError (transient).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterator, Optional

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError, ClientAuthenticationError, HttpResponseError, ResourceExistsError,
    ResourceModifiedError, ResourceNotFoundError, ServiceRequestError, ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient, ContentSettings, LinearRetry

from config import Settings, get_settings
from exceptions import ConfigurationError, PermanentError, TransientError

if TYPE_CHECKING:
    from infrastructure.blob_upload import GrowingUpload

CHUNK_BYTES = 4 * 1024 * 1024  # streamed downloads and uploads move this much at a time
PAGE_SIZE = 5000  # blobs per listing page (the service's maximum)


class BlobNotFoundError(PermanentError):
    """The container or blob does not exist (retrying cannot make it appear)."""

    def __init__(self, message: str, container: str, blob: Optional[str] = None,
                 missing: str = "blob"):
        super().__init__(message)
        self.container = container
        self.blob = blob
        self.missing = missing  # "container" or "blob"

    @property
    def resource(self) -> str:
        return self.container if self.missing == "container" else f"{self.container}/{self.blob}"


class StorageUnavailableError(TransientError):
    """Blob storage could not be reached or answered with a server error."""


class BlobChangedError(TransientError):
    """The blob was replaced while it was read (its etag no longer the one asked for):
    the task is tried again, with the new version."""


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    last_modified: datetime
    etag: str
    content_type: Optional[str] = None
    metadata: dict[str, str] = field(default_factory=dict)


def _total_size(props: Any) -> Optional[int]:
    """A ranged download's whole blob size, from its Content-Range ("bytes 0-511/N"); the
    properties' size is the range's."""
    content_range = getattr(props, "content_range", None) or ""
    total = content_range.rpartition("/")[2]
    return int(total) if total.isdigit() else None


def _info(props: Any, size: Optional[int] = None) -> BlobInfo:
    settings = getattr(props, "content_settings", None)
    return BlobInfo(name=props.name, size=size if size is not None else (props.size or 0),
                    last_modified=props.last_modified, etag=(props.etag or "").strip('"'),
                    content_type=getattr(settings, "content_type", None),
                    metadata=dict(props.metadata or {}))


@contextmanager
def _translated(container: str, blob: Optional[str] = None) -> Iterator[None]:
    where = f"{container}/{blob}" if blob is not None else container
    try:
        yield
    except ResourceNotFoundError as exc:
        code = getattr(exc, "error_code", None)
        what = "container" if blob is None or code == "ContainerNotFound" else "blob"
        raise BlobNotFoundError(f"{what} {where if what == 'blob' else container} does not "
                                "exist", container, blob, missing=what) from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise StorageUnavailableError(f"blob storage unreachable ({where}): {exc}") from exc
    except ClientAuthenticationError:
        raise
    except HttpResponseError as exc:
        if (exc.status_code or 0) >= 500 or exc.status_code in (408, 429):
            raise StorageUnavailableError(
                f"blob storage answered {exc.status_code} for {where}: {exc.reason}") from exc
        raise


# Connections kept open per storage host: more than the handlers that run at once in a
# process (TASK_BATCH_CONCURRENCY x batches), so none is opened and discarded per request
# (requests' default of 10 churns connections, and can run a busy host out of ports).
POOL_CONNECTIONS = 128


def _pooled_transport() -> Any:
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=POOL_CONNECTIONS)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return RequestsTransport(session=session, session_owner=True)


# Ranges of one blob moved at once by download_file and uploads.
TRANSFER_CONCURRENCY = 4


class BlobStorage:
    def __init__(self, service: BlobServiceClient):
        self.service = service

    @classmethod
    def from_settings(cls, settings: Optional[Settings] = None) -> "BlobStorage":
        settings = settings or get_settings()
        # Connection refused must become a 503 or a retry within seconds, not minutes.
        options: dict[str, Any] = {
            "retry_policy": LinearRetry(backoff=0.5, random_jitter_range=0.25, retry_total=2),
            "connection_timeout": 10, "read_timeout": 120,
            "max_single_put_size": CHUNK_BYTES, "max_block_size": CHUNK_BYTES,
            "max_single_get_size": CHUNK_BYTES, "max_chunk_get_size": CHUNK_BYTES,
            "transport": _pooled_transport(),
        }
        if settings.storage_account_url:
            from azure.identity import DefaultAzureCredential

            return cls(BlobServiceClient(settings.storage_account_url,
                                         credential=DefaultAzureCredential(), **options))
        if settings.storage_connection_string:
            return cls(BlobServiceClient.from_connection_string(
                settings.storage_connection_string, **options))
        raise ConfigurationError(
            "No blob storage configured: set STORAGE_ACCOUNT_URL (Azure, with the app's "
            "managed identity) or STORAGE_CONNECTION_STRING (locally, make serve sets "
            "Azurite's)")

    # -- containers -----------------------------------------------------------------------
    def container_exists(self, container: str) -> bool:
        with _translated(container):
            return self.service.get_container_client(container).exists()

    def create_container(self, container: str) -> bool:
        """Create it if missing; returns whether it was created now."""
        with _translated(container):
            try:
                self.service.create_container(container)
                return True
            except ResourceExistsError:
                return False

    # -- reading --------------------------------------------------------------------------
    def list_blobs(self, container: str, prefix: Optional[str] = None,
                   include_metadata: bool = False, page_size: int = PAGE_SIZE
                   ) -> Iterator[BlobInfo]:
        """Every blob (under prefix), in name order, fetched a page at a time: memory stays
        flat however many there are."""
        client = self.service.get_container_client(container)
        include = ["metadata"] if include_metadata else None
        with _translated(container):
            pages = client.list_blobs(name_starts_with=prefix or None, include=include,
                                      results_per_page=page_size).by_page()
            for page in pages:
                for props in page:
                    yield _info(props)

    def get_properties(self, container: str, blob: str) -> BlobInfo:
        with _translated(container, blob):
            return _info(self.service.get_blob_client(container, blob).get_blob_properties())

    def read_range(self, container: str, blob: str, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset` (fewer at the end of the blob; none past it)."""
        if offset < 0 or length < 0:
            raise ValueError(f"offset and length must not be negative ({offset}, {length})")
        if length == 0:
            # The SDK would send "bytes=N-(N-1)", which a server ignores: the whole blob.
            return b""
        with _translated(container, blob):
            client = self.service.get_blob_client(container, blob)
            try:
                return client.download_blob(offset=offset, length=length).readall()
            except HttpResponseError as exc:
                if exc.status_code == 416:  # the range starts past the end
                    return b""
                raise
            except ValueError as exc:
                # Azurite answers a range starting exactly at the end with an empty 206
                # ("bytes N-(N-1)/N") whose Content-Range the SDK refuses; Azure answers 416.
                if "Content-Range" in str(exc):
                    return b""
                raise

    def read_head(self, container: str, blob: str, length: int) -> tuple[BlobInfo, bytes]:
        """A blob's properties and its first `length` bytes, in one request (an empty
        blob's properties in a second: a range of nothing is refused)."""
        if length <= 0:
            raise ValueError(f"length must be positive, got {length}")
        with _translated(container, blob):
            client = self.service.get_blob_client(container, blob)
            try:
                stream = client.download_blob(offset=0, length=length)
                head = stream.readall()
                return _info(stream.properties, _total_size(stream.properties)), head
            except HttpResponseError as exc:
                if exc.status_code != 416:
                    raise
            except ValueError as exc:  # Azurite's empty 206 for an empty blob
                if "Content-Range" not in str(exc):
                    raise
            return _info(client.get_blob_properties()), b""

    def download_to(self, container: str, blob: str, writable: IO[bytes]) -> int:
        """Stream a blob into a writable binary file, a chunk at a time; returns bytes."""
        with _translated(container, blob):
            stream = self.service.get_blob_client(container, blob).download_blob()
            written = 0
            for chunk in stream.chunks():
                writable.write(chunk)
                written += len(chunk)
            return written

    def download_file(self, container: str, blob: str, path: str | Path,
                      etag: Optional[str] = None) -> int:
        """Download a blob into a file, several ranges at once (a file can be written out
        of order; a stream cannot). With etag, only that version: a blob replaced since
        is a BlobChangedError."""
        condition: dict[str, Any] = {}
        if etag:
            condition = {"etag": '"' + etag.strip('"') + '"',
                         "match_condition": MatchConditions.IfNotModified}
        with open(path, "wb") as out, _translated(container, blob):
            try:
                stream = self.service.get_blob_client(container, blob).download_blob(
                    max_concurrency=TRANSFER_CONCURRENCY, **condition)
                return stream.readinto(out)
            except ResourceModifiedError as exc:
                raise BlobChangedError(f"{container}/{blob} was replaced while it was "
                                       "read; it is read again") from exc

    # -- writing --------------------------------------------------------------------------
    def upload_from(self, container: str, blob: str, readable: IO[bytes],
                    length: Optional[int] = None, content_type: Optional[str] = None,
                    metadata: Optional[dict[str, str]] = None, overwrite: bool = True
                    ) -> BlobInfo:
        """Stream a readable binary file into a blob in blocks (replacing it by default)."""
        settings = ContentSettings(content_type=content_type) if content_type else None
        with _translated(container, blob):
            client = self.service.get_blob_client(container, blob)
            client.upload_blob(readable, length=length, overwrite=overwrite,
                               content_settings=settings, metadata=metadata,
                               max_concurrency=TRANSFER_CONCURRENCY)
            return _info(client.get_blob_properties())

    def upload_file(self, container: str, blob: str, path: str | Path,
                    content_type: Optional[str] = None,
                    metadata: Optional[dict[str, str]] = None) -> BlobInfo:
        """Upload a file; a blob it replaces stays whole until the upload commits (its
        block list), so no reader sees a part of the new one."""
        path = Path(path)
        with open(path, "rb") as source:
            return self.upload_from(container, blob, source, length=path.stat().st_size,
                                    content_type=content_type, metadata=metadata)

    def growing_upload(self, container: str, blob: str, path: str | Path,
                       content_type: Optional[str] = None,
                       metadata: Optional[dict[str, str]] = None) -> "GrowingUpload":
        """Upload a file while it is being written (infrastructure/blob_upload.py): use
        as a context manager around the writing, then commit() once it is complete."""
        from infrastructure.blob_upload import GrowingUpload

        return GrowingUpload(self, container, blob, Path(path), content_type=content_type,
                             metadata=metadata, concurrency=TRANSFER_CONCURRENCY)

    def url(self, container: str, blob: str) -> str:
        """The blob's plain URL (no SAS token: never a link that expires)."""
        return self.service.get_blob_client(container, blob).url

    def delete_blob(self, container: str, blob: str) -> bool:
        """Delete it if present; returns whether it was there."""
        try:
            with _translated(container, blob):
                self.service.get_blob_client(container, blob).delete_blob()
            return True
        except BlobNotFoundError:
            return False


_lock = threading.Lock()
_storage: Optional[BlobStorage] = None


def get_blob_storage() -> BlobStorage:
    """The process's BlobStorage, made from the settings on first use."""
    global _storage
    if _storage is None:
        with _lock:
            if _storage is None:
                _storage = BlobStorage.from_settings()
    return _storage


def set_blob_storage(storage: Optional[BlobStorage]) -> None:
    """Install a BlobStorage for this process (tests), or forget it (None)."""
    global _storage
    with _lock:
        _storage = storage


__all__ = ["AzureError", "BlobChangedError", "BlobInfo", "BlobNotFoundError", "BlobStorage",
           "StorageUnavailableError", "get_blob_storage", "set_blob_storage"]
