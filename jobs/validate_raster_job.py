"""validate_raster_job: a pre-flight check of one raster in blob storage (seed 002's
catalogue; ../shared/design/geo-jobs.md). One task downloads the blob to a temporary
folder and reports on it (services/raster_validation.py): its CRS (present, or given as
source_crs, and not contradicted), bounds, bands, data types, nodata, bit depth over a
decimated view of the whole raster, what it holds (detected, with a confidence, and
checked against a given raster_type), and the COG settings recommended for it.

A raster that opens completes the job with its report, `valid` false when it has errors
(or warnings, with strict_mode); a file that cannot be read as a raster at all (not one,
truncated, larger than RASTER_MAX_FILE_MB) fails the job at once, never retried. The
blob's etag is part of the job id: the same file is the same job, a corrected upload a
new one."""

from __future__ import annotations

from typing import Any

from jobs.base import JobBase
from jobs.mixins import JobBaseMixin, SingleTaskJobMixin
from jobs.raster_params import (RASTER_PARAMETERS, RASTER_SUBMIT_CHECKS,
                                validate_raster_parameters)


class ValidateRasterJob(SingleTaskJobMixin, JobBaseMixin, JobBase):
    job_type = "validate_raster_job"
    description = ("Check a raster before converting it: CRS, bounds, bands, nodata, bit "
                   "depth, detected type and recommended COG settings")

    stages = [{"number": 1, "name": "validate", "task_type": "validate_raster",
               "parallelism": "single", "timeout_seconds": 540}]
    parameters_schema = RASTER_PARAMETERS
    submit_checks = RASTER_SUBMIT_CHECKS

    @classmethod
    def validate_job_parameters(cls, params: Any) -> dict[str, Any]:
        return validate_raster_parameters(super().validate_job_parameters, params)

    @classmethod
    def result_context(cls, context: Any) -> dict[str, Any]:
        params = context.parameters
        return {"source": f"{params['container_name']}/{params['blob_name']}",
                "source_etag": params.get("source_etag")}
