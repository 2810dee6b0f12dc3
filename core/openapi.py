"""GET /api/openapi.json: an OpenAPI 3.1 document of every route, generated from the
response models (core/api_models.py) and, for submit, each job type's parameters schema
(its pydantic model's JSON Schema; OpenAPI 3.1 is JSON Schema 2020-12)."""

from __future__ import annotations

import copy
import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from core import api_models as m
from core.openapi_control import control_paths
from core.job_listing import DEFAULT_LIMIT, INCLUDES, JOB_STATUSES, MAX_LIMIT, TASK_STATUSES
from jobs.validation import parameters_model

REF = "#/components/schemas/{model}"
MODELS: list[type[BaseModel]] = [
    m.ErrorResponse, m.SubmitResponse, m.JobStatusDocument, m.JobPage, m.JobSummary,
    m.TaskPage, m.RerunResponse, m.BulkResponse, m.PurgeResponse, m.HealthResponse,
    m.HealthDetails]
KEYED = [{"functionKey": []}, {"functionKeyQuery": []}]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    what = {400: "a bad value, naming the parameter", 401: "a missing or wrong function key "
            "(Azure; the local host with LOCAL_CHECK_KEYS)", 404: "not found",
            409: "the failed job's cleanup has not finished", 413: "the body is too large",
            415: "a content type other than JSON",
            503: "the database, queue or a resource is unreachable, or the job needs what "
                 "this deployment lacks"}
    return {str(c): _json(_ref(m.ErrorResponse), what[c]) for c in codes}


def _query(name: str, schema: dict[str, Any], description: str,
           explode: bool = False) -> dict[str, Any]:
    parameter = {"name": name, "in": "query", "required": False, "schema": schema,
                 "description": description}
    if explode:
        parameter.update(style="form", explode=True)
    return parameter


def _path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}


JOB_ID = _path("job_id", {"type": "string", "pattern": "^[0-9a-f]{64}$"},
               "64 lowercase hex characters")
DATE = {"type": "string", "format": "date-time"}
PAGING = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                     "default": DEFAULT_LIMIT}, "rows per page"),
    _query("continuation_token", {"type": "string"},
           "the previous page's continuation_token, with the same filters"),
]


def _job_filters(job_types: list[str]) -> list[dict[str, Any]]:
    return [
        _query("status", {"type": "array", "items": {"enum": JOB_STATUSES}},
               "one or several (repeated, or comma-separated)", explode=True),
        _query("job_type", {"type": "array", "items": {"enum": job_types}},
               "one or several (repeated, or comma-separated)", explode=True),
        _query("created_after", DATE, "created strictly after (no zone: UTC)"),
        _query("created_before", DATE, "created strictly before"),
        _query("updated_after", DATE, "last changed strictly after"),
        _query("id_prefix", {"type": "string", "pattern": "^[0-9a-fA-F]{1,64}$"},
               "the start of the job id"),
    ]


