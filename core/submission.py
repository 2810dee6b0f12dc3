"""Submitting a job: validate, derive its id, store it once, send its first message.

The same parameters give the same job id, so a repeated submit finds the job it made
instead of making another (concurrent identical submits: the insert decides, one wins).
A failed or cancelled job's parameters run it again, as a new attempt of the same job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from core.models import RESTARTABLE_JOB_STATUSES
from core.submit_checks import check_available, check_requirements, identity_values
from exceptions import JobValidationError


@dataclass(frozen=True)
class SubmitOutcome:
    created: bool  # new work: a new job, or a failed job's new attempt (rerun)
    # created: the record as stored; otherwise the job as the status endpoint shows it
    job: dict[str, Any]
    rerun: bool = False
    previous_status: Optional[str] = None  # a rerun's: how the previous attempt ended


def submit_job(machine: Any, job_type: str, params: Any) -> SubmitOutcome:
    job_class = machine.job_class(job_type)
    try:
        validated = job_class.validate_job_parameters(params)
    except JobValidationError:
        raise
    except (ValueError, TypeError) as exc:  # a job's own check, across parameters
        raise JobValidationError(f"{job_type}: {exc}") from exc
    # What the job needs (PostGIS...) is there, or a 503 saying what to install or set.
    check_available(job_class)
    # Checks that give the job's identity (a source blob's etag) run at every submit; the
    # others only when a job would be created, so the same submit again finds its job.
    validated = {**validated, **identity_values(job_class, validated, machine.resources)}
    job_id = job_class.generate_job_id(validated)
    existing = machine.state_manager.get_job(job_id)
    if existing is None:
        check_requirements(job_class, validated, machine.resources)
        record = job_class.create_job_record(job_id, validated)
        if record.get("created", True):
            job_class.queue_job(job_id, validated)
            # The record as stored (queued): a worker may already be running it.
            return SubmitOutcome(True, record)
    elif existing["status"] in RESTARTABLE_JOB_STATUSES:
        # A failed or cancelled job runs again as a new attempt; messages of older
        # attempts are ignored.
        check_requirements(job_class, validated, machine.resources)
        if machine.state_manager.start_new_attempt(job_id, validated) is not None:
            machine.outbox.flush(job_id)
            return SubmitOutcome(True, machine.state_manager.job_status(job_id), rerun=True,
                                 previous_status=existing["status"])
    # The job exists and has not failed. If its first message was never sent (the send
    # failed after the record was stored), this sends it; otherwise it does nothing.
    machine.resume(job_id)
    return SubmitOutcome(False, machine.state_manager.job_status(job_id))
