"""Health. GET /api/health is anonymous and says only up or down (200 / 503), for load
balancers and probes. GET /api/health/details needs a function key: database reachability,
the count of dead-lettered messages (app.dead_letters), the queue backend, the registered
job and task types, and whether the geospatial jobs can run (`geospatial`: available, or
why not and what to install or set)."""

from __future__ import annotations

import azure.functions as func

from config import get_settings

from core.api_models import HealthDetails, HealthResponse

from .http_utils import document
from .runtime import core_machine

bp = func.Blueprint()


def _database_reachable() -> bool:
    from infrastructure.db import get_database

    try:
        return get_database().ping()
    except Exception:  # unreachable at start-up (the pool cannot open): report, do not fail
        return False


def _geospatial() -> dict:
    from infrastructure.geo_db import geo_available

    try:
        status = geo_available().as_dict()
    except Exception as exc:  # a report, never a failed health check
        return {"available": False, "reason": f"the check failed: {exc}"}
    jobs = sorted(name for name, job in core_machine.jobs_registry.items()
                  if "postgis" in (getattr(job, "requires", ()) or ()))
    return {**status, "jobs": jobs}


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    up = _database_reachable()
    return document(200 if up else 503, HealthResponse, {"status": "up" if up else "down"})


@bp.route(route="health/details", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def health_details(req: func.HttpRequest) -> func.HttpResponse:
    up = _database_reachable()
    payload = {
        "status": "up" if up else "down",
        "database": "reachable" if up else "unreachable",
        "dead_letters": core_machine.state_manager.dead_letter_count() if up else None,
        "queue_backend": get_settings().effective_queue_backend,
        "job_types": sorted(core_machine.jobs_registry),
        "task_types": sorted(core_machine.handlers_registry),
        "geospatial": _geospatial(),
    }
    return document(200 if up else 503, HealthDetails, payload)
