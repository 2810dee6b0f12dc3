"""Start-up checks of a parameters_schema (core/registry.py validate_registries): a schema
that cannot work is a programming error, refused at import naming the rule and the
problem, never a TypeError (or a silently wrong default) at the first request."""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BaseModel

from exceptions import ContractViolationError, JobValidationError
from jobs.parameter_types import core_type, is_model, parse_datetime, union_members
from jobs.schema_compiler import SCHEMA_KEYS, SCHEMA_TYPES, TYPE_WORDS, compile_schema

_BOUNDED = ("int", "float", "datetime")
_LENGTHS = ("str", "list")
_CHOOSABLE = ("int", "float", "str", "bool")


def _is_of(kind: str, value: Any) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "datetime":
        try:
            return isinstance(value, str) and bool(parse_datetime(value))
        except ValueError:
            return False
    return False


def validate_schema(owner: str, schema: Any) -> None:
    """Check a job's parameters_schema: a dict of rules, or a pydantic model class."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        _check_model(owner, schema)
        return
    if not isinstance(schema, dict):
        raise ContractViolationError(
            f"{owner}.parameters_schema must be a dict of rules or a pydantic model class "
            f"(a BaseModel subclass), got {type(schema).__name__}")
    _check_fields(f"{owner}.parameters_schema", schema)
    try:
        compile_schema(schema)
    except Exception as exc:  # noqa: BLE001 - any failure to compile is the schema's fault
        raise ContractViolationError(
            f"{owner}.parameters_schema cannot be compiled: {exc}") from None


def _check_fields(where: str, fields: dict[str, Any]) -> None:
    for name, rule in fields.items():
        if not isinstance(name, str) or not name:
            raise ContractViolationError(f"{where} has a parameter name {name!r}; names are "
                                         "non-empty strings")
        _check_rule(f"{where}['{name}']", name, rule)


def _check_rule(where: str, name: str, rule: Any) -> None:
    if not isinstance(rule, dict):
        raise ContractViolationError(f"{where} must be a dict")
    unknown = set(rule) - set(SCHEMA_KEYS)
    if unknown:
        raise ContractViolationError(
            f"{where} has unknown keys {sorted(unknown)}; allowed: {list(SCHEMA_KEYS)}")
    kind = rule.get("type", "str")
    if kind not in SCHEMA_TYPES:
        raise ContractViolationError(f"{where} has type {kind!r}; allowed: {list(SCHEMA_TYPES)}")
    for flag in ("required", "nullable"):
        if flag in rule and not isinstance(rule[flag], bool):
            raise ContractViolationError(f"{where}: {flag} must be true or false")
    if "description" in rule and not isinstance(rule["description"], str):
        raise ContractViolationError(f"{where}: description must be a string")
    _check_structure(where, kind, rule)
    _check_bounds(where, kind, rule)
    _check_lengths(where, kind, rule)
    _check_pattern(where, kind, rule)
    _check_choices(where, kind, rule)
    _check_default(where, name, rule)


def _check_structure(where: str, kind: str, rule: dict[str, Any]) -> None:
    if "items" in rule and kind != "list":
        raise ContractViolationError(f"{where}: items applies only to list")
    if "fields" in rule and kind != "object":
        raise ContractViolationError(f"{where}: fields applies only to object")
    if kind == "list":
        if "items" not in rule:
            raise ContractViolationError(f"{where}: a list needs items (the rule of its "
                                         "elements, e.g. {\"type\": \"str\"})")
        items = rule["items"]
        if isinstance(items, dict) and ("required" in items or "default" in items):
            raise ContractViolationError(f"{where}.items: required and default do not apply "
                                         "to list elements")
        _check_rule(f"{where}.items", "item", items)
    if kind == "object":
        if not isinstance(rule.get("fields"), dict):
            raise ContractViolationError(f"{where}: an object needs fields (a dict of rules, "
                                         "like parameters_schema)")
        _check_fields(f"{where}.fields", rule["fields"])


def _check_bounds(where: str, kind: str, rule: dict[str, Any]) -> None:
    if "min" not in rule and "max" not in rule:
        return
    if kind not in _BOUNDED:
        raise ContractViolationError(
            f"{where}: min and max apply only to int and float, and to datetime (as ISO "
            "8601 strings); for str and list use min_length and max_length")
    for bound in ("min", "max"):
        if bound in rule and not _is_of(kind, rule[bound]):
            raise ContractViolationError(f"{where}: {bound} must be {TYPE_WORDS[kind]}")
    if "min" in rule and "max" in rule:
        low, high = rule["min"], rule["max"]
        if kind == "datetime":
            low, high = parse_datetime(low), parse_datetime(high)
        if low > high:
            raise ContractViolationError(f"{where}: min {rule['min']!r} is above max "
                                         f"{rule['max']!r}")


def _check_lengths(where: str, kind: str, rule: dict[str, Any]) -> None:
    if "min_length" not in rule and "max_length" not in rule:
        return
    if kind not in _LENGTHS:
        raise ContractViolationError(f"{where}: min_length and max_length apply only to str "
                                     "and list")
    for length in ("min_length", "max_length"):
        if length in rule and not (_is_of("int", rule[length]) and rule[length] >= 0):
            raise ContractViolationError(f"{where}: {length} must be a whole number >= 0")
    if rule.get("min_length", 0) > rule.get("max_length", math.inf):
        raise ContractViolationError(f"{where}: min_length {rule['min_length']} is above "
                                     f"max_length {rule['max_length']}")


def _check_pattern(where: str, kind: str, rule: dict[str, Any]) -> None:
    if "pattern" not in rule:
        return
    if kind != "str":
        raise ContractViolationError(f"{where}: pattern applies only to str")
    if not isinstance(rule["pattern"], str):
        raise ContractViolationError(f"{where}: pattern must be a string (a regular "
                                     "expression)")
    try:
        re.compile(rule["pattern"])
    except re.error as exc:
        raise ContractViolationError(f"{where}: pattern {rule['pattern']!r} is not a valid "
                                     f"regular expression: {exc}") from None


def _check_choices(where: str, kind: str, rule: dict[str, Any]) -> None:
    keys = [k for k in ("choices", "allowed") if k in rule]
    if not keys:
        return
    if len(keys) == 2:
        raise ContractViolationError(f"{where}: choices and allowed are the same rule "
                                     "(allowed is its older name); give one")
    key = keys[0]
    values = rule[key]
    if kind not in _CHOOSABLE:
        raise ContractViolationError(f"{where}: {key} applies only to int, float, str and "
                                     "bool")
    if not isinstance(values, (list, tuple)) or not values:
        raise ContractViolationError(f"{where}: {key} must be a non-empty list")
    for value in values:
        if not _is_of(kind, value):
            raise ContractViolationError(
                f"{where}: {key} value {value!r} is not {TYPE_WORDS[kind]}")


def _check_default(where: str, name: str, rule: dict[str, Any]) -> None:
    if "default" not in rule:
        return
    if rule["default"] is None:
        if not rule.get("nullable"):
            raise ContractViolationError(
                f"{where}: the default is null but the parameter is not nullable; set "
                "\"nullable\": true, or leave the default out (absent then means absent)")
        return
    from jobs.validation import validate_parameters  # the one validation path

    try:
        validate_parameters({name: {k: v for k, v in rule.items() if k != "default"}},
                            {name: rule["default"]})
    except JobValidationError as exc:
        raise ContractViolationError(
            f"{where}: the default breaks its own rule: {exc}") from None


def _check_model(owner: str, model: type[BaseModel], seen: set[type] | None = None) -> None:
    """A model must reject unknown names at every level (extra="forbid"; ParametersModel
    does), and its JSON description must be producible (for the 400 answer)."""
    seen = set() if seen is None else seen
    if model in seen:
        return
    seen.add(model)
    if model.model_config.get("extra") != "forbid":
        raise ContractViolationError(
            f"{owner}.parameters_schema: the model {model.__name__} must reject unknown "
            "parameters (derive it from jobs.parameter_types.ParametersModel, or set "
            "model_config extra='forbid'): a typo must never silently become a default")
    for field in model.model_fields.values():
        for nested in _models_in(field.annotation):
            _check_model(owner, nested, seen)
    if len(seen) == 1:
        try:
            model.model_json_schema()
        except Exception as exc:  # noqa: BLE001
            raise ContractViolationError(f"{owner}.parameters_schema: the model "
                                         f"{model.__name__} cannot be described as JSON "
                                         f"Schema: {exc}") from None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    from typing import get_args

    found: list[type[BaseModel]] = []
    for member in union_members(annotation):
        member = core_type(member)
        if is_model(member):
            found.append(member)
        else:
            for argument in get_args(member):
                found.extend(_models_in(argument))
    return found