def _submit_body(job_type: str, job_class: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    """The job type's parameters as a component (its nested models beside it)."""
    prefix = f"submit_{job_type}"
    model = parameters_model(job_class.parameters_schema)
    schema = model.model_json_schema(ref_template=REF.replace("{model}", prefix + ".{model}"))
    for name, nested in schema.pop("$defs", {}).items():
        schemas[f"{prefix}.{name}"] = nested
    schema["title"] = f"{job_type} parameters"
    schemas[prefix] = schema
    return {"$ref": REF.format(model=prefix)}


def _submit_operation(job_type: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "operationId": f"submit_{job_type}", "tags": ["jobs"], "security": KEYED,
        "summary": f"Submit a {job_type} job",
        "description": "An empty body means every parameter's default. The same "
                       "parameters return the same job (200).",
        "requestBody": {"required": False, "content": {"application/json": {
            "schema": body}}},
        "responses": {"201": _json(_ref(m.SubmitResponse), "a new job, or a failed job's "
                                   "new attempt"),
                      "200": _json(_ref(m.SubmitResponse), "the job with these parameters"),
                      **_errors(400, 401, 409, 413, 415, 503)},
    }


def build_openapi(jobs: dict[str, Any]) -> dict[str, Any]:
    _, top = models_json_schema([(model, "validation") for model in MODELS], ref_template=REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    job_types = sorted(jobs)
    paths: dict[str, Any] = {}
    for job_type in job_types:
        body = _submit_body(job_type, jobs[job_type], schemas)
        paths[f"/api/jobs/submit/{job_type}"] = {"post": _submit_operation(job_type, body)}
    generic = _submit_operation("job", {"type": "object"})
    generic.update(operationId="submit", summary="Submit a job of any type (the type's "
                   "own path above describes its parameters)")
    generic["parameters"] = [_path("job_type", {"type": "string"}, "a registered job type")]
    generic["responses"].update(_errors(404))
    paths["/api/jobs/submit/{job_type}"] = {"post": generic}
    paths["/api/jobs/status/{job_id}"] = {"get": {
        "operationId": "status", "tags": ["jobs"], "security": KEYED,
        "summary": "A job's status document: its record, timeline and stages",
        "parameters": [JOB_ID],
        "responses": {"200": _json(_ref(m.JobStatusDocument), "the job"),
                      **_errors(400, 401, 404, 503)}}}
    paths["/api/jobs"] = {"get": {
        "operationId": "list_jobs", "tags": ["jobs"], "security": KEYED,
        "summary": "Jobs matching the filters, newest first, a page at a time",
        "parameters": _job_filters(job_types) + PAGING,
        "responses": {"200": _json(_ref(m.JobPage), "a page of jobs"),
                      **_errors(400, 401, 503)}}}
    paths["/api/jobs/summary"] = {"get": {
        "operationId": "jobs_summary", "tags": ["jobs"], "security": KEYED,
        "summary": "Counts of the jobs matching the filters, by status and by job type",
        "parameters": _job_filters(job_types),
        "responses": {"200": _json(_ref(m.JobSummary), "the counts"),
                      **_errors(400, 401, 503)}}}
    paths["/api/jobs/{job_id}/tasks"] = {"get": {
        "operationId": "job_tasks", "tags": ["jobs"], "security": KEYED,
        "summary": "A job's tasks in stage and index order, a page at a time",
        "parameters": [
            JOB_ID,
            _query("stage", {"type": "integer", "minimum": 0},
                   "one stage (0: a failed job's cleanup task)"),
            _query("status", {"type": "array", "items": {"enum": TASK_STATUSES}},
                   "one or several (repeated, or comma-separated)", explode=True),
            _query("include", {"type": "array", "items": {"enum": list(INCLUDES)}},
                   "also each task's parameters and/or result", explode=False),
            *PAGING],
        "responses": {"200": _json(_ref(m.TaskPage), "a page of tasks"),
                      **_errors(400, 401, 404, 503)}}}
    paths.update(control_paths(job_types))
    paths["/api/health"] = {"get": {
        "operationId": "health", "tags": ["health"], "security": [],
        "summary": "Up or down, for probes (anonymous)",
        "responses": {"200": _json(_ref(m.HealthResponse), "up"),
                      "503": _json(_ref(m.HealthResponse), "down")}}}
    paths["/api/health/details"] = {"get": {
        "operationId": "health_details", "tags": ["health"], "security": KEYED,
        "summary": "Database, queue, registries and the geospatial database",
        "responses": {"200": _json(_ref(m.HealthDetails), "up"),
                      "503": _json(_ref(m.HealthDetails), "the database is unreachable"),
                      **_errors(401)}}}
    paths["/api/openapi.json"] = {"get": {
        "operationId": "openapi", "tags": ["meta"], "security": KEYED,
        "summary": "This document",
        "responses": {"200": _json({"type": "object"}, "the OpenAPI 3.1 document"),
                      **_errors(401)}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Geospatial job orchestration engine", "version": "1.0.0",
                 "description": "Submit jobs, follow them, find them. Timestamps are ISO "
                                "8601 in UTC."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"}}},
    }


_cache: dict[int, str] = {}


def openapi_json(jobs: dict[str, Any]) -> str:
    """The document as JSON text, built once per registry."""
    key = id(jobs)
    if key not in _cache:
        _cache[key] = json.dumps(build_openapi(copy.copy(jobs)))
    return _cache[key]
