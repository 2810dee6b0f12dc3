"""JobBaseMixin: the four boilerplate methods of the job contract, from class attributes.

    class MyJob(JobBaseMixin, JobBase):      # mixin first, so its methods are the ones used
        job_type = "my_job"
        description = "..."
        stages = [{"number": 1, "name": "...", "task_type": "...", "parallelism": "single"}]
        parameters_schema = {"path": {"type": "str", "required": True}}

        @staticmethod
        def create_tasks_for_stage(stage, job_params, job_id, previous_results=None): ...

        @staticmethod
        def finalize_job(context): ...

create_job_record and queue_job are the one seam between jobs and infrastructure (the
design documents' contract): they delegate to infrastructure's repository and queue.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from jobs.validation import validate_parameters


class JobBaseMixin:
    """Reads job_type, description, stages, parameters_schema and id_excluded_parameters
    from the job class (JobBase declares them)."""

    @classmethod
    def validate_job_parameters(cls, params: Any) -> dict[str, Any]:
        """parameters_schema (a dict of rules or a pydantic model, jobs/validation.py)
        applied to params: a new dict of JSON values, defaults applied; raises
        JobValidationError naming the full path of the offending value."""
        return validate_parameters(cls.parameters_schema, params)

    @classmethod
    def generate_job_id(cls, params: dict[str, Any]) -> str:
        """SHA-256 hex of canonical JSON of the job type and the identifying parameters
        (the validated parameters: JSON values, so both kinds of schema hash alike)."""
        identity = {k: v for k, v in params.items() if k not in cls.id_excluded_parameters}
        canonical = json.dumps(
            {"job_type": cls.job_type, "parameters": identity},
            sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @classmethod
    def create_job_record(cls, job_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Store the job as queued at stage 1, with the message that starts it, in one
        transaction; an existing job is left as it is ("created": False)."""
        from infrastructure.submission import store_job

        return store_job(cls, job_id, params)

    @classmethod
    def queue_job(cls, job_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send the job's first message (stored by create_job_record)."""
        from infrastructure.submission import send_pending_messages

        return send_pending_messages(job_id)


class SingleTaskJobMixin:
    """Seed 002's single-stage pass-through: the one stage is one task given the job's
    parameters, and the job's result is that task's, under the job type (plus what
    result_context adds). Put it before JobBaseMixin."""

    @staticmethod
    def create_tasks_for_stage(stage: int, job_params: dict[str, Any], job_id: str,
                               previous_results: Any = None) -> list[dict[str, Any]]:
        return [{"parameters": job_params}]

    @classmethod
    def finalize_job(cls, context: Any) -> dict[str, Any]:
        result = context.task_results[0].result_data or {}
        return {"job_type": cls.job_type, **cls.result_context(context), **result}

    @classmethod
    def result_context(cls, context: Any) -> dict[str, Any]:
        """What the job's result adds before the task's (for example, the input named)."""
        return {}
