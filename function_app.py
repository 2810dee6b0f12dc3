"""The Azure Functions app (Python v2 programming model).

Importing it builds CoreMachine from the explicit registries (ALL_JOBS, ALL_HANDLERS),
which are checked at import, and registers the triggers. It touches no network and needs
no settings: the database and queues open on first use.
"""

import logging

import azure.functions as func

from infrastructure.telemetry import configure_telemetry
from jobs import ALL_JOBS
from services import ALL_HANDLERS
from triggers import health, http_control, http_jobs, http_queries, queue_triggers, sweeper

configure_telemetry()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(http_jobs.bp)
app.register_functions(http_queries.bp)
app.register_functions(http_control.bp)
app.register_functions(health.bp)
app.register_functions(queue_triggers.bp)
app.register_functions(sweeper.bp)

logging.getLogger(__name__).info(
    "registered jobs: %s; task types: %s", sorted(ALL_JOBS), sorted(ALL_HANDLERS)
)
