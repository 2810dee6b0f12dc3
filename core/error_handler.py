"""Failure classification and CoreMachineErrorHandler.

classify(exc) sorts an exception as the design documents do:
- permanent: retrying cannot help (bad values, bad types, missing keys, database integrity
  and data errors);
- transient: the world may be different next time (I/O, time-outs, lost connections,
  Service Bus errors, psycopg's OperationalError);
- contract: a ContractViolationError, a programming error: never retried;
- unknown: anything else, retried like a transient failure.

CoreMachineErrorHandler.handle_operation is the design documents' context manager, with
their defect fixed: an error is logged once, where it is handled. If the caller handles it
(on_error, raise_on_error=False), it is logged there with full ids and its traceback; if it
propagates, this logs nothing and whoever handles it logs it. Nothing is swallowed unless
the caller says so.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import psycopg
from azure.servicebus.exceptions import ServiceBusError

from core.log_context import log_context
from exceptions import ContractViolationError, WorkerLostError

PERMANENT = "permanent"
TRANSIENT = "transient"
CONTRACT = "contract"
UNKNOWN = "unknown"

PERMANENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    ValueError, TypeError, KeyError, IndexError, AttributeError,
    psycopg.IntegrityError, psycopg.DataError, psycopg.ProgrammingError,
)
TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, ConnectionError, ServiceBusError, psycopg.OperationalError,
    WorkerLostError,
)


@dataclass(frozen=True)
class ErrorInfo:
    error_type: str
    error_category: str
    retryable: bool
    message: str

    def as_result(self) -> dict[str, Any]:
        """What a failed task stores as its result."""
        return {"error": self.message, "error_type": self.error_type,
                "error_category": self.error_category, "retryable": self.retryable}


def classify(exc: BaseException) -> ErrorInfo:
    if isinstance(exc, ContractViolationError):
        category = CONTRACT
    elif isinstance(exc, TRANSIENT_EXCEPTIONS):
        # Checked first: psycopg's OperationalError must not count as a permanent Error.
        category = TRANSIENT
    elif isinstance(exc, PERMANENT_EXCEPTIONS):
        category = PERMANENT
    else:
        category = UNKNOWN
    return ErrorInfo(
        error_type=type(exc).__name__,
        error_category=category,
        retryable=category in (TRANSIENT, UNKNOWN),
        message=f"{type(exc).__name__}: {exc}",
    )


class CoreMachineErrorHandler:
    @staticmethod
    @contextmanager
    def handle_operation(
        logger: logging.Logger,
        operation: str,
        job_id: Optional[str] = None,
        task_id: Optional[str] = None,
        stage: Optional[int] = None,
        on_error: Optional[Callable[[Exception, ErrorInfo], None]] = None,
        raise_on_error: bool = True,
    ) -> Iterator[None]:
        """Run the block with the ids in every log line. On an exception: on_error(exc,
        info) is called; then the exception propagates unless raise_on_error is False, in
        which case it has been handled: it is logged here, once, with its traceback."""
        with log_context(job_id=job_id, task_id=task_id, stage=stage, operation=operation):
            try:
                yield
            except Exception as exc:
                info = classify(exc)
                if on_error is not None:
                    on_error(exc, info)
                if raise_on_error:
                    raise
                logger.error(
                    "%s failed: %s", operation, info.message, exc_info=True,
                    extra={"error_type": info.error_type,
                           "error_category": info.error_category},
                )
