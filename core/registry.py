"""Start-up checks of ALL_JOBS against ALL_HANDLERS: a mistake fails at import, naming the
job, the stage and what is wrong, never later at run time."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from core.models import PARALLELISM_KINDS
from exceptions import ContractViolationError, RegistryError

CONTRACT_METHODS = (
    "validate_job_parameters", "generate_job_id", "create_tasks_for_stage",
    "create_job_record", "queue_job", "finalize_job",
)


def _check_stages(job_type: str, job: Any, handlers: dict[str, Callable]) -> None:
    stages = getattr(job, "stages", None)
    if not isinstance(stages, list) or not stages:
        raise RegistryError(f"Job '{job_type}' must declare a non-empty list of stages")
    for position, stage in enumerate(stages, start=1):
        where = f"Job '{job_type}' stage {position}"
        if not isinstance(stage, dict):
            raise RegistryError(f"{where} must be a dict")
        if stage.get("number") != position:
            raise RegistryError(
                f"{where} has number {stage.get('number')!r}; stages are numbered 1, 2, ... "
                "in order"
            )
        if not stage.get("name"):
            raise RegistryError(f"{where} has no name")
        kind = stage.get("parallelism", "single")
        if kind not in PARALLELISM_KINDS:
            raise RegistryError(
                f"{where} ('{stage['name']}') has parallelism {kind!r}; "
                f"allowed: {', '.join(PARALLELISM_KINDS)}"
            )
        if kind in ("fan_in", "match_previous") and position == 1:
            raise RegistryError(f"{where} ('{stage['name']}') is {kind} but has no previous stage")
        task_type = stage.get("task_type")
        if not task_type:
            raise RegistryError(f"{where} ('{stage['name']}') names no task_type")
        if task_type not in handlers:
            raise RegistryError(
                f"{where} ('{stage['name']}') uses task type '{task_type}', which has no "
                f"handler in ALL_HANDLERS (services/__init__.py). Registered task types: "
                f"{', '.join(sorted(handlers)) or 'none'}"
            )


def validate_registries(jobs: dict[str, Any], handlers: dict[str, Callable]) -> None:
    # Imported here: jobs/__init__.py calls this function while the jobs package loads.
    from jobs.validation import validate_schema

    for job_type, job in jobs.items():
        if not inspect.isclass(job):
            raise RegistryError(f"ALL_JOBS['{job_type}'] must be a job class, got {job!r}")
        if getattr(job, "job_type", None) != job_type:
            raise RegistryError(
                f"ALL_JOBS key '{job_type}' does not match {job.__name__}.job_type "
                f"{getattr(job, 'job_type', None)!r}"
            )
        missing = [m for m in CONTRACT_METHODS if not callable(getattr(job, m, None))]
        abstract = sorted(getattr(job, "__abstractmethods__", ()))
        if missing or abstract:
            raise RegistryError(
                f"Job '{job_type}' ({job.__name__}) does not implement "
                f"{', '.join(missing or abstract)}"
            )
        if not getattr(job, "description", None):
            raise RegistryError(f"Job '{job_type}' ({job.__name__}) has no description")
        _check_stages(job_type, job, handlers)
        try:
            validate_schema(job.__name__, getattr(job, "parameters_schema", {}))
        except ContractViolationError as exc:
            raise RegistryError(str(exc)) from None
