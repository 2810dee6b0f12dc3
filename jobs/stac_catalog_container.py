"""stac_catalog_container: STAC items for every raster in a container (seed 002's
catalogue job). Stage 1 lists the matching rasters (one task, as list_container_contents
does); stage 2 makes one item per raster with the same handler as stac_catalog_raster,
any readable raster (not only COGs). A file that cannot be read fails its own task, not
the job (which then ends completed_with_errors)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Optional

from jobs.base import JobBase, JobExecutionContext
from jobs.container_params import ContainerJobMixin, container_parameters
from jobs.mixins import JobBaseMixin
from jobs.geo_params import collection_parameter

ERRORS_LISTED = 10


def item_id_for(blob_name: str) -> str:
    """The blob's path without its extension, '/' as '-' (unique in the container)."""
    path = PurePosixPath(blob_name)
    stem = str(path.with_suffix("")) if path.suffix else str(path)
    return stem.replace("/", "-").strip("-") or "raster"


def _parameters() -> dict[str, Any]:
    schema = container_parameters(
        {"type": "int", "min": 1, "max": 100_000, "default": 10_000,
         "description": "catalogue at most this many matching rasters"})
    schema["collection_id"] = collection_parameter("system-rasters")
    return schema


class StacCatalogContainerJob(ContainerJobMixin, JobBaseMixin, JobBase):
    job_type = "stac_catalog_container"
    description = "Catalogue every raster of a container as STAC items"
    requires = ("postgis",)
    stages = [
        {"number": 1, "name": "list", "task_type": "list_container_blobs",
         "parallelism": "single"},
        {"number": 2, "name": "catalog", "task_type": "stac_catalog_raster",
         "parallelism": "fan_out", "on_task_failure": "continue"},
    ]
    parameters_schema = _parameters()

    @classmethod
    def validate_job_parameters(cls, params: Any) -> dict[str, Any]:
        out = super().validate_job_parameters(params)
        if "extensions" not in out["filter"]:
            # the default: GeoTIFFs by either of their extensions (any case)
            out["filter"] = {**out["filter"], "extensions": ["tif", "tiff"]}
        return out

    @staticmethod
    def create_tasks_for_stage(stage: int, job_params: dict[str, Any], job_id: str,
                               previous_results: Optional[list] = None) -> list[dict]:
        if stage == 1:
            return [{"parameters": job_params}]
        listing = previous_results[0]["result"]
        return [{"parameters": {"container_name": job_params["container_name"],
                                "blob_name": blob["name"],
                                "collection_id": job_params["collection_id"],
                                "item_id": item_id_for(blob["name"]),
                                "require_cog": False}}
                for blob in listing["blobs"]]

    @classmethod
    def finalize_job(cls, context: JobExecutionContext) -> dict[str, Any]:
        listing = (context.results_for_stage(1)[0].result_data or {})
        tasks = context.results_for_stage(2)
        done = [t.result_data or {} for t in tasks if t.status == "completed"]
        failed = [t for t in tasks if t.status != "completed"]
        return {"job_type": cls.job_type,
                "container_name": context.parameters["container_name"],
                "collection_id": context.parameters["collection_id"],
                "found": listing.get("blobs_found", 0),
                "inserted": sum(1 for d in done if d.get("outcome") == "inserted"),
                "updated": sum(1 for d in done if d.get("outcome") == "updated"),
                "failed": len(failed),
                "errors": [{"task_id": t.task_id, "error": t.error_details}
                           for t in failed[:ERRORS_LISTED]],
                "hit_file_limit": listing.get("hit_file_limit", False)}
