"""Start-up checks of ALL_JOBS against ALL_HANDLERS: a mistake fails at import, naming the
job, the stage and what is wrong, never later at run time."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from core.models import PARALLELISM_KINDS
from core.stage_rules import ON_TASK_FAILURE
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
        _check_stage_options(where, stage)
        if task_type not in handlers:
            raise RegistryError(
                f"{where} ('{stage['name']}') uses task type '{task_type}', which has no "
                f"handler in ALL_HANDLERS (services/__init__.py). Registered task types: "
                f"{', '.join(sorted(handlers)) or 'none'}"
            )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_stage_options(where: str, stage: dict[str, Any]) -> None:
    """The optional keys of a stage: timeout_seconds, max_concurrency (tasks of the stage
    running at once in one process), on_task_failure and max_failed_fraction."""
    named = f"{where} ('{stage['name']}')"
    if "timeout_seconds" in stage and not (
            _number(stage["timeout_seconds"]) and stage["timeout_seconds"] > 0):
        raise RegistryError(f"{named} has timeout_seconds {stage['timeout_seconds']!r}; "
                            "it must be a number of seconds above 0")
    cap = stage.get("max_concurrency")
    if cap is not None and not (isinstance(cap, int) and not isinstance(cap, bool)
                                and cap >= 1):
        raise RegistryError(f"{named} has max_concurrency {cap!r}; it must be a whole "
                            "number of at least 1 (or left out: no cap)")
    policy = stage.get("on_task_failure", "fail")
    if policy not in ON_TASK_FAILURE:
        raise RegistryError(f"{named} has on_task_failure {policy!r}; allowed: "
                            f"{', '.join(ON_TASK_FAILURE)}")
    if "max_failed_fraction" in stage:
        fraction = stage["max_failed_fraction"]
        if policy != "continue":
            raise RegistryError(f"{named} sets max_failed_fraction without "
                                "on_task_failure 'continue'")
        if not (_number(fraction) and 0 <= fraction < 1):
            raise RegistryError(f"{named} has max_failed_fraction {fraction!r}; it must be "
                                "a number from 0 up to (not including) 1")


def _check_cleanup(job_type: str, job: Any, handlers: dict[str, Callable]) -> None:
    task_type = getattr(job, "cleanup_task_type", None)
    if task_type is None:
        return
    if not isinstance(task_type, str) or not task_type:
        raise RegistryError(f"Job '{job_type}' has cleanup_task_type {task_type!r}; it must "
                            "name a task type (or be left out)")
    if task_type not in handlers:
        raise RegistryError(
            f"Job '{job_type}' declares cleanup task type '{task_type}', which has no "
            f"handler in ALL_HANDLERS (services/__init__.py). Registered task types: "
            f"{', '.join(sorted(handlers)) or 'none'}")


def parameter_names(schema: Any) -> set[str]:
    """The top-level parameter names of a dict schema or a pydantic model."""
    fields = getattr(schema, "model_fields", None)
    if isinstance(fields, dict):  # the names a request sends: aliases where declared
        return {field.alias or name for name, field in fields.items()}
    return set(schema) if isinstance(schema, dict) else set()


def _check_submit_checks(job_type: str, job: Any) -> None:
    from infrastructure.submit_checks import SUBMIT_CHECKS
    from jobs.declarations import SubmitCheck

    checks = getattr(job, "submit_checks", ()) or ()
    if not isinstance(checks, (list, tuple)):
        raise RegistryError(f"Job '{job_type}' submit_checks must be a list of SubmitCheck")
    names = parameter_names(getattr(job, "parameters_schema", {}))
    identities: set[str] = set()
    for position, check in enumerate(checks):
        where = f"Job '{job_type}' submit_checks[{position}]"
        if not isinstance(check, SubmitCheck):
            raise RegistryError(f"{where} is {type(check).__name__}; it must be a "
                                "SubmitCheck (jobs/declarations.py)")
        if isinstance(check.check, str):
            if check.check not in SUBMIT_CHECKS:
                raise RegistryError(f"{where} names check '{check.check}'; known checks: "
                                    f"{', '.join(sorted(SUBMIT_CHECKS))} (or a function)")
            wanted = set(SUBMIT_CHECKS[check.check][1])
            if set(check.arguments) != wanted:
                raise RegistryError(f"{where} ('{check.check}') takes arguments "
                                    f"{sorted(wanted)}, declared {sorted(check.arguments)}")
        elif not callable(check.check):
            raise RegistryError(f"{where}: check must be a check's name or a function")
        unknown = sorted({check.parameter, *check.arguments.values()} - names)
        if unknown:
            raise RegistryError(f"{where} ({check.name}) refers to parameter(s) {unknown} "
                                f"that parameters_schema does not declare")
        if check.identity is not None:
            if check.identity in names or check.identity in identities:
                raise RegistryError(f"{where} ({check.name}) has identity "
                                    f"'{check.identity}', which is already a parameter's "
                                    "or another check's name")
            identities.add(check.identity)


def _check_requires(job_type: str, job: Any) -> None:
    from infrastructure.requirements import REQUIREMENTS

    requires = getattr(job, "requires", ()) or ()
    if not isinstance(requires, (list, tuple)) or not all(isinstance(r, str) for r in requires):
        raise RegistryError(f"Job '{job_type}' requires must be a tuple of names, e.g. "
                            "(\"postgis\",)")
    unknown = sorted(set(requires) - set(REQUIREMENTS))
    if unknown:
        raise RegistryError(f"Job '{job_type}' requires {unknown}; known requirements: "
                            f"{', '.join(sorted(REQUIREMENTS))}")


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
        _check_cleanup(job_type, job, handlers)
        _check_submit_checks(job_type, job)
        _check_requires(job_type, job)
        try:
            validate_schema(job.__name__, getattr(job, "parameters_schema", {}))
        except ContractViolationError as exc:
            raise RegistryError(str(exc)) from None
