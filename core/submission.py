"""Submitting a job: validate, derive its id, store it once, send its first message.

The same parameters give the same job id, so a repeated submit finds the job it made
instead of making another (concurrent identical submits: the insert decides, one wins).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SubmitOutcome:
    created: bool
    # created: the record as stored; otherwise the job as the status endpoint shows it
    job: dict[str, Any]


def submit_job(machine: Any, job_type: str, params: Any) -> SubmitOutcome:
    job_class = machine.job_class(job_type)
    validated = job_class.validate_job_parameters(params)
    job_id = job_class.generate_job_id(validated)
    if machine.state_manager.get_job(job_id) is None:
        record = job_class.create_job_record(job_id, validated)
        if record.get("created", True):
            job_class.queue_job(job_id, validated)
            # The record as stored (queued): a worker may already be running it.
            return SubmitOutcome(True, record)
    # The job exists. If its first message was never sent (the send failed after the
    # record was stored), this sends it; otherwise it does nothing.
    machine.resume(job_id)
    return SubmitOutcome(False, machine.state_manager.job_status(job_id))
