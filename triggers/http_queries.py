"""The job API's read side: GET /api/jobs (find jobs by filter, newest first, paged),
GET /api/jobs/summary (counts by status and job type), GET /api/jobs/{job_id}/tasks (a
job's tasks, paged) and GET /api/openapi.json (the OpenAPI 3.1 document of every route).
Bad query parameters are a 400 naming the parameter and what is allowed; an unreachable
database is a 503; nothing answers 500."""

from __future__ import annotations

import logging
from typing import Any, Callable

import azure.functions as func

from core.api_models import JobPage, JobSummary, TaskPage
from core.job_listing import JobListing
from core.openapi import openapi_json
from exceptions import QueryParameterError
from infrastructure.db import get_database

from .http_jobs import JOB_ID_PATTERN, UNAVAILABLE
from .http_utils import document, error_response
from .runtime import core_machine

logger = logging.getLogger(__name__)

bp = func.Blueprint()
listing = JobListing(core_machine.jobs_registry, get_database)


def _answer(name: str, model: Any, produce: Callable[[], Any]) -> func.HttpResponse:
    try:
        return document(200, model, produce())
    except QueryParameterError as exc:
        details: dict[str, Any] = {"parameter": exc.parameter}
        if exc.allowed is not None:
            details["allowed"] = exc.allowed
        return error_response(400, str(exc), **details)
    except Exception:  # database trouble is the caller's to retry, not a 500
        logger.exception("%s failed", name)
        return error_response(503, UNAVAILABLE)


@bp.route(route="jobs", methods=["GET"])
def list_jobs(req: func.HttpRequest) -> func.HttpResponse:
    return _answer("list_jobs", JobPage, lambda: listing.list_jobs(req.params))


@bp.route(route="jobs/summary", methods=["GET"])
def jobs_summary(req: func.HttpRequest) -> func.HttpResponse:
    return _answer("jobs_summary", JobSummary, lambda: listing.summary(req.params))


@bp.route(route="jobs/{job_id}/tasks", methods=["GET"])
def job_tasks(req: func.HttpRequest) -> func.HttpResponse:
    job_id = req.route_params.get("job_id", "")
    if not JOB_ID_PATTERN.match(job_id):
        return error_response(
            400, f"Malformed job id '{job_id[:100]}': a job id is 64 lowercase hex characters")
    try:
        job = core_machine.state_manager.get_job(job_id)
    except Exception:
        logger.exception("job_tasks failed", extra={"job_id": job_id})
        return error_response(503, UNAVAILABLE)
    if job is None:
        return error_response(404, f"No job with id {job_id}")
    return _answer("job_tasks", TaskPage, lambda: listing.list_tasks(job, req.params))


@bp.route(route="openapi.json", methods=["GET"])
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    try:
        text = openapi_json(core_machine.jobs_registry)
    except Exception:  # a job's schema that cannot be described: a bug, not a 500
        logger.exception("openapi failed")
        return error_response(503, "The OpenAPI document could not be built; see the log")
    return func.HttpResponse(text, status_code=200, mimetype="application/json",
                             charset="utf-8")
