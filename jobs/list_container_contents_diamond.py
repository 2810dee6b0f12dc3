"""list_container_contents_diamond: list_container_contents with an explicit aggregation
stage (the design documents' fan-in): stage 3 is one task that receives every stage 2
outcome and aggregates them; its result is the job's."""

from __future__ import annotations

from typing import Any

from jobs.base import JobExecutionContext
from jobs.list_container_contents import ListContainerContentsJob


class ListContainerContentsDiamondJob(ListContainerContentsJob):
    job_type = "list_container_contents_diamond"
    description = ("Inventory a container: list, analyze each blob in parallel, then "
                   "aggregate in one fan-in task")

    stages = [*ListContainerContentsJob.stages,
              {"number": 3, "name": "aggregate", "task_type": "aggregate_blobs",
               "parallelism": "fan_in"}]

    @classmethod
    def finalize_job(cls, context: JobExecutionContext) -> dict[str, Any]:
        listing = cls.listing(context)
        aggregated = context.results_for_stage(3)
        return {"job_type": cls.job_type,
                "container_name": context.parameters["container_name"],
                "blobs_found": listing.get("blobs_found", 0),
                "hit_file_limit": listing.get("hit_file_limit", False),
                **((aggregated[0].result_data or {}) if aggregated else {})}
