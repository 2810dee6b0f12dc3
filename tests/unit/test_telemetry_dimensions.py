"""job_id, task_id and stage reach Application Insights as custom dimensions: the Azure
Monitor distro exports logging records through OpenTelemetry's LoggingHandler, which turns
a record's attributes into the exported log's attributes (customDimensions). Checked here
with the same handler and an in-memory exporter instead of the network."""

import logging
import warnings

from core.log_context import log_context


def test_log_context_fields_are_exported_as_attributes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK's logs API is marked experimental
        # The handler configure_azure_monitor itself installs.
        from opentelemetry.instrumentation.logging.handler import LoggingHandler
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import (
            InMemoryLogRecordExporter, SimpleLogRecordProcessor,
        )

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = LoggingHandler(logger_provider=provider)
    logger = logging.getLogger("engine.telemetry.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with log_context(job_id="j" * 64, task_id="t-1", stage=2, operation="run_task"):
            logger.info("task completed")
    finally:
        logger.removeHandler(handler)
        provider.shutdown()

    (exported,) = exporter.get_finished_logs()
    attributes = dict(exported.log_record.attributes)
    assert attributes["job_id"] == "j" * 64
    assert attributes["task_id"] == "t-1"
    assert attributes["stage"] == 2
    assert attributes["operation"] == "run_task"
