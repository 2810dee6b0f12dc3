"""process_raster: a raster from bronze into Cloud Optimized GeoTIFFs in silver-cogs,
catalogued in STAC (seed 002's "Raster Processing Jobs"; ../shared/design/geo-jobs.md).

    stage 1 validate  one task: validate_raster_job's checks; a raster that is not valid
                      (strict_mode: warnings count) fails the job here, naming the
                      findings, and no COG is written
    stage 2 cog       one task per tier (output_tier all: each tier that suits the data),
                      at most two at once per host (memory): rio-cogeo, validated, uploaded
                      to {output_folder}/{stem}_cog_{tier}.tif; its STAC item made while the
                      file is at hand
    stage 3 stac      one task upserts the items

A failed job's cleanup task deletes the COGs and items it wrote."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Optional

from exceptions import JobValidationError
from jobs.base import JobBase, JobExecutionContext
from jobs.mixins import JobBaseMixin
from jobs.geo_params import check_crs, collection_parameter
from jobs.raster_params import RASTER_PARAMETERS, RASTER_SUBMIT_CHECKS, \
    validate_raster_parameters

OUTPUT_TIERS = ("visualization", "analysis", "archive", "all")
RESAMPLING = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode",
              "gauss", "rms")
ITEM_ID = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"

PARAMETERS: dict[str, dict[str, Any]] = {
    **RASTER_PARAMETERS,
    "output_tier": {"type": "str", "default": "analysis", "choices": list(OUTPUT_TIERS),
                    "description": "the COG's profile: visualization (JPEG, 3-band 8-bit), "
                                   "analysis (DEFLATE), archive (ZSTD), or all that suit"},
    "target_crs": {"type": "str", "nullable": True, "default": None, "min_length": 1,
                   "max_length": 2000,
                   "description": "reproject to this CRS (default null: keep the source's)"},
    "jpeg_quality": {"type": "int", "default": 85, "min": 1, "max": 100,
                     "description": "the visualization tier's JPEG quality"},
    "overview_resampling": {"type": "str", "choices": list(RESAMPLING),
                            "description": "how overviews are made (default: mode for "
                                           "categorical data, else average)"},
    "reproject_resampling": {"type": "str", "choices": list(RESAMPLING),
                             "description": "how pixels are reprojected (default nearest)"},
    "collection_id": collection_parameter("system-rasters"),
    "item_id": {"type": "str", "pattern": ITEM_ID,
                "description": "the STAC item's id (default: the blob's stem; with several "
                               "tiers each item is {item_id}-{tier})"},
    "output_folder": {"type": "str", "min_length": 1, "max_length": 512,
                      "pattern": r"[^\\/](.*[^\\/])?",
                      "description": "the folder in silver-cogs (default: the blob's stem)"},
}


def stem_of(blob_name: str) -> str:
    return PurePosixPath(blob_name).name.rsplit(".", 1)[0] or "raster"


class ProcessRasterJob(JobBaseMixin, JobBase):
    job_type = "process_raster"
    description = "Make a raster into Cloud Optimized GeoTIFFs and catalogue them in STAC"
    requires = ("postgis",)
    stages = [
        {"number": 1, "name": "validate", "task_type": "process_raster_validate",
         "parallelism": "single"},
        {"number": 2, "name": "cog", "task_type": "process_raster_cog",
         "parallelism": "fan_out", "max_concurrency": 2, "timeout_seconds": 540},
        {"number": 3, "name": "stac", "task_type": "process_raster_stac",
         "parallelism": "single"},
    ]
    parameters_schema = PARAMETERS
    submit_checks = RASTER_SUBMIT_CHECKS
    cleanup_task_type = "process_raster_cleanup"

    @classmethod
    def validate_job_parameters(cls, params: Any) -> dict[str, Any]:
        out = validate_raster_parameters(super().validate_job_parameters, params)
        if out.get("target_crs"):
            target = check_crs(out["target_crs"], "target_crs")
            epsg = target.to_epsg()
            out["target_crs"] = f"EPSG:{epsg}" if epsg else target.to_wkt()
        stem = stem_of(out["blob_name"])
        out["item_id"] = out.get("item_id") or stem
        out["output_folder"] = (out.get("output_folder") or stem).strip("/")
        if ".." in out["output_folder"].split("/"):
            raise JobValidationError("Parameter 'output_folder' may not contain '..'",
                                     "output_folder")
        return out

    @staticmethod
    def create_tasks_for_stage(stage: int, job_params: dict[str, Any], job_id: str,
                               previous_results: Optional[list] = None) -> list[dict]:
        if stage == 1:
            return [{"parameters": job_params}]
        if stage == 2:
            validation = previous_results[0]["result"]
            tiers = validation["tiers"]
            return [{"parameters": {**job_params, "tier": tier,
                                    "categorical": validation.get("categorical", False),
                                    "alpha_band": validation.get("alpha_band"),
                                    "item": job_params["item_id"] if len(tiers) == 1
                                    else f"{job_params['item_id']}-{tier}"}}
                    for tier in tiers]
        cogs = [r["result"] for r in previous_results]
        return [{"parameters": {"collection_id": job_params["collection_id"],
                                "items": [c["item"] for c in cogs],
                                "source": {"container_name": job_params["container_name"],
                                           "blob_name": job_params["blob_name"]}}}]

    @classmethod
    def finalize_job(cls, context: JobExecutionContext) -> dict[str, Any]:
        validation = context.results_for_stage(1)[0].result_data or {}
        cogs = [{k: v for k, v in (t.result_data or {}).items() if k != "item"}
                for t in context.results_for_stage(2)]
        stac = context.results_for_stage(3)[0].result_data or {}
        return {"job_type": cls.job_type,
                "source": f"{context.parameters['container_name']}/"
                          f"{context.parameters['blob_name']}",
                "validation": validation.get("summary", validation),
                "cogs": cogs,
                "stac_item_ids": [i["item_id"] for i in stac.get("items", [])],
                "stac_items": stac.get("items", []),
                "collection_id": context.parameters["collection_id"]}
