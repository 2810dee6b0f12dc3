"""GET /api/openapi.json on the local host: an OpenAPI 3.1 document of every route the app
registers, generated from the response models and each job type's parameters; and
schemathesis (its CLI, as a subprocess) run against the local host over every route: no
500 and no crash, every status code, content type and body as the document says."""

from __future__ import annotations

import http.client
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import ALL_JOBS
from local_host import LocalHost
from local_host.functions import HTTP_TRIGGER, discover

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")


def get_json(port: int, path: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    return resp.status, body


@pytest.fixture
def host(database):
    with LocalHost(port=0, close_database=False, banner=False) as running:
        yield running


def test_the_document_describes_every_route_and_each_job_types_parameters(host):
    code, doc = get_json(host.port, "/api/openapi.json")
    assert code == 200 and doc["openapi"] == "3.1.0"
    from function_app import app

    documented = {(path, method.upper()) for path, ops in doc["paths"].items()
                  for method in ops}
    for spec in discover(app):
        if spec.trigger_type == HTTP_TRIGGER:
            for method in spec.methods:
                assert (f"/api/{spec.route}", method) in documented, spec.route
    schemas = doc["components"]["schemas"]
    for job_type in ALL_JOBS:
        body = doc["paths"][f"/api/jobs/submit/{job_type}"]["post"]["requestBody"]
        ref = body["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/submit_{job_type}"
    hello = schemas["submit_hello_world"]
    assert hello["properties"]["n"]["maximum"] == 1000
    assert hello["additionalProperties"] is False
    page = schemas["JobPage"]["properties"]
    assert set(page) == {"jobs", "continuation_token"}
    listed = {p["name"] for p in doc["paths"]["/api/jobs"]["get"]["parameters"]}
    assert listed == {"status", "job_type", "created_after", "created_before",
                      "updated_after", "id_prefix", "limit", "continuation_token"}


def test_responses_are_the_documents_models(host):
    """A real job's documents validate against the document's schemas (by the models
    the routes answer through)."""
    from core.api_models import JobPage, JobStatusDocument, JobSummary, TaskPage

    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=30)
    conn.request("POST", "/api/jobs/submit/hello_world", body=b'{"n": 2}',
                 headers={"Content-Type": "application/json"})
    job_id = json.loads(conn.getresponse().read())["job_id"]
    conn.close()
    for path, model in ((f"/api/jobs/status/{job_id}", JobStatusDocument),
                        ("/api/jobs", JobPage), ("/api/jobs/summary", JobSummary),
                        (f"/api/jobs/{job_id}/tasks?include=parameters,result", TaskPage)):
        code, body = get_json(host.port, path)
        assert code == 200
        model.model_validate(body)


def test_schemathesis_finds_nothing(database, blob_storage, monkeypatch, tmp_path, caplog):
    # Submitted jobs stay queued (no job trigger): a generated hello_world of 1,000 tasks
    # sleeping 60 s each must not keep the host busy after the run.
    monkeypatch.setenv("AzureWebJobs.process_job_message.Disabled", "true")
    caplog.set_level(logging.WARNING)
    with LocalHost(port=0, close_database=False, banner=False) as running:
        command = [
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(SCHEMATHESIS_CONFIG),
            "run", f"{running.url}/api/openapi.json", "--checks", CHECKS,
            "--max-examples", os.environ.get("SCHEMATHESIS_EXAMPLES", "25"),
            "--seed", os.environ.get("SCHEMATHESIS_SEED", "16"),
            "--generation-database", "none", "--workers", "1", "--request-timeout", "30",
            "--no-color", "--report", "junit", "--report-dir", str(tmp_path),
        ]
        out = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                             timeout=900, env=dict(os.environ, NO_COLOR="1"))
    assert out.returncode == 0, out.stdout[-20000:] + out.stderr[-5000:]
    # A 503 from an unexpected exception would hide a bug: the routes log those with
    # their traceback, and there must be none.
    crashes = [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]
    assert not crashes, [r.getMessage() for r in crashes]
