"""GET /api/health: database reachability and what is registered; 503 when the database
cannot be reached."""

from __future__ import annotations

import azure.functions as func

from config import get_settings

from .http_utils import json_response
from .runtime import core_machine

bp = func.Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    from infrastructure.db import get_database

    try:
        reachable = get_database().ping()
    except Exception:  # unreachable at start-up (cannot open the pool): report, do not fail
        reachable = False
    payload = {
        "status": "healthy" if reachable else "unhealthy",
        "database": "reachable" if reachable else "unreachable",
        "queue_backend": get_settings().effective_queue_backend,
        "job_types": sorted(core_machine.jobs_registry),
        "task_types": sorted(core_machine.handlers_registry),
    }
    return json_response(200 if reachable else 503, payload)
