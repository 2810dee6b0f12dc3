"""Small test-only jobs and handlers for the CoreMachine tests, one per stage kind.

ItemsJob: stage 1 (single) lists `count` items; stage 2 (fan_out) makes one task per item
from stage 1's result; stage 3 (fan_in) gets one aggregation task, built by CoreMachine,
that receives every stage 2 result in task order. Variants below each break one thing.
"""

from __future__ import annotations

from typing import Any, Optional

from jobs.base import JobBase, JobExecutionContext
from jobs.mixins import JobBaseMixin

def list_items(params: dict, context: dict) -> dict:
    count = context["job_parameters"]["count"]
    return {"items": [f"item-{i}" for i in range(count)], "stage": context["stage"]}


def process_item(params: dict, context: dict) -> dict:
    return {"processed": params["item"].upper(), "task_index": context["task_index"]}


def collect_items(params: dict, context: dict) -> dict:
    previous = context["previous_results"]
    return {
        "processed": [r["result"]["processed"] for r in previous],
        "task_indexes": [r["task_index"] for r in previous],
        "task_ids": [r["task_id"] for r in previous],
        "statuses": sorted({r["status"] for r in previous}),
        "params": params,
    }


ITEMS_HANDLERS = {"list_items": list_items, "process_item": process_item,
                  "collect_items": collect_items}


class ItemsJob(JobBaseMixin, JobBase):
    job_type = "items"
    description = "List items, process each, collect them all: single, fan_out, fan_in"
    stages = [
        {"number": 1, "name": "list", "task_type": "list_items", "parallelism": "single"},
        {"number": 2, "name": "process", "task_type": "process_item",
         "parallelism": "fan_out"},
        {"number": 3, "name": "collect", "task_type": "collect_items",
         "parallelism": "fan_in"},
    ]
    parameters_schema = {"count": {"type": "int", "min": 0, "max": 500, "default": 3}}

    @staticmethod
    def create_tasks_for_stage(
        stage: int, job_params: dict, job_id: str, previous_results: Optional[list] = None
    ) -> list[dict[str, Any]]:
        if stage == 1:
            return [{"parameters": {}}]
        # fan_out: one task per item of the single stage 1 task's result.
        items = [item for prev in previous_results for item in prev["result"]["items"]]
        return [{"parameters": {"item": item}} for item in items]

    @staticmethod
    def finalize_job(context: JobExecutionContext) -> dict[str, Any]:
        by_stage = {s: context.results_for_stage(s) for s in (1, 2, 3)}
        return {
            "items": by_stage[1][0].result_data["items"],
            "processed": [t.result_data["processed"] for t in by_stage[2]],
            "collected": by_stage[3][0].result_data if by_stage[3] else None,
            "task_ids": [t.task_id for t in context.task_results],
            "stage_results": sorted(context.stage_results),
            "job_id": context.job_id, "parameters": context.parameters,
        }


class ListThenProcessJob(ItemsJob):
    """ItemsJob without its fan-in stage: an empty fan-out is its last stage."""

    job_type = "list_then_process"
    stages = ItemsJob.stages[:2]


class BadStageTwoJob(ItemsJob):
    job_type = "bad_stage_two"

    @staticmethod
    def create_tasks_for_stage(stage, job_params, job_id, previous_results=None):
        if stage == 2:
            raise ValueError("cannot read the item list")
        return ItemsJob.create_tasks_for_stage(stage, job_params, job_id, previous_results)


class UnknownTaskTypeJob(ItemsJob):
    job_type = "unknown_task_type"

    @staticmethod
    def create_tasks_for_stage(stage, job_params, job_id, previous_results=None):
        return [{"task_type": "no_such_handler", "parameters": {}}]


class BadFinalizeJob(ItemsJob):
    job_type = "bad_finalize"

    @staticmethod
    def finalize_job(context):
        raise RuntimeError("cannot summarise")


SAMPLE_JOBS = {job.job_type: job for job in (
    ItemsJob, ListThenProcessJob, BadStageTwoJob, UnknownTaskTypeJob, BadFinalizeJob)}
