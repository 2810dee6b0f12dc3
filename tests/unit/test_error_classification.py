"""Failures of the libraries the jobs use, classified: azure.core HTTP errors by status
(with Retry-After), azure.identity token failures, file errors, psycopg errors by
SQLSTATE class, and the project's own TransientError and PermanentError."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import psycopg
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError, HttpResponseError, ResourceExistsError, ResourceNotFoundError,
    ServiceRequestError, ServiceResponseError,
)
from azure.identity import CredentialUnavailableError

from core.error_handler import PERMANENT, TRANSIENT, UNKNOWN, classify
from exceptions import PermanentError, TransientError


def _raise_from_identity_module() -> BaseException:
    """A ClientAuthenticationError carrying a response, raised by code of a module named
    azure.identity.* (as a credential's token request raises it)."""
    namespace = {"__name__": "azure.identity._credentials.test_double",
                 "ClientAuthenticationError": ClientAuthenticationError,
                 "response": Response(400)}
    exec("def fail():\n    raise ClientAuthenticationError(message='AADSTS', "
         "response=response)\n", namespace)
    try:
        namespace["fail"]()
    except ClientAuthenticationError as exc:
        return exc
    raise AssertionError("did not raise")


class Response:
    """What azure.core exceptions read from an HTTP response."""

    def __init__(self, status: int, headers: dict | None = None):
        self.status_code = status
        self.reason = "reason"
        self.headers = headers or {}

    def text(self) -> str:
        return ""


def http_error(status: int, cls=HttpResponseError, **headers):
    return cls(message=f"status {status}", response=Response(status, headers))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 412, 413, 416, 422])
def test_client_errors_are_permanent(status):
    assert classify(http_error(status)).error_category == PERMANENT


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 507])
def test_throttling_and_server_errors_are_transient(status):
    info = classify(http_error(status))
    assert info.error_category == TRANSIENT and info.retryable
    assert info.retry_after is None


def test_azure_subclasses_go_by_their_status():
    assert classify(http_error(404, ResourceNotFoundError)).error_category == PERMANENT
    assert classify(http_error(409, ResourceExistsError)).error_category == PERMANENT
    assert classify(HttpResponseError(message="no response")).error_category == UNKNOWN


def test_retry_after_is_honoured_in_seconds_milliseconds_and_dates():
    assert classify(http_error(429, **{"Retry-After": "12"})).retry_after == 12.0
    assert classify(http_error(503, **{"retry-after-ms": "1500"})).retry_after == 1.5
    assert classify(http_error(503, **{"x-ms-retry-after-ms": "250"})).retry_after == 0.25
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=60), usegmt=True)
    assert 50 < classify(http_error(503, **{"Retry-After": when})).retry_after <= 60
    past = format_datetime(datetime.now(timezone.utc) - timedelta(seconds=60), usegmt=True)
    assert classify(http_error(503, **{"Retry-After": past})).retry_after == 0.0
    info = classify(http_error(429, **{"Retry-After": "7"}))
    assert info.as_result()["retry_after"] == 7.0


def test_connection_failures_are_transient():
    for exc in (ServiceRequestError("dns"), ServiceResponseError("reset mid-body"),
                ConnectionResetError("reset by peer")):
        assert classify(exc).error_category == TRANSIENT


def test_a_credential_failing_to_get_a_token_is_transient():
    assert classify(CredentialUnavailableError("no identity endpoint")).error_category == (
        TRANSIENT)
    # raised while a credential asks its endpoint for a token, which returned an error
    # response: still the credential's failure, not the service's
    try:
        raise ClientAuthenticationError(message="endpoint says no",
                                        response=Response(400))
    except ClientAuthenticationError as exc:
        assert classify(exc).error_category == PERMANENT
    raised_in_identity = _raise_from_identity_module()
    assert classify(raised_in_identity).error_category == TRANSIENT
    # and a ClientAuthenticationError with no service response
    assert classify(ClientAuthenticationError(message="token")).error_category == TRANSIENT


@pytest.mark.parametrize("status", [401, 403])
def test_a_services_own_401_or_403_is_permanent(status):
    exc = http_error(status, ClientAuthenticationError)
    assert classify(exc).error_category == PERMANENT


@pytest.mark.parametrize("exc", [FileNotFoundError("gone"), IsADirectoryError("dir"),
                                 NotADirectoryError("not dir")])
def test_missing_files_are_permanent(exc):
    assert classify(exc).error_category == PERMANENT


@pytest.mark.parametrize("exc, category", [
    (psycopg.errors.SerializationFailure("40001"), TRANSIENT),
    (psycopg.errors.DeadlockDetected("40P01"), TRANSIENT),
    (psycopg.errors.TooManyConnections("53300"), TRANSIENT),
    (psycopg.errors.AdminShutdown("57P01"), TRANSIENT),
    (psycopg.errors.ConnectionFailure("08006"), TRANSIENT),
    (psycopg.errors.UndefinedTable("42P01"), PERMANENT),
    (psycopg.errors.UniqueViolation("23505"), PERMANENT),
    (psycopg.errors.InvalidTextRepresentation("22P02"), PERMANENT),
    (psycopg.OperationalError("no sqlstate"), TRANSIENT),
    (psycopg.DataError("no sqlstate"), PERMANENT),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v)
def test_psycopg_errors_go_by_sqlstate_class(exc, category):
    assert classify(exc).error_category == category


def test_handlers_say_which_it_is():
    assert classify(PermanentError("corrupt file")).error_category == PERMANENT
    # even an error type that would otherwise be transient
    assert classify(TransientError("busy")).error_category == TRANSIENT
    info = classify(TransientError("throttled", retry_after=20))
    assert info.retryable and info.retry_after == 20
