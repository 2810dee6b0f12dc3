"""The job API's control routes (core/job_control.py, core/bulk_actions.py):

- POST /api/jobs/{job_id}/cancel  (body optional: {"reason": "..."})
- POST /api/jobs/{job_id}/rerun   (body optional: {"from": "start"})
- DELETE /api/jobs/{job_id}       (ADMIN)
- POST /api/jobs/cancel, /api/jobs/rerun, /api/jobs/purge (ADMIN): by the list's filters,
  with dry_run; answer matched and acted_on.

Bad input is a 400 naming the field, a status that does not allow the action a 409 naming
the status, an unreachable database a 503; nothing answers 500.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import azure.functions as func

from config import get_settings
from core.api_models import BulkResponse, JobStatusDocument, PurgeResponse, RerunResponse
from core.bulk_actions import BulkActions
from core.job_control import JobConflict, JobControl
from exceptions import CleanupPendingError, QueryParameterError
from infrastructure.db import get_database

from .http_jobs import JOB_ID_PATTERN, UNAVAILABLE
from .http_utils import (
    BadRequest, document, error_response, json_response, read_json_object,
)
from .runtime import core_machine

logger = logging.getLogger(__name__)

bp = func.Blueprint()
control = JobControl(core_machine)
bulk = BulkActions(core_machine, get_database)


def _body(req: func.HttpRequest, allowed: tuple[str, ...]) -> dict[str, Any]:
    body = read_json_object(req, get_settings().max_request_bytes)
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadRequest(400, f"Unknown field '{unknown[0][:100]}': allowed are "
                              f"{', '.join(allowed) or 'none'}", parameter=unknown[0],
                         allowed=list(allowed))
    return body


def _guarded(name: str, req: func.HttpRequest,
             act: Callable[[str], func.HttpResponse]) -> func.HttpResponse:
    job_id = req.route_params.get("job_id", "")
    if not JOB_ID_PATTERN.match(job_id):
        return error_response(
            400, f"Malformed job id '{job_id[:100]}': a job id is 64 lowercase hex characters")
    try:
        return act(job_id)
    except BadRequest as exc:
        return error_response(exc.status, exc.error, **exc.details)
    except JobConflict as exc:
        return json_response(409, {"error": str(exc), "status": exc.status})
    except CleanupPendingError as exc:
        return json_response(409, {"error": str(exc), "status": "cleanup running"})
    except Exception:  # database trouble is the caller's to retry, not a 500
        logger.exception("%s failed", name, extra={"job_id": job_id})
        return error_response(503, UNAVAILABLE)


def _not_found(job_id: str) -> func.HttpResponse:
    return error_response(404, f"No job with id {job_id}")


@bp.route(route="jobs/{job_id}/cancel", methods=["POST"])
def cancel_job(req: func.HttpRequest) -> func.HttpResponse:
    def act(job_id: str) -> func.HttpResponse:
        reason = _body(req, ("reason",)).get("reason")
        if reason is not None and not isinstance(reason, str):
            raise BadRequest(400, "'reason' must be a string", parameter="reason")
        _, view = control.cancel(job_id, reason)
        return _not_found(job_id) if view is None else document(200, JobStatusDocument, view)

    return _guarded("cancel_job", req, act)


@bp.route(route="jobs/{job_id}/rerun", methods=["POST"])
def rerun_job(req: func.HttpRequest) -> func.HttpResponse:
    def act(job_id: str) -> func.HttpResponse:
        start = _body(req, ("from",)).get("from")
        if start not in (None, "start"):
            raise BadRequest(400, "'from' must be \"start\" (run every stage again), or "
                                  "left out (run from the first stage that failed)",
                             parameter="from", allowed=["start"])
        rerun = control.rerun(job_id, start == "start")
        if rerun is None:
            return _not_found(job_id)
        job = core_machine.state_manager.get_job(job_id)
        return document(200, RerunResponse, {
            "job_id": job_id, "job_type": job["job_type"], "status": job["status"],
            "attempt": rerun.attempt, "from_stage": rerun.from_stage,
            "kept_stages": rerun.kept_stages, "tasks_queued": rerun.tasks_queued,
            "reason": rerun.reason, "status_url": f"/api/jobs/status/{job_id}"})

    return _guarded("rerun_job", req, act)


@bp.route(route="jobs/{job_id}", methods=["DELETE"], auth_level=func.AuthLevel.ADMIN)
def purge_job(req: func.HttpRequest) -> func.HttpResponse:
    def act(job_id: str) -> func.HttpResponse:
        purged = control.purge(job_id)
        if purged is None:
            return _not_found(job_id)
        return document(200, PurgeResponse, {"job_id": job_id, "purged": True})

    return _guarded("purge_job", req, act)


def _bulk(action: str, req: func.HttpRequest) -> func.HttpResponse:
    try:
        body = read_json_object(req, get_settings().max_request_bytes)
        return document(200, BulkResponse, bulk.run(action, body))
    except BadRequest as exc:
        return error_response(exc.status, exc.error, **exc.details)
    except QueryParameterError as exc:
        details: dict[str, Any] = {"parameter": exc.parameter}
        if exc.allowed is not None:
            details["allowed"] = exc.allowed
        return error_response(400, str(exc), **details)
    except Exception:
        logger.exception("bulk %s failed", action)
        return error_response(503, UNAVAILABLE)


@bp.route(route="jobs/cancel", methods=["POST"])
def cancel_jobs(req: func.HttpRequest) -> func.HttpResponse:
    return _bulk("cancel", req)


@bp.route(route="jobs/rerun", methods=["POST"])
def rerun_jobs(req: func.HttpRequest) -> func.HttpResponse:
    return _bulk("rerun", req)


@bp.route(route="jobs/purge", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
def purge_jobs(req: func.HttpRequest) -> func.HttpResponse:
    return _bulk("purge", req)
