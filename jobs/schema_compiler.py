"""A dict parameters_schema compiled into a pydantic model (ParametersModel), once per
distinct schema.

    {name: {"type": "int"|"float"|"str"|"bool"|"datetime"|"list"|"object",
            "required", "default", "nullable", "description",
            "min", "max"                  (int, float; datetime as ISO 8601 strings),
            "min_length", "max_length"    (str: characters; list: items),
            "pattern"                     (str, Python re, the whole string must match),
            "choices" (or "allowed")      (int, float, str, bool),
            "items"                       (list: the rule of every element),
            "fields"                      (object: a nested schema, same rules)}}

A field that is neither required nor has a default is left out of the validated
parameters when absent (MISSING). Fields are named internally p0, p1, ... with the
parameter name as alias, so any parameter name (even "copy" or "schema") is safe.
"""

from __future__ import annotations

import json
import threading
from typing import Annotated, Any, Optional, Union

from pydantic import (MISSING, BaseModel, Field, StrictBool, StrictFloat, StrictInt,
                      StrictStr, create_model)

from jobs.parameter_types import (Choices, FullMatch, ParametersModel, UtcDateTime,
                                  parse_datetime)

SCHEMA_TYPES = ("int", "float", "str", "bool", "datetime", "list", "object")
SCHEMA_KEYS = ("type", "required", "default", "nullable", "description", "min", "max",
               "min_length", "max_length", "pattern", "choices", "allowed", "items", "fields")
TYPE_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "a boolean",
              "datetime": "an ISO 8601 date-time", "list": "a list", "object": "an object"}
_SCALARS = {"int": StrictInt, "float": StrictFloat, "str": StrictStr, "bool": StrictBool,
            "datetime": UtcDateTime}

_cache: dict[str, type[BaseModel]] = {}
_lock = threading.Lock()


def _key(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, default=repr)


def compile_schema(schema: dict[str, Any], name: str = "Parameters") -> type[BaseModel]:
    """The model of a dict schema; the same (equal) schema gives the same model class."""
    key = _key(schema)
    model = _cache.get(key)
    if model is None:
        with _lock:
            model = _cache.get(key)
            if model is None:
                model = _cache[key] = _fields_model(schema, name)
    return model


def _fields_model(fields: dict[str, Any], name: str) -> type[BaseModel]:
    definitions: dict[str, Any] = {}
    for position, (field_name, rule) in enumerate(fields.items()):
        annotation = rule_annotation(rule, f"{name}_{position}")
        extra = {"alias": field_name, "description": rule.get("description")}
        if rule.get("required"):
            info = Field(**extra)
        elif "default" in rule:
            info = Field(default=rule["default"], validate_default=True, **extra)
        else:
            annotation = Union[annotation, MISSING]
            info = Field(default=MISSING, **extra)
        definitions[f"p{position}"] = (annotation, info)
    return create_model(name, __base__=ParametersModel, **definitions)


def rule_annotation(rule: dict[str, Any], name: str) -> Any:
    """The annotation of one rule: its type, its constraints and, if nullable, None."""
    kind = rule.get("type", "str")
    constraints: dict[str, Any] = {}
    markers: list[Any] = []
    if kind == "list":
        base: Any = list[rule_annotation(rule["items"], f"{name}_item")]
    elif kind == "object":
        base = _fields_model(rule["fields"], name)
    else:
        base = _SCALARS[kind]
    for bound, constraint in (("min", "ge"), ("max", "le")):
        if bound in rule:
            value = rule[bound]
            constraints[constraint] = parse_datetime(value) if kind == "datetime" else value
    for length in ("min_length", "max_length"):
        if length in rule:
            constraints[length] = rule[length]
    if "pattern" in rule:
        markers.append(FullMatch(rule["pattern"]))
    choices = rule.get("choices", rule.get("allowed"))
    if choices is not None:
        markers.append(Choices(*choices))
    metadata = ([Field(**constraints)] if constraints else []) + markers
    annotation = Annotated[(base, *metadata)] if metadata else base
    return Optional[annotation] if rule.get("nullable") else annotation
