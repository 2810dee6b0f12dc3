"""The OpenAPI paths of the control routes (triggers/http_control.py): cancel, rerun and
purge of one job, and their bulk forms by the list's filters."""

from __future__ import annotations

from typing import Any

from core import api_models as m
from core.job_listing import JOB_STATUSES

REF = "#/components/schemas/{model}"
KEYED = [{"functionKey": []}, {"functionKeyQuery": []}]
JOB_ID = {"name": "job_id", "in": "path", "required": True,
          "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
          "description": "64 lowercase hex characters"}
WHAT = {400: "a bad value, naming the parameter", 401: "a missing or wrong key (Azure; the "
        "local host with LOCAL_CHECK_KEYS)", 404: "no such job",
        413: "the body is too large", 415: "a content type other than JSON",
        503: "the database or queue is unreachable"}


def _ref(model: Any) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int, conflict: str = "") -> dict[str, Any]:
    out = {str(c): _json(_ref(m.ErrorResponse), WHAT[c]) for c in codes}
    if conflict:
        out["409"] = _json(_ref(m.ErrorResponse), conflict + " (`status` names the job's)")
    return out


def _body(properties: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": {
        "type": "object", "properties": properties, "additionalProperties": False}}}}


def _filters(job_types: list[str]) -> dict[str, Any]:
    def listed(values: list[str]) -> dict[str, Any]:
        return {"anyOf": [{"enum": values}, {"type": "array", "minItems": 1,
                                              "items": {"enum": values}}]}
    date = {"type": "string", "format": "date-time"}
    return {"status": listed(JOB_STATUSES), "job_type": listed(job_types),
            "created_after": date, "created_before": date, "updated_after": date,
            "id_prefix": {"type": "string", "pattern": "^[0-9a-fA-F]{1,64}$"},
            "dry_run": {"type": "boolean", "default": False}}


def control_paths(job_types: list[str]) -> dict[str, Any]:
    job = "/api/jobs/{job_id}"
    paths: dict[str, Any] = {
        job + "/cancel": {"post": {
            "operationId": "cancel_job", "tags": ["jobs"], "security": KEYED,
            "summary": "Cancel a queued or processing job",
            "parameters": [JOB_ID],
            "requestBody": _body({"reason": {"type": "string"}}),
            "responses": {"200": _json(_ref(m.JobStatusDocument), "the job, cancelled "
                                       "(now, or before: then unchanged)"),
                          **_errors(400, 401, 404, 413, 415, 503,
                                    conflict="the job ended otherwise")}}},
        job + "/rerun": {"post": {
            "operationId": "rerun_job", "tags": ["jobs"], "security": KEYED,
            "summary": "Run a failed, cancelled or completed_with_errors job again from "
                       "its first stage with failed or cancelled tasks (from: start: "
                       "every stage, also for a completed job)",
            "parameters": [JOB_ID],
            "requestBody": _body({"from": {"enum": ["start"]}}),
            "responses": {"200": _json(_ref(m.RerunResponse), "the new attempt"),
                          **_errors(400, 401, 404, 413, 415, 503,
                                    conflict="the job is running, completed (without "
                                             "from: start), or its cleanup still runs")}}},
        job: {"delete": {
            "operationId": "purge_job", "tags": ["jobs"], "security": KEYED,
            "summary": "Delete a finished job's records (never its outputs); ADMIN level",
            "parameters": [JOB_ID],
            "responses": {"200": _json(_ref(m.PurgeResponse), "purged"),
                          **_errors(400, 401, 404, 503,
                                    conflict="the job has not finished, or its cleanup "
                                             "still runs")}}},
    }
    extra = {"cancel": {"reason": {"type": "string"}}, "rerun": {"from": {"enum": ["start"]}},
             "purge": {}}
    for action, fields in extra.items():
        paths[f"/api/jobs/{action}"] = {"post": {
            "operationId": f"{action}_jobs", "tags": ["jobs"], "security": KEYED,
            "summary": f"{action.capitalize()} every job the filters match (at least one "
                       "filter); dry_run only counts" + ("; ADMIN level"
                                                        if action == "purge" else ""),
            "requestBody": _body({**_filters(job_types), **fields}, required=True),
            "responses": {"200": _json(_ref(m.BulkResponse), "matched and acted_on"),
                          **_errors(400, 401, 413, 415, 503)}}}
    return paths
