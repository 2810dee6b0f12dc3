"""A clean virtual environment with only requirements.txt installed imports function_app with
no settings at all and lists its functions and bindings as the Python worker would (trigger
types, routes, methods, auth levels, queue names, connection setting names).

This is what `func azure functionapp publish --build remote` gives the app in Azure:
requirements.txt and nothing else (constraints.txt pins the same versions here). The
development tools (pgserver, pytest, hypothesis) must not be needed, and must not be there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Run inside the clean environment, isolated (-I: no PYTHON* variables, no user site, the
# current directory not on sys.path) and writing no bytecode into the work tree (-B). The
# Python worker puts the app's folder on sys.path and imports function_app.py, then asks the
# one FunctionRegister it finds there for its functions; so does this.
PROBE = r"""
import importlib.util, json, os, socket, sys
environment = sorted(os.environ)  # before anything is imported
sys.path.insert(0, sys.argv[1])

def refuse(*args, **kwargs):
    raise AssertionError("network touched at import: %r" % (args,))
socket.socket.connect = refuse
socket.create_connection = refuse

import azure.functions as func
import function_app

registers = [value for value in vars(function_app).values()
             if isinstance(value, func.FunctionRegister)]
assert len(registers) == 1, registers
functions = {}
for function in registers[0].get_functions():
    bindings = [json.loads(raw) for raw in function.get_raw_bindings()]
    functions[function.get_function_name()] = {
        "scriptFile": json.loads(function.get_function_json())["scriptFile"],
        "bindings": bindings,
    }

# Run-time code imported lazily (on first use: Entra tokens, the Service Bus sender,
# telemetry, the pool) must be importable too, or the first request in Azure would fail.
import infrastructure.db, infrastructure.pg_auth, infrastructure.queues.service_bus
import infrastructure.telemetry
import infrastructure.geo_db, infrastructure.geo_migrations, infrastructure.pgstac_import
import azure.identity, azure.servicebus, azure.monitor.opentelemetry, psycopg, psycopg_pool

print(json.dumps({
    "functions": functions,
    "absent": {name: importlib.util.find_spec(name) is None
               for name in ("pgserver", "pytest", "hypothesis")},
    "libpq": psycopg.pq.__impl__,
    "environment": environment,
}))
"""

HTTP_OUT = {"direction": "OUT", "type": "http", "name": "$return"}


def http(route: str, method: str, auth_level: str) -> dict:
    return {
        "scriptFile": "function_app.py",
        "bindings": [
            {"direction": "IN", "type": "httpTrigger", "name": "req", "methods": [method],
             "authLevel": auth_level, "route": route},
            HTTP_OUT,
        ],
    }


def service_bus(queue: str) -> dict:
    return {
        "scriptFile": "function_app.py",
        "bindings": [
            {"direction": "IN", "type": "serviceBusTrigger", "name": "msg",
             "connection": "ServiceBusConnection", "queueName": queue},
        ],
    }


EXPECTED_FUNCTIONS = {
    "submit": http("jobs/submit/{job_type}", "POST", "FUNCTION"),
    "status": http("jobs/status/{job_id}", "GET", "FUNCTION"),
    "list_jobs": http("jobs", "GET", "FUNCTION"),
    "jobs_summary": http("jobs/summary", "GET", "FUNCTION"),
    "job_tasks": http("jobs/{job_id}/tasks", "GET", "FUNCTION"),
    "openapi": http("openapi.json", "GET", "FUNCTION"),
    "cancel_job": http("jobs/{job_id}/cancel", "POST", "FUNCTION"),
    "rerun_job": http("jobs/{job_id}/rerun", "POST", "FUNCTION"),
    "purge_job": http("jobs/{job_id}", "DELETE", "ADMIN"),
    "cancel_jobs": http("jobs/cancel", "POST", "FUNCTION"),
    "rerun_jobs": http("jobs/rerun", "POST", "FUNCTION"),
    "purge_jobs": http("jobs/purge", "POST", "ADMIN"),
    "health": http("health", "GET", "ANONYMOUS"),
    "health_details": http("health/details", "GET", "FUNCTION"),
    "process_job_message": service_bus("geospatial-jobs"),
    "process_task_message": service_bus("geospatial-tasks"),
    "process_task_batch": {
        "scriptFile": "function_app.py",
        "bindings": [
            {"direction": "IN", "type": "serviceBusTrigger", "name": "msgs",
             "connection": "ServiceBusConnection", "queueName": "geospatial-tasks",
             "cardinality": "MANY"},
        ],
    },
    "sweep": {
        "scriptFile": "function_app.py",
        "bindings": [
            {"direction": "IN", "type": "timerTrigger", "name": "timer",
             "schedule": "0 */1 * * * *", "runOnStartup": False, "useMonitor": True},
        ],
    },
}


def _normalized(functions: dict) -> dict:
    """Auth levels compared case-insensitively (the host reads them so)."""
    for function in functions.values():
        for binding in function["bindings"]:
            if "authLevel" in binding:
                binding["authLevel"] = binding["authLevel"].upper()
    return functions


@pytest.fixture
def venv(tmp_path):
    """A new, empty virtual environment; removed afterwards (about 100 MB)."""
    path = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_clean_venv_with_requirements_only_imports_and_lists_functions(venv):
    # Given a new virtual environment with requirements.txt installed, and nothing else
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
         "-r", str(ROOT / "requirements.txt"), "-c", str(ROOT / "constraints.txt")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    # When function_app is imported there with an empty environment (PATH and HOME only)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    probe = subprocess.run(
        [str(python), "-I", "-B", "-c", PROBE, str(ROOT)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout.strip().splitlines()[-1])

    # Then no setting was there to help (Python may add LC_CTYPE itself, PEP 538)
    assert set(report["environment"]) <= {"PATH", "HOME", "LC_CTYPE"}

    # And the worker would index all six functions with these bindings
    assert _normalized(report["functions"]) == EXPECTED_FUNCTIONS

    # And requirements.txt is run-time only: the development tools are not installed
    assert report["absent"] == {"pgserver": True, "pytest": True, "hypothesis": True}

    # And psycopg brings its own libpq (psycopg[binary]): the host image's is not needed
    assert report["libpq"] in ("binary", "c")
