"""The job API: POST /api/jobs/submit/{job_type} and GET /api/jobs/status/{job_id}.

Every error a caller can cause is a 4xx naming what was wrong and what is allowed; an
unreachable database is a 503; nothing answers 500.
"""

from __future__ import annotations

import logging
import re

import azure.functions as func

from config import get_settings
from core.submission import submit_job
from exceptions import (
    CleanupPendingError, DatabaseError, JobValidationError, QueueError, RequirementError,
    RequirementUnavailableError, ResourceUnavailableError, UnknownJobTypeError,
)
from jobs.validation import describe_parameters

from core.api_models import JobStatusDocument, SubmitResponse

from .http_utils import BadRequest, document, error_response, read_json_object
from .runtime import core_machine

logger = logging.getLogger(__name__)

bp = func.Blueprint()

JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{64}$")
UNAVAILABLE = "The service cannot reach its database or queue right now; try again shortly"
FAILED = "The service failed to handle this request (its log has the cause); try again shortly"


def _status_url(job_id: str) -> str:
    return f"/api/jobs/status/{job_id}"


@bp.route(route="jobs/submit/{job_type}", methods=["POST"])
def submit(req: func.HttpRequest) -> func.HttpResponse:
    job_type = req.route_params.get("job_type", "")
    try:
        if job_type not in core_machine.jobs_registry:
            raise UnknownJobTypeError(job_type, sorted(core_machine.jobs_registry))
        params = read_json_object(req, get_settings().max_request_bytes)
        outcome = submit_job(core_machine, job_type, params)
    except BadRequest as exc:
        return error_response(exc.status, exc.error, **exc.details)
    except UnknownJobTypeError as exc:
        return error_response(404, str(exc), available_job_types=exc.available)
    except RequirementError as exc:  # a submit check: the resource is missing or taken
        return error_response(400, str(exc), parameter=exc.parameter, resource=exc.resource)
    except JobValidationError as exc:
        return error_response(400, str(exc), parameter=exc.parameter,
                              parameters_schema=describe_parameters(
                                  core_machine.jobs_registry[job_type]))
    except CleanupPendingError as exc:
        return error_response(409, str(exc))
    except RequirementUnavailableError as exc:  # not a retry: something to install or set
        logger.warning("submit refused: %s", exc, extra={"job_type": job_type})
        return error_response(503, str(exc), requirement=exc.requirement, hint=exc.hint)
    except ResourceUnavailableError as exc:
        logger.error("submit failed: %s", exc, extra={"job_type": job_type})
        return error_response(503, f"{exc}; try again shortly")
    except (DatabaseError, QueueError) as exc:
        logger.error("submit failed: %s", exc, extra={"job_type": job_type})
        return error_response(503, UNAVAILABLE)
    except Exception:  # an unexpected failure must not become a 500 or crash the host
        logger.exception("submit failed", extra={"job_type": job_type})
        return error_response(503, FAILED)
    job = outcome.job
    payload = {
        "job_id": job["job_id"], "job_type": job["job_type"], "status": job["status"],
        "idempotent": not outcome.created, "attempt": job.get("attempt", 1),
        "stage": job["stage"],
        "total_stages": job["total_stages"], "parameters": job["parameters"],
        "status_url": _status_url(job["job_id"]),
    }
    if outcome.rerun:
        previous = outcome.previous_status or "failed"
        payload["message"] = (f"The previous attempt {previous}; running again as attempt "
                              f"{job['attempt']}")
    if not outcome.created:
        payload["message"] = "A job with these parameters already exists"
        payload["result_data"] = job["result_data"]
        payload["error_details"] = job["error_details"]
    return document(201 if outcome.created else 200, SubmitResponse, payload)


@bp.route(route="jobs/status/{job_id}", methods=["GET"])
def status(req: func.HttpRequest) -> func.HttpResponse:
    job_id = req.route_params.get("job_id", "")
    if not JOB_ID_PATTERN.match(job_id):
        return error_response(
            400, f"Malformed job id '{job_id[:100]}': a job id is 64 lowercase hex characters")
    try:
        job = core_machine.state_manager.job_status(job_id)
        if job is None:
            return error_response(404, f"No job with id {job_id}")
        return document(200, JobStatusDocument, job)
    except Exception:  # database trouble is the caller's to retry, not a 500
        logger.exception("status failed", extra={"job_id": job_id})
        return error_response(503, UNAVAILABLE)
