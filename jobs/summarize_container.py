"""summarize_container: one streaming pass over a container's listing (seed 002's
single-stage pass-through): counts, bytes, per-extension breakdown, size buckets, the
largest and smallest, oldest and newest blob. Near its time budget the scan stops and
returns what it has (hit_time_limit), never a timeout that would retry from the start."""

from __future__ import annotations

from typing import Any

from jobs.base import JobBase, JobExecutionContext
from jobs.container_params import ContainerJobMixin, container_parameters
from jobs.mixins import JobBaseMixin, SingleTaskJobMixin


class SummarizeContainerJob(ContainerJobMixin, SingleTaskJobMixin, JobBaseMixin, JobBase):
    job_type = "summarize_container"
    description = "Summarize a container's blobs in one streaming pass"

    stages = [{"number": 1, "name": "summarize", "task_type": "summarize_container",
               "parallelism": "single"}]

    parameters_schema = container_parameters(
        {"type": "int", "min": 1, "max": 1_000_000,
         "description": "stop after this many matching blobs (no limit when left out)"})

    @classmethod
    def result_context(cls, context: JobExecutionContext) -> dict[str, Any]:
        return {"container_name": context.parameters["container_name"]}
