"""JobBase: the contract every job declares (the design documents' seven elements).

A job is a class, never instantiated: its attributes declare it and its methods are class-
or static methods. CoreMachine calls create_tasks_for_stage and finalize_job; submission
calls validate_job_parameters, generate_job_id, create_job_record and queue_job, which
JobBaseMixin supplies from the class attributes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Optional

from pydantic import BaseModel

from core.models import PARALLELISM_KINDS  # noqa: F401  (re-exported for job authors)


@dataclass
class JobExecutionContext:
    """What finalize_job receives: the job and every task's outcome."""

    job_id: str
    job_type: str
    parameters: dict[str, Any]
    stage_results: dict[str, Any]
    task_results: list[Any] = field(default_factory=list)  # TaskRecord, by stage and index

    def results_for_stage(self, stage: int) -> list[Any]:
        return [t for t in self.task_results if t.stage == stage]


class JobBase(ABC):
    job_type: str
    description: str
    stages: list[dict[str, Any]]
    parameters_schema: dict[str, dict[str, Any]] | type[BaseModel] = {}  # jobs/validation.py
    # Parameters that do not make a job different (left out of its id).
    id_excluded_parameters: tuple[str, ...] = ()
    # Requirements on the outside world checked at submit (jobs/declarations.py).
    submit_checks: tuple[Any, ...] = ()
    # A task type (in ALL_HANDLERS) run once when the job ends failed (core/cleanup.py).
    cleanup_task_type: Optional[str] = None
    # What the job needs beyond the engine (infrastructure/requirements.py REQUIREMENTS):
    # "postgis", the geospatial database (PostGIS and the pgstac catalogue). Submit answers
    # 503 saying what to install or set when one is unavailable.
    requires: tuple[str, ...] = ()

    @classmethod
    @abstractmethod
    def validate_job_parameters(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Return the validated parameters with defaults applied; raise JobValidationError."""

    @classmethod
    @abstractmethod
    def generate_job_id(cls, params: dict[str, Any]) -> str:
        """A deterministic 64-hex id for these validated parameters."""

    @staticmethod
    @abstractmethod
    def create_tasks_for_stage(
        stage: int,
        job_params: dict[str, Any],
        job_id: str,
        previous_results: Optional[list[dict[str, Any]]] = None,
    ) -> list[dict[str, Any]]:
        """The stage's tasks, in order: dicts with "parameters" (and optionally "task_type",
        which defaults to the stage's). previous_results: the previous stage's tasks in
        task order, each {"task_id", "task_index", "status", "result"}."""

    @classmethod
    @abstractmethod
    def create_job_record(cls, job_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Store the job (idempotent) and return its record."""

    @classmethod
    @abstractmethod
    def queue_job(cls, job_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send the job's first message."""

    @staticmethod
    @abstractmethod
    def finalize_job(context: JobExecutionContext) -> dict[str, Any]:
        """The job's result, from every task's outcome (aggregate_job_results in seed 002)."""

    @classmethod
    def aggregate_job_results(cls, context: JobExecutionContext) -> dict[str, Any]:
        """Seed 002's name for finalize_job."""
        return cls.finalize_job(context)
