"""stac_catalog_raster (seed 002's name): one raster blob that is already a Cloud Optimized
GeoTIFF becomes one STAC item, made by the same handler as process_raster's STAC stage.
A blob that fails rio-cogeo's validator fails the job at once, naming its errors."""

from __future__ import annotations

from typing import Any

from config import get_settings
from jobs.base import JobBase
from jobs.container_params import CONTAINER_NAME, CONTAINER_RULE
from jobs.declarations import SubmitCheck
from jobs.mixins import JobBaseMixin, SingleTaskJobMixin
from jobs.geo_params import collection_parameter
from jobs.process_raster import ITEM_ID, stem_of
from jobs.validation_errors import named_pattern_error


class StacCatalogRasterJob(SingleTaskJobMixin, JobBaseMixin, JobBase):
    job_type = "stac_catalog_raster"
    description = "Catalogue one Cloud Optimized GeoTIFF as a STAC item"
    requires = ("postgis",)
    stages = [{"number": 1, "name": "catalog", "task_type": "stac_catalog_raster",
               "parallelism": "single"}]
    parameters_schema = {
        "blob_name": {"type": "str", "required": True, "min_length": 1, "max_length": 1024,
                      "description": "the COG's blob"},
        "container_name": {"type": "str", "pattern": CONTAINER_NAME,
                           "description": "its container (default: SILVER_COGS_CONTAINER, "
                                          "silver-cogs)"},
        "collection_id": collection_parameter("system-rasters"),
        "item_id": {"type": "str", "pattern": ITEM_ID,
                    "description": "the item's id (default: the blob's stem)"},
    }
    submit_checks = (
        SubmitCheck("blob_etag", parameter="blob_name", identity="source_etag",
                    arguments={"container": "container_name", "blob": "blob_name"}),
    )

    @classmethod
    def validate_job_parameters(cls, params: Any) -> dict[str, Any]:
        with named_pattern_error(params, {"container_name": CONTAINER_RULE}):
            out = super().validate_job_parameters(params)
        out["container_name"] = out.get("container_name") or \
            get_settings().silver_cogs_container
        out["item_id"] = out.get("item_id") or stem_of(out["blob_name"])
        out["require_cog"] = True
        return out
