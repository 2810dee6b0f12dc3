"""Which blobs a container job counts: the `filter` parameter (jobs/container_params.py),
applied to each listed blob. Pure functions of a blob's name, size and time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any, Optional

MB = 1024 * 1024  # sizes in MB are MiB: 1,048,576 bytes
NO_EXTENSION = "(none)"


def extension_of(name: str) -> str:
    """A blob's extension, lowercase without the dot ("(none)" when it has none)."""
    suffix = PurePosixPath(name).suffix
    return suffix[1:].lower() if len(suffix) > 1 else NO_EXTENSION


def _aware(value: Optional[str]) -> Optional[datetime]:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class BlobFilter:
    prefix: Optional[str] = None
    extensions: Optional[frozenset[str]] = None
    min_bytes: Optional[float] = None
    max_bytes: Optional[float] = None
    modified_after: Optional[datetime] = None
    modified_before: Optional[datetime] = None

    @classmethod
    def from_params(cls, flt: Optional[dict[str, Any]]) -> "BlobFilter":
        flt = flt or {}
        extensions = flt.get("extensions")
        return cls(
            prefix=flt.get("prefix"),
            extensions=frozenset(e.lstrip(".").lower() for e in extensions)
            if extensions else None,
            min_bytes=flt["min_size_mb"] * MB if flt.get("min_size_mb") is not None else None,
            max_bytes=flt["max_size_mb"] * MB if flt.get("max_size_mb") is not None else None,
            modified_after=_aware(flt.get("modified_after")),
            modified_before=_aware(flt.get("modified_before")),
        )

    def matches(self, name: str, size: int, last_modified: datetime) -> bool:
        if self.prefix is not None and not name.startswith(self.prefix):
            return False
        if self.extensions is not None and extension_of(name) not in self.extensions:
            return False
        if self.min_bytes is not None and size < self.min_bytes:
            return False
        if self.max_bytes is not None and size > self.max_bytes:
            return False
        if last_modified.tzinfo is None:
            last_modified = last_modified.replace(tzinfo=timezone.utc)
        if self.modified_after is not None and last_modified <= self.modified_after:
            return False
        if self.modified_before is not None and last_modified >= self.modified_before:
            return False
        return True
