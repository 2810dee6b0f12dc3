"""list_container_contents: an inventory (seed 002's multi-stage fan-out). Stage 1 lists
the matching blobs (one task); stage 2 analyzes each blob in a task of its own: properties
and its real format from its first bytes. A blob that vanished or cannot be read fails its
own task, not the job (the stage tolerates failures: the job then ends
completed_with_errors, the failures counted)."""

from __future__ import annotations

from typing import Any, Optional

from jobs.base import JobBase, JobExecutionContext
from services.container_inventory import aggregate_inventory
from jobs.container_params import ContainerJobMixin, container_parameters
from jobs.mixins import JobBaseMixin


class ListContainerContentsJob(ContainerJobMixin, JobBaseMixin, JobBase):
    job_type = "list_container_contents"
    description = "Inventory a container: list the matching blobs, analyze each in parallel"

    stages = [
        {"number": 1, "name": "list", "task_type": "list_container_blobs",
         "parallelism": "single"},
        {"number": 2, "name": "analyze", "task_type": "analyze_blob",
         "parallelism": "fan_out", "on_task_failure": "continue"},
    ]

    parameters_schema = container_parameters(
        {"type": "int", "min": 1, "max": 100_000, "default": 10_000,
         "description": "analyze at most this many matching blobs"})
    @staticmethod
    def create_tasks_for_stage(stage: int, job_params: dict, job_id: str,
                               previous_results: Optional[list] = None) -> list[dict]:
        if stage == 1:
            return [{"parameters": job_params}]
        if stage == 2:
            listing = previous_results[0]["result"]
            return [{"parameters": {"container_name": job_params["container_name"],
                                    "blob_name": blob["name"]}}
                    for blob in listing["blobs"]]
        return []  # a fan-in stage (the diamond's) is built by core

    @staticmethod
    def listing(context: JobExecutionContext) -> dict[str, Any]:
        first = context.results_for_stage(1)
        return (first[0].result_data or {}) if first else {}

    @classmethod
    def finalize_job(cls, context: JobExecutionContext) -> dict[str, Any]:
        listing = cls.listing(context)
        return {"job_type": cls.job_type,
                "container_name": context.parameters["container_name"],
                "blobs_found": listing.get("blobs_found", 0),
                "hit_file_limit": listing.get("hit_file_limit", False),
                **aggregate_inventory(context.results_for_stage(2))}
