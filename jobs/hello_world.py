"""hello_world: the design documents' two-stage example.

Stage 1 "greeting" fans out n greeting tasks; stage 2 "reply" makes one reply per greeting,
each receiving its predecessor's result (lineage).
"""

from __future__ import annotations

from typing import Any, Optional

from jobs.base import JobBase, JobExecutionContext
from jobs.mixins import JobBaseMixin


class HelloWorldJob(JobBaseMixin, JobBase):
    job_type = "hello_world"
    description = "Two-stage greeting and reply: a demonstration of fan-out and lineage"

    stages = [
        {"number": 1, "name": "greeting", "task_type": "hello_world_greeting",
         "parallelism": "dynamic", "count_param": "n"},
        {"number": 2, "name": "reply", "task_type": "hello_world_reply",
         "parallelism": "match_previous", "depends_on": 1, "uses_lineage": True},
    ]

    parameters_schema = {
        "n": {"type": "int", "min": 1, "max": 1000, "default": 3},
        "message": {"type": "str", "default": "Hello World"},
        "failure_rate": {"type": "float", "min": 0.0, "max": 1.0, "default": 0.0},
        "sleep_seconds": {"type": "float", "min": 0.0, "max": 60.0, "default": 0.0},
    }
    # Knobs for demonstrations and tests, not a different job: resubmitting with another
    # failure rate or sleep finds the same job.
    id_excluded_parameters = ("failure_rate", "sleep_seconds")

    @staticmethod
    def create_tasks_for_stage(
        stage: int, job_params: dict, job_id: str, previous_results: Optional[list] = None
    ) -> list[dict[str, Any]]:
        if stage == 1:
            return [
                {"parameters": {"index": i, "message": job_params["message"],
                                "failure_rate": job_params["failure_rate"],
                                "sleep_seconds": job_params["sleep_seconds"]}}
                for i in range(job_params["n"])
            ]
        return [
            {"parameters": {"index": prev["task_index"],
                            "greeting": prev["result"]["greeting"],
                            "sleep_seconds": job_params["sleep_seconds"]}}
            for prev in previous_results or []
        ]

    @staticmethod
    def finalize_job(context: JobExecutionContext) -> dict[str, Any]:
        greetings = [t.result_data["greeting"] for t in context.results_for_stage(1)
                     if t.result_data]
        replies = [t.result_data["reply"] for t in context.results_for_stage(2)
                   if t.result_data]
        return {
            "job_type": "hello_world",
            "message": context.parameters["message"],
            "greetings": greetings,
            "replies": replies,
            "stages": {
                str(stage): {
                    "tasks": len(context.results_for_stage(stage)),
                    "completed": sum(1 for t in context.results_for_stage(stage)
                                     if t.status.value == "completed"),
                }
                for stage in (1, 2)
            },
            "tasks_total": len(context.task_results),
        }
