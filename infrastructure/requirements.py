"""What a job may declare it requires (jobs/base.py `requires`), checked at submit before
anything is stored: each check raises RequirementUnavailableError (a 503 naming the
requirement, the reason and what to install or set) when this deployment lacks it."""

from __future__ import annotations

from typing import Callable

from exceptions import RequirementUnavailableError


def postgis(job_type: str) -> None:
    """The geospatial database: PostGIS, the allowed schemas and the pgstac catalogue."""
    from .geo_db import geo_available

    status = geo_available()
    if not status.available:
        raise RequirementUnavailableError(
            f"Job '{job_type}' needs the geospatial database (PostGIS and the pgstac "
            f"catalogue), which is unavailable here ({status.database}): {status.reason}",
            "postgis", status.hint or "")


# name -> check(job_type)
REQUIREMENTS: dict[str, Callable[[str], None]] = {"postgis": postgis}
