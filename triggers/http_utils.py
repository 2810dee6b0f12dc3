"""Reading JSON request bodies strictly, and writing JSON responses.

A body must be something PostgreSQL's jsonb can store: strict UTF-8, no NaN or Infinity, no
lone surrogates, no NUL characters, not nested absurdly deep. Anything else is a 400 (or 413
for size, 415 for a content type other than JSON) that says what was wrong.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Optional

import azure.functions as func
from pydantic import ValidationError

from jobs.validation import json_type

MAX_DEPTH = 32
logger = logging.getLogger(__name__)


class BadRequest(Exception):
    def __init__(self, status: int, error: str, **details: Any):
        super().__init__(error)
        self.status = status
        self.error = error
        self.details = details


def json_response(status: int, payload: dict[str, Any]) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(payload, default=str), status_code=status, mimetype="application/json",
        charset="utf-8",
    )


def document(status: int, model: Any, payload: dict[str, Any]) -> func.HttpResponse:
    """A response document checked against its model (core/api_models.py), which is what
    GET /api/openapi.json promises, and sent as it is (validating alone costs half of
    validating and dumping again: 4 ms for a page of 500 jobs). A payload the model
    refuses is a bug: logged with its traceback, and still sent (never a 500, and the
    work the request did is not hidden)."""
    try:
        model.model_validate(payload)
    except ValidationError:
        logger.exception("response does not match %s", model.__name__)
    return json_response(status, payload)


def error_response(status: int, error: str, **details: Any) -> func.HttpResponse:
    return json_response(status, {"error": error, **details})


def _reject_constant(name: str) -> Any:
    raise BadRequest(400, f"Invalid JSON: {name} is not allowed; use a finite number")


def _check_value(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BadRequest(400, f"JSON is nested deeper than {MAX_DEPTH} levels (at {path})")
    if isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, f"{path}.{key}" if path else key, is_key=True)
            _check_value(item, f"{path}.{key}" if path else key, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_value(item, f"{path}[{index}]", depth + 1)


def _check_text(text: str, path: str, is_key: bool = False) -> None:
    what = "key" if is_key else "value"
    where = path or "body"
    if "\x00" in text:
        raise BadRequest(400, f"Invalid JSON {what} at '{where}': NUL characters (\\u0000) "
                              "are not allowed")
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        raise BadRequest(400, f"Invalid JSON {what} at '{where}': lone UTF-16 surrogates "
                              "are not allowed")


def read_json_object(req: func.HttpRequest, max_bytes: int) -> dict[str, Any]:
    """The request's JSON object; an empty body is {}. Raises BadRequest."""
    body = req.get_body() or b""
    if len(body) > max_bytes:
        raise BadRequest(413, f"Request body is {len(body)} bytes; the limit is {max_bytes}",
                         limit_bytes=max_bytes)
    if not body.strip():
        return {}
    content_type: Optional[str] = req.headers.get("content-type")
    if content_type and content_type.split(";")[0].strip().lower() not in (
        "application/json", "text/json"
    ):
        raise BadRequest(415, f"Content-Type must be application/json, got '{content_type}'")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(400, f"Body is not valid UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except BadRequest:
        raise
    except RecursionError:
        raise BadRequest(400, f"JSON is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise BadRequest(400, f"Body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest(400, "Body must be a JSON object of parameters, e.g. "
                         "{\"name\": value}, not " + json_type(value))
    _check_value(value, "", 1)
    return value
