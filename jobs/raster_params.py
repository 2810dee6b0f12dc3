"""The parameters the raster jobs share (validate_raster_job; process_raster extends
them): the raster blob, its container, a CRS for a file without one, the raster's type,
and whether warnings count as errors. The rules across parameters run after the schema's:
the container's default from settings, a source_crs PROJ knows."""

from __future__ import annotations

from typing import Any, Callable

from config import get_settings
from jobs.container_params import CONTAINER_NAME, CONTAINER_RULE
from jobs.declarations import SubmitCheck
from jobs.geo_params import check_crs
from jobs.validation_errors import named_pattern_error

RASTER_TYPES = ("auto", "rgb", "rgba", "dem", "categorical", "multispectral", "nir")

RASTER_PARAMETERS: dict[str, dict[str, Any]] = {
    "blob_name": {"type": "str", "required": True, "min_length": 1, "max_length": 1024,
                  "description": "the raster's blob (a GeoTIFF, or another format GDAL "
                                 "reads from one file)"},
    "container_name": {"type": "str", "pattern": CONTAINER_NAME,
                       "description": "its container (default: BRONZE_RASTERS_CONTAINER, "
                                      "bronze-rasters)"},
    "source_crs": {"type": "str", "min_length": 1, "max_length": 2000,
                   "description": "the CRS of a raster that has none (EPSG:xxxx or WKT); "
                                  "one that contradicts the raster's own is an error"},
    "raster_type": {"type": "str", "default": "auto", "choices": list(RASTER_TYPES),
                    "description": "what the raster holds (auto: detected from the data); "
                                   "a type the data contradicts is an error"},
    "strict_mode": {"type": "bool", "default": False,
                    "description": "warnings count as errors: the raster is valid only "
                                   "without any"},
}

# The blob's etag joins the job id: the same file is the same job, a corrected upload a
# new one; a missing blob is a 400 naming blob_name, storage out of reach a 503.
RASTER_SUBMIT_CHECKS = (
    SubmitCheck("blob_etag", parameter="blob_name", identity="source_etag",
                arguments={"container": "container_name", "blob": "blob_name"}),
)


def validate_raster_parameters(validate: Callable[[Any], dict[str, Any]],
                               params: Any) -> dict[str, Any]:
    """validate: the schema's validation (JobBaseMixin's); then the container's default
    (BRONZE_RASTERS_CONTAINER) and source_crs checked with PROJ."""
    if isinstance(params, dict) and isinstance(params.get("raster_type"), str):
        params = {**params, "raster_type": params["raster_type"].strip().lower()}
    with named_pattern_error(params, {"container_name": CONTAINER_RULE}):
        out = validate(params)
    out["container_name"] = out.get("container_name") or \
        get_settings().bronze_rasters_container
    if out.get("source_crs"):
        check_crs(out["source_crs"], "source_crs")
    return out
