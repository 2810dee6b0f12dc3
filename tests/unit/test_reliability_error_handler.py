"""How a failure is classified (core/error_handler.classify), the retry backoff, and
CoreMachineErrorHandler.handle_operation: an error is logged once, where it is handled."""

from __future__ import annotations

import logging

import psycopg
import pytest
from azure.servicebus.exceptions import ServiceBusError

from core.error_handler import (
    CONTRACT, PERMANENT, TRANSIENT, UNKNOWN, CoreMachineErrorHandler, ErrorInfo, classify,
)
from core.log_context import log_context
from core.task_runner import retry_delay
from exceptions import ContractViolationError, TaskTimeoutError, WorkerLostError

LOGGER = "tests.reliability.error_handler"
IDS = {"job_id": "job-1", "task_id": "task-1", "stage": 2}


@pytest.mark.parametrize("exc, category", [
    (ValueError("v"), PERMANENT),
    (TypeError("t"), PERMANENT),
    (KeyError("k"), PERMANENT),
    (IndexError("i"), PERMANENT),
    (AttributeError("a"), PERMANENT),
    (psycopg.IntegrityError("duplicate key"), PERMANENT),
    (psycopg.errors.UniqueViolation("duplicate key"), PERMANENT),
    (psycopg.DataError("bad value"), PERMANENT),
    (psycopg.ProgrammingError("syntax"), PERMANENT),
    (OSError("disk"), TRANSIENT),
    (FileNotFoundError("gone"), PERMANENT),
    (TimeoutError("slow"), TRANSIENT),
    (ConnectionError("reset"), TRANSIENT),
    (ServiceBusError("bus down"), TRANSIENT),
    (psycopg.OperationalError("server closed the connection"), TRANSIENT),
    (psycopg.errors.SerializationFailure("retry me"), TRANSIENT),
    (WorkerLostError("lease lapsed"), TRANSIENT),
    (TaskTimeoutError("ran too long"), TRANSIENT),
    (ContractViolationError("returned a list"), CONTRACT),
    (RuntimeError("?"), UNKNOWN),
    (Exception("?"), UNKNOWN),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v)
def test_each_kind_of_failure_is_classified_as_the_design_says(exc, category):
    # Given an exception a handler may raise, When it is classified,
    info = classify(exc)
    # Then its category decides whether it is retried: transient and unknown ones are.
    assert info.error_category == category
    assert info.retryable is (category in (TRANSIENT, UNKNOWN))
    assert info.error_type == type(exc).__name__
    assert info.message == f"{type(exc).__name__}: {exc}"


def test_a_failed_tasks_result_holds_its_type_category_and_retryability():
    info = classify(psycopg.OperationalError("server closed the connection"))
    assert info.as_result() == {
        "error": "OperationalError: server closed the connection",
        "error_type": "OperationalError", "error_category": TRANSIENT, "retryable": True}


@pytest.mark.parametrize("retry, ceiling", [(0, 2.0), (1, 4.0), (2, 8.0), (3, 10.0),
                                            (10, 10.0)])
def test_backoff_doubles_from_the_base_up_to_the_cap_with_equal_jitter(retry, ceiling):
    # min(base * 2**retry, cap): half of it fixed, half random.
    assert retry_delay(retry, base=2.0, cap=10.0, rng=lambda: 0.0) == ceiling / 2
    assert retry_delay(retry, base=2.0, cap=10.0, rng=lambda: 1.0) == ceiling
    delays = {retry_delay(retry, base=2.0, cap=10.0) for _ in range(50)}
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(delays) > 1


def test_backoff_is_never_sooner_than_retry_after():
    assert retry_delay(0, base=2.0, cap=10.0, retry_after=30.0) == 30.0
    assert retry_delay(3, base=2.0, cap=10.0, retry_after=0.5, rng=lambda: 0.0) == 5.0


# -- CoreMachineErrorHandler ------------------------------------------------------------
def test_by_default_the_error_propagates_and_is_not_logged_here(caplog):
    caplog.set_level(logging.DEBUG)
    seen = []
    # Given a block that fails inside handle_operation with its defaults,
    with pytest.raises(ValueError, match="bad input"):
        with CoreMachineErrorHandler.handle_operation(
            logging.getLogger(LOGGER), "load", on_error=lambda e, i: seen.append(i), **IDS,
        ):
            raise ValueError("bad input")
    # Then the caller gets the very exception, on_error still heard of it, and nothing was
    # logged: whoever handles it logs it, once.
    assert [i.error_category for i in seen] == [PERMANENT]
    assert caplog.records == []


def test_a_handled_error_goes_to_on_error_and_is_logged_once_with_its_ids(caplog):
    caplog.set_level(logging.DEBUG)
    calls: list[tuple[Exception, ErrorInfo]] = []
    error = OSError("share unreachable")
    # Given raise_on_error=False and an on_error callback,
    with CoreMachineErrorHandler.handle_operation(
        logging.getLogger(LOGGER), "copy_files", on_error=lambda e, i: calls.append((e, i)),
        raise_on_error=False, **IDS,
    ):
        raise error
    # Then on_error got the exception and its classification,
    assert len(calls) == 1 and calls[0][0] is error
    assert calls[0][1] == ErrorInfo("OSError", TRANSIENT, True, "OSError: share unreachable")
    # And the error was logged exactly once, with its traceback and every id.
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.name == LOGGER
    assert record.exc_info is not None and record.exc_info[1] is error
    assert (record.job_id, record.task_id, record.stage, record.operation) == (
        "job-1", "task-1", 2, "copy_files")
    assert (record.error_type, record.error_category) == ("OSError", TRANSIENT)
    assert "copy_files failed: OSError: share unreachable" in record.getMessage()


def test_without_on_error_a_handled_error_is_still_logged_once(caplog):
    caplog.set_level(logging.DEBUG)
    with CoreMachineErrorHandler.handle_operation(
        logging.getLogger(LOGGER), "tidy", raise_on_error=False,
    ):
        raise ContractViolationError("returned a list")
    [record] = caplog.records
    assert record.exc_info is not None and record.error_category == CONTRACT


def test_log_lines_inside_the_block_carry_the_ids_and_the_operation(caplog):
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger(LOGGER)
    # Given an outer context (as a queue trigger sets) and a block with its own ids,
    with log_context(message_id="m-1"):
        with CoreMachineErrorHandler.handle_operation(log, "open_stage", **IDS):
            log.info("inside")
        log.info("after")
    inside, after = caplog.records
    # Then lines inside carry every field, and the block's fields end with it.
    assert (inside.job_id, inside.task_id, inside.stage, inside.operation, inside.message_id
            ) == ("job-1", "task-1", 2, "open_stage", "m-1")
    assert after.message_id == "m-1"
    assert not any(hasattr(after, f) for f in ("job_id", "task_id", "stage", "operation"))


def test_a_successful_block_calls_nothing_and_logs_nothing(caplog):
    caplog.set_level(logging.DEBUG)
    with CoreMachineErrorHandler.handle_operation(
        logging.getLogger(LOGGER), "noop", on_error=lambda e, i: pytest.fail("called"),
        raise_on_error=False,
    ):
        pass
    assert caplog.records == []


def test_base_exceptions_such_as_keyboard_interrupt_are_never_swallowed(caplog):
    with pytest.raises(KeyboardInterrupt):
        with CoreMachineErrorHandler.handle_operation(
            logging.getLogger(LOGGER), "stop", raise_on_error=False,
        ):
            raise KeyboardInterrupt
    assert caplog.records == []
