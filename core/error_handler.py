"""Failure classification and CoreMachineErrorHandler.

classify(exc) sorts an exception as the design documents do:
- permanent: retrying cannot help (PermanentError, bad values, bad types, missing keys,
  missing files, HTTP 400/401/403/404/409/412/413/416, SQLSTATE classes 22, 23, 42);
- transient: the world may be different next time (TransientError, I/O, time-outs, lost
  connections, HTTP 408/429/5xx with their Retry-After, azure.identity failing to get a
  token, Service Bus errors, SQLSTATE classes 08, 40, 53, 57, psycopg's OperationalError);
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
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Iterator, Optional

import psycopg
from azure.core.exceptions import (
    ClientAuthenticationError, HttpResponseError, ServiceRequestError, ServiceResponseError,
)
from azure.identity import CredentialUnavailableError
from azure.servicebus.exceptions import ServiceBusError

from core.log_context import log_context
from exceptions import (
    ContractViolationError, PermanentError, TransientError, WorkerLostError,
)

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
    # Seconds a service asked to wait before trying again (Retry-After), if it did.
    retry_after: Optional[float] = None

    def as_result(self) -> dict[str, Any]:
        """What a failed task stores as its result."""
        result = {"error": self.message, "error_type": self.error_type,
                  "error_category": self.error_category, "retryable": self.retryable}
        if self.retry_after is not None:
            result["retry_after"] = self.retry_after
        return result


# azure.core HttpResponseError by status: what a retry cannot change, and what it can.
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 409, 412, 413, 416})
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# psycopg errors by SQLSTATE class: connection, transaction rollback (serialization,
# deadlock), insufficient resources, operator intervention; data, integrity, syntax.
TRANSIENT_SQLSTATE = frozenset({"08", "40", "53", "57"})
PERMANENT_SQLSTATE = frozenset({"22", "23", "42"})
FILE_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


def _raised_in_azure_identity(exc: BaseException) -> bool:
    if isinstance(exc, CredentialUnavailableError):
        return True
    tb = exc.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith("azure.identity"):
            return True
        tb = tb.tb_next
    return getattr(exc, "response", None) is None


def _status(exc: HttpResponseError) -> Optional[int]:
    status = getattr(exc, "status_code", None)
    if status is None and getattr(exc, "response", None) is not None:
        status = getattr(exc.response, "status_code", None)
    return status


def retry_after_seconds(exc: BaseException) -> Optional[float]:
    """A response's Retry-After (retry-after-ms, x-ms-retry-after-ms, or Retry-After in
    seconds or as an HTTP date), in seconds; None when it says nothing."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    try:
        for name in ("retry-after-ms", "x-ms-retry-after-ms"):
            value = headers.get(name)
            if value is not None:
                return max(float(value) / 1000, 0.0)
        value = headers.get("Retry-After") or headers.get("retry-after")
    except (TypeError, ValueError, AttributeError):
        return None
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)


def _category(exc: BaseException) -> tuple[str, Optional[float]]:
    if isinstance(exc, ContractViolationError):
        return CONTRACT, None
    if isinstance(exc, PermanentError):
        return PERMANENT, None
    if isinstance(exc, TransientError):
        return TRANSIENT, exc.retry_after
    # The identity endpoint blips at cold start; a service's own 401/403 does not pass.
    if isinstance(exc, ClientAuthenticationError) and _raised_in_azure_identity(exc):
        return TRANSIENT, None
    if isinstance(exc, HttpResponseError):
        status = _status(exc)
        if status is None:
            return UNKNOWN, None
        if status in TRANSIENT_STATUSES or status >= 500:
            return TRANSIENT, retry_after_seconds(exc)
        if status in PERMANENT_STATUSES or 400 <= status < 500:
            return PERMANENT, None
        return UNKNOWN, None
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return TRANSIENT, None
    if isinstance(exc, FILE_ERRORS):
        return PERMANENT, None
    sqlstate = getattr(exc, "sqlstate", None) if isinstance(exc, psycopg.Error) else None
    if sqlstate:
        if sqlstate[:2] in TRANSIENT_SQLSTATE:
            return TRANSIENT, None
        if sqlstate[:2] in PERMANENT_SQLSTATE:
            return PERMANENT, None
    if isinstance(exc, TRANSIENT_EXCEPTIONS):
        # Checked first: psycopg's OperationalError must not count as a permanent Error.
        return TRANSIENT, None
    if isinstance(exc, PERMANENT_EXCEPTIONS):
        return PERMANENT, None
    return UNKNOWN, None


def classify(exc: BaseException) -> ErrorInfo:
    category, retry_after = _category(exc)
    return ErrorInfo(
        error_type=type(exc).__name__,
        error_category=category,
        retryable=category in (TRANSIENT, UNKNOWN),
        message=f"{type(exc).__name__}: {exc}",
        retry_after=retry_after,
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
