"""The building blocks of job parameters, shared by dict schemas (compiled by
jobs/schema_compiler.py) and by jobs that declare a pydantic model as parameters_schema.

A model gives the same validated values, ids and error messages as the equivalent dict
schema when it is written with these blocks:

    class Params(ParametersModel):                 # strict, unknown names rejected
        count: StrictInt = Field(3, ge=1, le=10)       # {"type": "int", "min": 1, "max": 10,
                                                       #  "default": 3}
        ratio: StrictFloat = 0.5                       # {"type": "float", "default": 0.5}
        name: StrictStr                                # {"type": "str", "required": True}
        mode: Annotated[StrictStr, Choices("fast", "slow")] = "fast"   # "choices"
        code: Annotated[StrictStr, FullMatch(r"[a-z]+")] = "a"         # "pattern" (full match)
        start: UtcDateTime | MISSING = MISSING         # {"type": "datetime"}: optional,
                                                       # absent means absent
        crs: StrictStr | None = None                   # "nullable": True, "default": None
        tags: list[StrictStr] = Field([], max_length=5)  # {"type": "list", "items": ...}

MISSING (pydantic's sentinel) is how a model says "optional, and when absent it is left out
of the validated parameters" (a dict rule with neither "required" nor "default"). A field
whose annotation admits None is nullable: an explicit null is kept as a value. For any
other field an explicit null means "not given" (the default applies; a required field is
reported as required).

Write a model's defaults in their validated form (0.0, not 0, for a float; pydantic does not
validate defaults unless told to, dict schemas do), date-times as UtcDateTime (a plain
datetime field refuses strings in strict mode) with aware bounds (parse_datetime(...)).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import MISSING, BaseModel, BeforeValidator, ConfigDict, PlainSerializer
from pydantic_core import PydanticCustomError, core_schema

__all__ = ["MISSING", "Choices", "FullMatch", "ParametersModel", "UtcDateTime", "json_type",
           "parse_datetime", "format_datetime"]

DATETIME_EXAMPLE = "2026-01-31T12:00:00Z"


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class ParametersModel(BaseModel):
    """The base of every parameters model: strict types (no "5" -> 5, no true -> 1; an int
    is accepted for a float and becomes a float), unknown names rejected, no NaN or
    Infinity, patterns in Python's re syntax."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False,
                              regex_engine="python-re")


# --- date-times -----------------------------------------------------------------------

