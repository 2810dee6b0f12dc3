"""Parameter validation for JobBaseMixin: one path for both kinds of parameters_schema.

A job declares its parameters either as a dict of rules (jobs/schema_compiler.py lists the
rule keys; compiled into a pydantic model once) or as a pydantic model class (best derived
from jobs.parameter_types.ParametersModel, see that module). Either way:

- validate_parameters validates with the model in strict mode, after turning an explicit
  null for a field that is not nullable into "not given"; a pydantic ValidationError
  becomes one JobValidationError naming the full path (filter.extensions[2]) and what is
  allowed (jobs/validation_errors.py);
- the validated parameters are the model's model_dump(mode="json"): JSON values only
  (date-times as ISO 8601 strings in UTC), defaults applied, optional fields that were not
  given left out; the job id is the hash of exactly this dict;
- describe_parameters gives a JSON description for the HTTP 400 answer (and OpenAPI).

Unknown names are rejected at every level: a typo must never silently become the default.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from pydantic import BaseModel, ValidationError

from exceptions import JobValidationError
from jobs.parameter_types import drop_nulls, json_type
from jobs.schema_checks import validate_schema
from jobs.schema_compiler import SCHEMA_KEYS, SCHEMA_TYPES, compile_schema
from jobs.validation_errors import format_path, translate

__all__ = ["SCHEMA_KEYS", "SCHEMA_TYPES", "describe_parameters", "format_path", "json_type",
           "parameters_model", "validate_parameters", "validate_schema"]


def _is_model(schema: Any) -> bool:
    return isinstance(schema, type) and issubclass(schema, BaseModel)


def parameters_model(schema: dict[str, Any] | type[BaseModel]) -> type[BaseModel]:
    """The pydantic model that validates a parameters_schema (itself when it is a model)."""
    if _is_model(schema):
        return schema  # type: ignore[return-value]
    return compile_schema(schema)  # type: ignore[arg-type]


def validate_parameters(schema: dict[str, Any] | type[BaseModel], params: Any) -> dict[str, Any]:
    """Validate params against a parameters_schema; return a new dict of JSON values with
    defaults applied. Raises JobValidationError (.parameter: the full path)."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise JobValidationError(
            f"Parameters must be a JSON object, got {json_type(params)}", None)
    model = parameters_model(schema)
    try:
        validated = model.model_validate(drop_nulls(model, params), strict=True)
    except ValidationError as exc:
        raise translate(model, exc) from None
    return validated.model_dump(mode="json", by_alias=True)


def describe_parameters(job_or_schema: Any) -> dict[str, Any]:
    """A JSON-serializable description of a job's parameters (a job class, or its
    parameters_schema): the dict schema as declared, or the model's JSON Schema."""
    schema = job_or_schema
    if not _is_model(schema) and not isinstance(schema, dict):
        schema = getattr(job_or_schema, "parameters_schema", {})
    if _is_model(schema):
        return schema.model_json_schema()
    return json.loads(json.dumps(copy.deepcopy(schema), default=str))
