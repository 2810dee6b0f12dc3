"""Driving a running LocalHost over real HTTP, as a user would: one call, or a job run to
its end."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any, Optional

TERMINAL = ("completed", "failed", "completed_with_errors", "cancelled")


def call(host: Any, method: str, path: str, payload: Optional[Any] = None
         ) -> tuple[int, dict]:
    """One request on its own connection: (status, JSON body)."""
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=30)
    body = None if payload is None else json.dumps(payload).encode()
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read() or b"{}")
    conn.close()
    return resp.status, data


def run(host: Any, job_type: str, params: dict, timeout: float = 60.0) -> dict:
    """Submit a new job (201 expected) and poll its status until it ends."""
    code, created = call(host, "POST", f"/api/jobs/submit/{job_type}", params)
    assert code == 201, created
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, job = call(host, "GET", f"/api/jobs/status/{created['job_id']}")
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.1)
    raise AssertionError(f"{job_type} did not end: {job['status']}")
