"""job_id, task_id and stage reach every log record made while a message is processed,
whatever logger makes it; telemetry stays off without a connection string."""

import logging

from core.log_context import current_fields, log_context
from infrastructure.telemetry import configure_telemetry


def test_fields_reach_records_of_any_logger(caplog):
    caplog.set_level(logging.INFO)
    with log_context(job_id="j" * 64, stage=2):
        with log_context(task_id="t-1"):
            logging.getLogger("some.library").info("inside")
        logging.getLogger("another").info("outer")
    logging.getLogger("another").info("after")

    inside, outer, after = caplog.records
    assert (inside.job_id, inside.task_id, inside.stage) == ("j" * 64, "t-1", 2)
    assert outer.job_id == "j" * 64 and not hasattr(outer, "task_id")
    assert not hasattr(after, "job_id")
    assert current_fields() == {}


def test_explicit_extra_wins_over_context(caplog):
    caplog.set_level(logging.INFO)
    with log_context(job_id="from-context", stage=1):
        logging.getLogger("x").info("m", extra={"stage": 7})
        logging.getLogger("x").info("n", extra={"job_id": "explicit"})
    first, second = caplog.records
    assert first.stage == 7 and first.job_id == "from-context"
    assert second.job_id == "explicit" and second.stage == 1


def test_telemetry_is_inert_without_a_connection_string(monkeypatch):
    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
    assert configure_telemetry() is False
