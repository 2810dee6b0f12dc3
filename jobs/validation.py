"""Declarative parameter validation for JobBaseMixin: a parameters_schema of
{name: {"type": "int"|"float"|"str"|"bool", "required", "default", "min", "max", "allowed"}}.

Every error names the parameter and the rule it broke. Unknown names are rejected: a typo
must never silently become the default.
"""

from __future__ import annotations

import math
from typing import Any

from exceptions import ContractViolationError, JobValidationError

SCHEMA_TYPES = ("int", "float", "str", "bool")
SCHEMA_KEYS = ("type", "required", "default", "min", "max", "allowed", "description")
_TYPE_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "a boolean"}


def json_type(value: Any) -> str:
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


def _check_type(name: str, kind: str, value: Any) -> Any:
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
    }[kind]
    if not ok:
        raise JobValidationError(
            f"Parameter '{name}' must be {_TYPE_WORDS[kind]}, got {json_type(value)} "
            f"({value!r})", name,
        )
    if kind == "float":
        value = float(value)
        if not math.isfinite(value):
            raise JobValidationError(f"Parameter '{name}' must be a finite number", name)
    return value


def validate_schema(owner: str, schema: dict[str, dict[str, Any]]) -> None:
    """Check a parameters_schema itself (at start-up): a broken schema is a programming error."""
    if not isinstance(schema, dict):
        raise ContractViolationError(f"{owner}.parameters_schema must be a dict")
    for name, rule in schema.items():
        if not isinstance(rule, dict):
            raise ContractViolationError(f"{owner}.parameters_schema['{name}'] must be a dict")
        unknown = set(rule) - set(SCHEMA_KEYS)
        if unknown:
            raise ContractViolationError(
                f"{owner}.parameters_schema['{name}'] has unknown keys {sorted(unknown)}; "
                f"allowed: {list(SCHEMA_KEYS)}"
            )
        kind = rule.get("type", "str")
        where = f"{owner}.parameters_schema['{name}']"
        if kind not in SCHEMA_TYPES:
            raise ContractViolationError(
                f"{where} has type {kind!r}; allowed: {list(SCHEMA_TYPES)}")
        if ("min" in rule or "max" in rule) and kind not in ("int", "float"):
            raise ContractViolationError(f"{where}: min and max apply only to int and float")
        for bound in ("min", "max"):
            if bound in rule:
                try:
                    _check_type(bound, kind if kind == "float" else "int", rule[bound])
                except JobValidationError:
                    raise ContractViolationError(
                        f"{where}: {bound} must be {_TYPE_WORDS[kind]}") from None
        if "allowed" in rule:
            allowed = rule["allowed"]
            if not isinstance(allowed, (list, tuple)) or not allowed:
                raise ContractViolationError(f"{where}: allowed must be a non-empty list")
            for value in allowed:
                try:
                    _check_type(name, kind, value)
                except JobValidationError:
                    raise ContractViolationError(
                        f"{where}: allowed value {value!r} is not {_TYPE_WORDS[kind]}") from None
        if "default" in rule and rule["default"] is not None:
            try:
                validate_parameters({name: {k: v for k, v in rule.items() if k != "default"}},
                                    {name: rule["default"]})
            except JobValidationError as exc:
                raise ContractViolationError(f"{where}: the default breaks its own rule: {exc}") from None


def validate_parameters(schema: dict[str, dict[str, Any]], params: Any) -> dict[str, Any]:
    """Validate params against schema; return them with defaults applied."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise JobValidationError(
            f"Parameters must be a JSON object, got {json_type(params)}", None
        )
    unknown = sorted(set(params) - set(schema))
    if unknown:
        allowed = ", ".join(sorted(schema)) or "none"
        raise JobValidationError(
            f"Unknown parameter(s) {', '.join(repr(u) for u in unknown)}. "
            f"Allowed parameters: {allowed}", unknown[0],
        )
    validated: dict[str, Any] = {}
    for name, rule in schema.items():
        if name in params and params[name] is not None:
            value = params[name]
        elif rule.get("required"):
            raise JobValidationError(f"Parameter '{name}' is required", name)
        elif "default" in rule:
            validated[name] = rule["default"]
            continue
        else:
            continue
        kind = rule.get("type", "str")
        value = _check_type(name, kind, value)
        if "min" in rule and value < rule["min"]:
            raise JobValidationError(
                f"Parameter '{name}' must be >= {rule['min']}, got {value}", name
            )
        if "max" in rule and value > rule["max"]:
            raise JobValidationError(
                f"Parameter '{name}' must be <= {rule['max']}, got {value}", name
            )
        if "allowed" in rule and value not in rule["allowed"]:
            raise JobValidationError(
                f"Parameter '{name}' must be one of {list(rule['allowed'])}, got {value!r}", name
            )
        validated[name] = value
    return validated
