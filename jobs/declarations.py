"""What a job may declare besides its stages and parameters: submit checks.

    class IngestJob(JobBaseMixin, JobBase):
        submit_checks = (
            SubmitCheck("table_absent", parameter="table_name",
                        arguments={"schema": "schema", "table": "table_name"},
                        when=lambda p: p["if_exists"] == "fail"),
        )
        cleanup_task_type = "ingest_cleanup"   # a handler in ALL_HANDLERS

Core runs a job's submit checks at submit, through infrastructure, before anything is
stored (core/submit_checks.py); the named checks are infrastructure/submit_checks.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Union


@dataclass(frozen=True)
class SubmitCheck:
    """A requirement on the outside world, checked at submit.

    check: a named check (infrastructure/submit_checks.py SUBMIT_CHECKS: "table_exists",
        "table_absent", ...) or a function of the job's own, check(resources, **arguments),
        that returns None or an identity value and raises RequirementError when unmet.
    parameter: the parameter a failure names (a 400 names it and the resource).
    arguments: the check's arguments, each taken from a validated parameter by name.
    identity: if set, the check's value joins the job's parameters (and so its id) under
        this name: a source blob's etag makes a corrected file a new job and the same
        file the same job. Identity checks run at every submit; the others only when a
        job would be created (a new job, or a failed job's new attempt), so submitting
        the same parameters again finds the job even after it made the table it checked.
    when: run only when this returns true of the validated parameters.
    A check whose arguments include a null parameter is skipped."""

    check: Union[str, Callable[..., Any]]
    parameter: str
    arguments: Mapping[str, str] = field(default_factory=dict)
    identity: Optional[str] = None
    when: Optional[Callable[[dict[str, Any]], bool]] = None

    @property
    def name(self) -> str:
        return self.check if isinstance(self.check, str) else getattr(
            self.check, "__name__", repr(self.check))
