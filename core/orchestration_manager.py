"""OrchestrationManager: turns a job's stage into task definitions.

The job's create_tasks_for_stage decides most stages' tasks; a stage declared fan_in gets one
aggregation task made here. Task ids are assigned here, from the full job id, so they are
unique across all jobs.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional

from core.models import TaskDefinition
from core.task_runner import storable_json
from exceptions import ContractViolationError


def task_id_for(job_id: str, stage: int, index: int) -> str:
    return f"{job_id}-s{stage}-t{index}"


def previous_results_view(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The one shape results take between stages, in task order."""
    return [
        {"task_id": t["task_id"], "task_index": t["task_index"], "status": t["status"],
         "result": t["result_data"]}
        for t in tasks
    ]


def wants_resources(job_class: Any) -> bool:
    """Whether a job's create_tasks_for_stage takes core's I/O interfaces (a parameter
    named `resources`): a builder that reads storage gets them from core, so the job file
    imports no infrastructure."""
    try:
        parameters = inspect.signature(job_class.create_tasks_for_stage).parameters
    except (TypeError, ValueError):
        return False
    return "resources" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


class OrchestrationManager:
    def stage_definition(self, job_class: Any, stage: int) -> dict[str, Any]:
        return job_class.stages[stage - 1]

    def build_tasks(
        self,
        job_class: Any,
        stage: int,
        job_params: dict[str, Any],
        job_id: str,
        previous_results: Optional[list[dict[str, Any]]],
        resources: Any = None,
    ) -> list[TaskDefinition]:
        definition = self.stage_definition(job_class, stage)
        if definition.get("parallelism") == "fan_in":
            return [TaskDefinition(
                task_id=task_id_for(job_id, stage, 0), task_type=definition["task_type"],
                stage=stage, task_index=0, parameters={"fan_in_source_stage": stage - 1},
            )]
        extra = {"resources": resources} if wants_resources(job_class) else {}
        specs = job_class.create_tasks_for_stage(stage, job_params, job_id, previous_results,
                                                 **extra)
        if specs is None:
            specs = []
        if not isinstance(specs, list):
            raise ContractViolationError(
                f"{job_class.__name__}.create_tasks_for_stage({stage}) returned "
                f"{type(specs).__name__}; it must return a list of task dicts"
            )
        tasks = []
        for index, spec in enumerate(specs):
            if not isinstance(spec, dict):
                raise ContractViolationError(
                    f"{job_class.__name__}.create_tasks_for_stage({stage}) item {index} is "
                    f"{type(spec).__name__}; each task must be a dict with 'parameters'"
                )
            params = spec.get("parameters", {})
            if not isinstance(params, dict):
                raise ContractViolationError(
                    f"{job_class.__name__}.create_tasks_for_stage({stage}) item {index}: "
                    "'parameters' must be a dict"
                )
            tasks.append(TaskDefinition(
                task_id=task_id_for(job_id, stage, index),
                task_type=spec.get("task_type") or definition["task_type"],
                stage=stage, task_index=index,
                # stored as jsonb: no NaN, no NUL (the job fails, naming the item)
                parameters=storable_json(params, f"{job_class.__name__}."
                                         f"create_tasks_for_stage({stage}) item {index}"),
            ))
        return tasks
