"""Application Insights through azure-monitor-opentelemetry, configured only when
APPLICATIONINSIGHTS_CONNECTION_STRING is set (inert otherwise, and locally).

The Functions host drops logging's extra= fields; the OpenTelemetry log handler keeps a
record's attributes, so job_id, task_id and stage (core/log_context.py) arrive as custom
dimensions."""

from __future__ import annotations

import logging

from config import get_settings

logger = logging.getLogger(__name__)
_configured = False


def configure_telemetry() -> bool:
    """Returns whether telemetry was (or already is) configured."""
    global _configured
    if _configured:
        return True
    if not get_settings().applicationinsights_connection_string:
        return False
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor
    except ImportError:
        logger.warning("APPLICATIONINSIGHTS_CONNECTION_STRING is set but "
                       "azure-monitor-opentelemetry is not installed; no telemetry")
        return False
    # The connection string is read from the environment by the distro itself.
    configure_azure_monitor(logger_name="")
    _configured = True
    return True