def parse_datetime(value: Any) -> datetime:
    """An ISO 8601 string (or a datetime) as an aware datetime in UTC; no zone means UTC.
    Raises ValueError for anything else."""
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)  # ValueError when not ISO 8601
    elif isinstance(value, datetime):
        parsed = value
    else:
        raise ValueError(f"not an ISO 8601 date-time: {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is past the last UTC datetime
        raise ValueError(f"out of range once in UTC: {value!r}") from None


def format_datetime(value: datetime) -> str:
    """The stored form: ISO 8601 in UTC with a Z, e.g. 2026-01-31T12:00:00Z."""
    return parse_datetime(value).isoformat().replace("+00:00", "Z")


def _to_utc(value: Any) -> datetime:
    try:
        return parse_datetime(value)
    except ValueError:
        raise PydanticCustomError(
            "iso_datetime", "Input should be an ISO 8601 date-time, e.g. {example}",
            {"example": DATETIME_EXAMPLE}) from None


# An ISO 8601 date-time string in, an aware UTC datetime inside (bounds compare as aware
# values), an ISO 8601 string in UTC out: "2026-01-01T02:00:00+02:00" and
# "2026-01-01T00:00:00" both give "2026-01-01T00:00:00Z".
UtcDateTime = Annotated[datetime, BeforeValidator(_to_utc),
                        PlainSerializer(format_datetime, return_type=str)]


# --- markers ------------------------------------------------------------------------

class Choices:
    """Annotated marker: the value (already of its strict type) must be one of these."""

    def __init__(self, *values: Any):
        self.values = list(values)

    def __repr__(self) -> str:
        return f"Choices({', '.join(map(repr, self.values))})"

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        allowed = self.values

        def check(value: Any) -> Any:
            if value not in allowed:
                raise PydanticCustomError("choices", "Input should be one of {choices}",
                                          {"choices": allowed})
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        described = handler(schema)
        described["enum"] = list(self.values)
        return described


class FullMatch:
    """Annotated marker: the string must match the pattern as a whole (re.fullmatch; a
    pydantic Field(pattern=...) only searches)."""

    def __init__(self, pattern: str):
        self.pattern = pattern
        self.compiled = re.compile(pattern)

    def __repr__(self) -> str:
        return f"FullMatch({self.pattern!r})"

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        compiled, pattern = self.compiled, self.pattern

        def check(value: Any) -> Any:
            if isinstance(value, str) and not compiled.fullmatch(value):
                raise PydanticCustomError("string_pattern_mismatch",
                                          "String should match pattern '{pattern}'",
                                          {"pattern": pattern})
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        described = handler(schema)
        described["pattern"] = f"^(?:{self.pattern})$"
        return described


# --- reading annotations ------------------------------------------------------------------

def _strip(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def union_members(annotation: Any) -> list[Any]:
    annotation = _strip(annotation)
    if get_origin(annotation) in (Union, UnionType):
        members: list[Any] = []
        for member in get_args(annotation):
            members.extend(union_members(member))
        return members
    return [annotation]


def admits_none(annotation: Any) -> bool:
    """Whether null is a value of this annotation (a nullable field)."""
    return any(m is NoneType or m is None or m is Any for m in union_members(annotation))


def core_type(annotation: Any) -> Any:
    """The annotation without Annotated, None and MISSING around it."""
    members = [m for m in union_members(annotation)
               if m is not NoneType and m is not None and m is not MISSING]
    return members[0] if len(members) == 1 else annotation


def is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def fields_by_key(model: type[BaseModel]) -> dict[str, Any]:
    """A model's fields by the name a request uses (the alias when there is one)."""
    return {field.alias or name: field for name, field in model.model_fields.items()}


def type_at(model: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    """The annotation at an error location (field names and list indices), or None."""
    annotation: Any = model
    for part in loc:
        annotation = core_type(annotation)
        if isinstance(part, str) and is_model(annotation):
            field = fields_by_key(annotation).get(part)
            if field is None:
                return None
            annotation = field.annotation
        elif isinstance(part, int) and get_origin(annotation) is list:
            annotation = (get_args(annotation) or (Any,))[0]
        else:
            return None
    return core_type(annotation)


def _metadata(annotation: Any) -> list[Any]:
    """The Annotated metadata of an annotation and of its union members, Field(...)
    objects opened into their constraints (annotated_types Ge, Le, ...)."""
    found: list[Any] = []
    members = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    for member in members or (annotation,):
        while get_origin(member) is Annotated:
            found.extend(get_args(member)[1:])
            member = get_args(member)[0]
        if members and get_origin(member) in (Union, UnionType):
            found.extend(_metadata(member))
    opened: list[Any] = []
    for item in found:
        opened.extend(getattr(item, "metadata", None) or [item])
    return opened


def constraint_at(model: type[BaseModel], loc: tuple[Any, ...], key: str) -> Any:
    """The declared constraint (e.g. "ge") of the value at an error location, or None:
    pydantic's error context carries some bounds (date-times) only as text."""
    if not loc:
        return None
    parent, last = type_at(model, loc[:-1]), loc[-1]
    candidates: list[Any] = []
    if isinstance(last, str) and is_model(parent):
        field = fields_by_key(parent).get(last)
        if field is None:
            return None
        candidates.extend(field.metadata)
        annotation = field.annotation
    elif isinstance(last, int) and get_origin(parent) is list:
        annotation = (get_args(parent) or (Any,))[0]
    else:
        return None
    candidates.extend(_metadata(annotation))
    for item in candidates:
        if getattr(item, key, None) is not None:
            return getattr(item, key)
    return None


def literal_values(annotation: Any) -> list[Any] | None:
    annotation = core_type(annotation)
    return list(get_args(annotation)) if get_origin(annotation) is Literal else None


def drop_nulls(model: type[BaseModel], data: Any) -> Any:
    """A copy of data where an explicit null for a field that is not nullable is removed
    ("not given"), at every level of nested objects and lists of objects."""
    if not isinstance(data, dict):
        return data
    fields = fields_by_key(model)
    kept: dict[Any, Any] = {}
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            kept[key] = value  # unknown: left for the model to reject by name
        elif value is None:
            if admits_none(field.annotation):
                kept[key] = None
        else:
            kept[key] = _descend(field.annotation, value)
    return kept


def _descend(annotation: Any, value: Any) -> Any:
    annotation = core_type(annotation)
    if is_model(annotation):
        return drop_nulls(annotation, value)
    if get_origin(annotation) is list and isinstance(value, list):
        item = (get_args(annotation) or (Any,))[0]
        return [_descend(item, v) for v in value]
    return value
