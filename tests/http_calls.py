"""The HTTP functions called as the Python worker calls them: the registered user function
with a real azure.functions.HttpRequest. Each returns (status code, parsed JSON body)."""

from __future__ import annotations

import json
from typing import Any, Optional

import azure.functions as func

from triggers import http_jobs

SUBMIT_FN = http_jobs.submit.build().get_user_function()
STATUS_FN = http_jobs.status.build().get_user_function()


def call(fn: Any, req: func.HttpRequest) -> tuple[int, Any]:
    response = fn(req)
    return response.status_code, json.loads(response.get_body())


def submit(job_type: str, body: bytes | str = b"",
           content_type: Optional[str] = "application/json") -> tuple[int, Any]:
    """POST /api/jobs/submit/<job_type> with this raw body."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = {"content-type": content_type} if content_type else {}
    return call(SUBMIT_FN, func.HttpRequest(
        "POST", f"/api/jobs/submit/{job_type}", headers=headers,
        route_params={"job_type": job_type}, body=body))


def submit_json(job_type: str, params: dict) -> tuple[int, Any]:
    """POST these parameters as JSON."""
    return submit(job_type, json.dumps(params))


def status(job_id: str) -> tuple[int, Any]:
    """GET /api/jobs/status/<job_id>."""
    return call(STATUS_FN, func.HttpRequest(
        "GET", f"/api/jobs/status/{job_id}", route_params={"job_id": job_id}, body=b""))
