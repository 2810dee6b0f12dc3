"""pydantic's ValidationError as our JobValidationError: one message naming the full path
of the offending parameter (filter.extensions[2], items[1].name) and what is allowed.

The same translation serves compiled dict schemas and job-declared models, so both give
the same messages. Unknown names come first (all of one object, listing the names that
object allows); otherwise the first error in field order, like the older validator.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime
from typing import Any, Iterator

from pydantic import BaseModel, ValidationError

from exceptions import JobValidationError
from jobs.parameter_types import (DATETIME_EXAMPLE, constraint_at, fields_by_key, format_datetime,
                                  is_model, json_type, literal_values, type_at)

_EXPECTED = {
    **dict.fromkeys(("int_type", "int_parsing", "int_from_float"), "an integer"),
    **dict.fromkeys(("float_type", "float_parsing"), "a number"),
    **dict.fromkeys(("string_type", "string_unicode"), "a string"),
    **dict.fromkeys(("bool_type", "bool_parsing"), "a boolean"),
    **dict.fromkeys(("list_type", "tuple_type"), "a list"),
    **dict.fromkeys(("model_type", "dict_type", "model_attributes_type"), "an object"),
    **dict.fromkeys(("iso_datetime", "datetime_type", "datetime_parsing",
                     "datetime_from_date_parsing", "datetime_object_invalid"),
                    f"an ISO 8601 date-time, e.g. {DATETIME_EXAMPLE}"),
}
_BOUNDS = {"greater_than_equal": ("ge", ">="), "greater_than": ("gt", ">"),
           "less_than_equal": ("le", "<="), "less_than": ("lt", "<")}


def format_path(loc: tuple[Any, ...]) -> str:
    """('filter', 'extensions', 2) -> 'filter.extensions[2]'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _shown(value: Any) -> str:
    return format_datetime(value) if isinstance(value, datetime) else str(value)


def _rule(error: dict[str, Any], model: type[BaseModel]) -> str:
    kind, ctx, given = error["type"], error.get("ctx") or {}, error.get("input")
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}, got {json_type(given)} ({given!r})"
    if kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        bound = constraint_at(model, tuple(error["loc"]), key)
        bound = ctx.get(key) if bound is None else bound
        return f"must be {sign} {_shown(bound)}, got {_shown(given)}"
    if kind == "missing":
        return "is required"
    if kind == "finite_number":
        return "must be a finite number"
    if kind in ("too_short", "too_long"):
        limit = ctx.get("min_length", ctx.get("max_length"))
        least = "least" if kind == "too_short" else "most"
        return f"must have at {least} {limit} item(s), got {ctx.get('actual_length')}"
    if kind in ("string_too_short", "string_too_long"):
        limit = ctx.get("min_length", ctx.get("max_length"))
        least = "least" if kind == "string_too_short" else "most"
        return (f"must be at {least} {limit} character(s) long, got "
                f"{len(given) if isinstance(given, str) else given!r}")
    if kind == "string_pattern_mismatch":
        return f"must match the pattern {ctx.get('pattern')}, got {given!r}"
    if kind == "choices":
        return f"must be one of {list(ctx['choices'])}, got {given!r}"
    if kind == "literal_error":
        values = literal_values(type_at(model, tuple(error["loc"])))
        allowed = list(values) if values is not None else ctx.get("expected")
        return f"must be one of {allowed}, got {given!r}"
    message = error.get("msg", "is invalid")
    return f"is invalid: {message}"


def _unknown(model: type[BaseModel], extras: list[dict[str, Any]]) -> JobValidationError:
    parent = tuple(extras[0]["loc"][:-1])
    names = sorted(str(e["loc"][-1]) for e in extras if tuple(e["loc"][:-1]) == parent)
    paths = [format_path(parent + (name,)) for name in names]
    owner = type_at(model, parent) if parent else model
    allowed = ", ".join(sorted(fields_by_key(owner))) if is_model(owner) else ""
    where = f" in '{format_path(parent)}'" if parent else ""
    return JobValidationError(
        f"Unknown parameter(s) {', '.join(repr(p) for p in paths)}. "
        f"Allowed parameters{where}: {allowed or 'none'}", paths[0])


def translate(model: type[BaseModel], exc: ValidationError) -> JobValidationError:
    """The JobValidationError for a model's ValidationError; .parameter is the full path."""
    errors = exc.errors(include_url=False)
    extras = [e for e in errors if e["type"] == "extra_forbidden"]
    if extras:
        return _unknown(model, extras)
    error = errors[0]
    loc = tuple(error["loc"])
    if not loc:  # a model-wide rule (a model_validator), not one parameter's
        return JobValidationError(f"Parameters are invalid: {error.get('msg')}", None)
    path = format_path(loc)
    return JobValidationError(f"Parameter '{path}' {_rule(error, model)}", path)


@contextmanager
def named_pattern_error(params: Any, rules: dict[str, str]) -> Iterator[None]:
    """Within it, a pattern error of a parameter in rules is raised again with the rule
    in words ("must be 3 to 63 characters: ...") instead of the regular expression."""
    try:
        yield
    except JobValidationError as exc:
        if exc.parameter in rules and "pattern" in str(exc):
            value = params.get(exc.parameter) if isinstance(params, dict) else None
            raise JobValidationError(
                f"Parameter '{exc.parameter}' must be {rules[exc.parameter]}, got "
                f"{value!r}", exc.parameter) from None
        raise
