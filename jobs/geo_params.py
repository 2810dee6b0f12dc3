"""What the geospatial jobs' parameters share: a CRS checked with PROJ, and the STAC
collection parameter."""

from __future__ import annotations

from typing import Any

from exceptions import JobValidationError


def check_crs(value: str, parameter: str) -> Any:
    """The pyproj CRS of value, or a JobValidationError naming the parameter."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        return CRS.from_user_input(value)
    except CRSError as exc:
        raise JobValidationError(
            f"Parameter '{parameter}' is not a coordinate reference system PROJ knows "
            f"({value!r}: {exc}); give an EPSG code such as EPSG:4326, or WKT",
            parameter) from None


COLLECTION_ID = r"[a-z0-9._-]{1,64}"
COLLECTION_RULE = "1 to 64 characters: lowercase letters, digits, '-', '_' and '.'"


def collection_parameter(default: str) -> dict[str, Any]:
    """The rule of a job's collection_id (created when missing)."""
    return {"type": "str", "default": default, "pattern": COLLECTION_ID,
            "description": "the STAC collection (created when missing)"}
