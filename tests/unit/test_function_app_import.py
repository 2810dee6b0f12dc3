"""Importing function_app needs no settings and touches no network, and lists the functions
and bindings the Python worker would index."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, socket
def refuse(*args, **kwargs):
    raise AssertionError("network touched at import: %r" % (args,))
socket.socket.connect = refuse
socket.create_connection = refuse
import function_app
functions = {}
for f in function_app.app.get_functions():
    trigger = f.get_bindings_dict()["bindings"][0]
    functions[f.get_function_name()] = {
        k: (v.value if hasattr(v, "value") else
            [m.value if hasattr(m, "value") else m for m in v] if isinstance(v, list) else v)
        for k, v in trigger.items() if k not in ("direction", "name")}
print(json.dumps(functions))
"""


def test_import_with_no_settings_and_no_network():
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    functions = json.loads(out.stdout.strip().splitlines()[-1])
    assert functions == {
        "submit": {"type": "httpTrigger", "methods": ["POST"], "authLevel": "function",
                   "route": "jobs/submit/{job_type}"},
        "status": {"type": "httpTrigger", "methods": ["GET"], "authLevel": "function",
                   "route": "jobs/status/{job_id}"},
        "list_jobs": {"type": "httpTrigger", "methods": ["GET"], "authLevel": "function",
                      "route": "jobs"},
        "jobs_summary": {"type": "httpTrigger", "methods": ["GET"], "authLevel": "function",
                         "route": "jobs/summary"},
        "job_tasks": {"type": "httpTrigger", "methods": ["GET"], "authLevel": "function",
                      "route": "jobs/{job_id}/tasks"},
        "openapi": {"type": "httpTrigger", "methods": ["GET"], "authLevel": "function",
                    "route": "openapi.json"},
        "cancel_job": {"type": "httpTrigger", "methods": ["POST"], "authLevel": "function",
                       "route": "jobs/{job_id}/cancel"},
        "rerun_job": {"type": "httpTrigger", "methods": ["POST"], "authLevel": "function",
                      "route": "jobs/{job_id}/rerun"},
        "purge_job": {"type": "httpTrigger", "methods": ["DELETE"], "authLevel": "admin",
                      "route": "jobs/{job_id}"},
        "cancel_jobs": {"type": "httpTrigger", "methods": ["POST"], "authLevel": "function",
                        "route": "jobs/cancel"},
        "rerun_jobs": {"type": "httpTrigger", "methods": ["POST"], "authLevel": "function",
                       "route": "jobs/rerun"},
        "purge_jobs": {"type": "httpTrigger", "methods": ["POST"], "authLevel": "admin",
                       "route": "jobs/purge"},
        "health": {"type": "httpTrigger", "methods": ["GET"], "authLevel": "anonymous",
                   "route": "health"},
        "health_details": {"type": "httpTrigger", "methods": ["GET"], "authLevel": "function",
                           "route": "health/details"},
        "process_job_message": {"type": "serviceBusTrigger", "queueName": "geospatial-jobs",
                                "connection": "ServiceBusConnection"},
        "process_task_message": {"type": "serviceBusTrigger", "queueName": "geospatial-tasks",
                                 "connection": "ServiceBusConnection"},
        "process_task_batch": {"type": "serviceBusTrigger", "queueName": "geospatial-tasks",
                               "connection": "ServiceBusConnection", "cardinality": "many"},
        "sweep": {"type": "timerTrigger", "schedule": "0 */1 * * * *", "runOnStartup": False,
                  "useMonitor": True},
    }


def test_no_route_under_the_reserved_admin_prefix():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    routes = [f.get("route", "") for f in json.loads(out.stdout.strip().splitlines()[-1]).values()]
    assert routes and not any(r.lower().startswith("admin") for r in routes)


def test_host_json_uses_service_bus_extension_5_keys():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    service_bus = host["extensions"]["serviceBus"]
    assert "messageHandlerOptions" not in service_bus
    assert set(service_bus) >= {"prefetchCount", "maxConcurrentCalls", "autoCompleteMessages",
                                "maxAutoLockRenewalDuration"}
