"""validate_schema: the start-up check of a parameters_schema covers the richer rules (and
pydantic model classes), refusing a schema that cannot work, naming where and why."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, StrictInt

from core.registry import validate_registries
from exceptions import ContractViolationError, RegistryError
from jobs.base import JobBase
from jobs.mixins import JobBaseMixin
from jobs.parameter_types import ParametersModel
from jobs.validation import validate_schema

WHERE = "Sample.parameters_schema"


def refused(schema) -> str:
    with pytest.raises(ContractViolationError) as raised:
        validate_schema("Sample", schema)
    return str(raised.value)


@pytest.mark.parametrize(
    "schema",
    [
        {},
        {"n": {"type": "int", "min": 1, "max": 1, "default": 1, "description": "one"}},
        {"xs": {"type": "list", "items": {"type": "list", "items": {"type": "float"}},
                "min_length": 0, "max_length": 2, "default": [[1, 2.5]]}},
        {"f": {"type": "object", "fields": {"a": {"type": "str", "required": True}},
               "nullable": True, "default": None}},
        {"when": {"type": "datetime", "min": "2026-01-01", "max": "2026-01-01T05:00:00+05:00",
                  "default": "2026-01-01T00:00:00"}},
        {"code": {"type": "str", "pattern": "(?<!x)[a-z]+", "choices": ["ab", "cd"],
                  "default": "ab"}},
        {"mode": {"type": "str", "allowed": ["a"], "default": "a"}},
        {"crs": {"type": "str", "nullable": True}},
    ],
    ids=["empty", "bounds-equal", "list-of-lists", "nullable-object", "datetime-bounds",
         "pattern-with-lookbehind", "allowed-older-name", "nullable-no-default"],
)
def test_sound_schemas_are_accepted(schema):
    validate_schema("Sample", schema)


@pytest.mark.parametrize(
    "schema, problem",
    [
        ({"f": {"type": "object", "fields": {"a": {"type": "int", "minimum": 1}}}},
         f"{WHERE}['f'].fields['a'] has unknown keys ['minimum']"),
        ({"xs": {"type": "list", "items": {"type": "integer"}}},
         f"{WHERE}['xs'].items has type 'integer'; allowed: ['int', 'float', 'str', 'bool', "
         "'datetime', 'list', 'object']"),
        ({"xs": {"type": "list"}}, f"{WHERE}['xs']: a list needs items"),
        ({"xs": {"type": "list", "items": "str"}}, f"{WHERE}['xs'].items must be a dict"),
        ({"xs": {"type": "list", "items": {"type": "str", "required": True}}},
         "required and default do not apply to list elements"),
        ({"s": {"type": "str", "items": {"type": "str"}}}, "items applies only to list"),
        ({"f": {"type": "object"}}, f"{WHERE}['f']: an object needs fields"),
        ({"f": {"type": "list", "items": {"type": "int"}, "fields": {}}},
         "fields applies only to object"),
        ({"f": {"type": "object", "fields": {"": {"type": "int"}}}},
         "has a parameter name ''"),
        ({"n": {"type": "int", "min": 5, "max": 1}}, f"{WHERE}['n']: min 5 is above max 1"),
        ({"xs": {"type": "list", "items": {"type": "int"}, "min": 1}},
         "min and max apply only to int and float, and to datetime"),
        ({"x": {"type": "float", "max": "1.0"}}, "max must be a number"),
        ({"x": {"type": "float", "max": float("nan")}}, "max must be a number"),
        ({"when": {"type": "datetime", "min": "yesterday"}},
         "min must be an ISO 8601 date-time"),
        ({"when": {"type": "datetime", "min": "2026-01-02", "max": "2026-01-02T01:00:00+02:00"}},
         "min '2026-01-02' is above max"),
        ({"n": {"type": "int", "min_length": 1}},
         "min_length and max_length apply only to str and list"),
        ({"s": {"type": "str", "min_length": -1}}, "min_length must be a whole number >= 0"),
        ({"s": {"type": "str", "max_length": 2.5}}, "max_length must be a whole number >= 0"),
        ({"s": {"type": "str", "min_length": 3, "max_length": 2}},
         "min_length 3 is above max_length 2"),
        ({"n": {"type": "int", "pattern": "[0-9]+"}}, "pattern applies only to str"),
        ({"s": {"type": "str", "pattern": "[a-"}},
         "pattern '[a-' is not a valid regular expression"),
        ({"s": {"type": "str", "pattern": 5}}, "pattern must be a string"),
        ({"n": {"type": "int", "choices": ["a"]}}, "choices value 'a' is not an integer"),
        ({"n": {"type": "int", "choices": [True]}}, "choices value True is not an integer"),
        ({"x": {"type": "float", "choices": []}}, "choices must be a non-empty list"),
        ({"xs": {"type": "list", "items": {"type": "int"}, "choices": [[1]]}},
         "choices applies only to int, float, str and bool"),
        ({"s": {"type": "str", "choices": ["a"], "allowed": ["a"]}},
         "choices and allowed are the same rule"),
        ({"s": {"type": "str", "required": "yes"}}, "required must be true or false"),
        ({"s": {"type": "str", "nullable": 1}}, "nullable must be true or false"),
        ({"s": {"type": "str", "description": 5}}, "description must be a string"),
        ({"s": {"type": "str", "default": None}},
         "the default is null but the parameter is not nullable"),
        ({"s": {"type": "str", "pattern": "[a-z]+", "default": "A"}},
         f"{WHERE}['s']: the default breaks its own rule: Parameter 's' must match the "
         "pattern [a-z]+, got 'A'"),
        ({"xs": {"type": "list", "items": {"type": "int"}, "min_length": 1, "default": []}},
         "the default breaks its own rule: Parameter 'xs' must have at least 1 item(s), got 0"),
        ({"f": {"type": "object", "fields": {"a": {"type": "int", "required": True}},
                "default": {}}},
         "the default breaks its own rule: Parameter 'f.a' is required"),
        ({"f": {"type": "object", "fields": {"a": {"type": "int", "default": "1"}}}},
         f"{WHERE}['f'].fields['a']: the default breaks its own rule"),
        ({"when": {"type": "datetime", "min": "2026-01-01", "default": "2025-12-31T23:00:00"}},
         "the default breaks its own rule: Parameter 'when' must be >= 2026-01-01T00:00:00Z"),
        ({"mode": {"type": "str", "choices": ["a", "b"], "default": "c"}},
         "the default breaks its own rule: Parameter 'mode' must be one of ['a', 'b']"),
    ],
)
def test_a_rule_that_cannot_work_is_refused_naming_where_and_why(schema, problem):
    assert problem in refused(schema)


class GoodParams(ParametersModel):
    n: StrictInt = 1


class Lenient(BaseModel):  # pydantic's default: unknown names silently ignored
    n: int = 1


class Forbidding(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = 1


class WithLenientInside(ParametersModel):
    inner: list[Lenient] = []


def test_a_pydantic_model_class_is_accepted():
    validate_schema("Sample", GoodParams)
    validate_schema("Sample", Forbidding)  # any BaseModel that rejects unknown names


@pytest.mark.parametrize("model", [Lenient, WithLenientInside])
def test_a_model_that_would_ignore_unknown_names_is_refused(model):
    # A typo must never silently become a default, at any level.
    message = refused(model)
    assert "the model Lenient must reject unknown parameters" in message
    assert "ParametersModel" in message


@pytest.mark.parametrize("schema", [["n"], "n:int", GoodParams(), int, None])
def test_anything_but_a_dict_or_a_model_class_is_refused(schema):
    assert f"{WHERE} must be a dict of rules or a pydantic model class" in refused(schema)


def test_the_registry_check_accepts_a_job_with_a_model_and_refuses_a_bad_rule():
    def job(schema):
        return type("SampleJob", (JobBaseMixin, JobBase), {
            "job_type": "sample", "description": "A sample job",
            "stages": [{"number": 1, "name": "one", "task_type": "first"}],
            "parameters_schema": schema,
            "create_tasks_for_stage": staticmethod(lambda *args, **kwargs: []),
            "finalize_job": staticmethod(lambda context: {})})

    handlers = {"first": lambda params, context: {}}
    validate_registries({"sample": job(GoodParams)}, handlers)
    with pytest.raises(RegistryError, match=r"SampleJob.parameters_schema\['s'\]: pattern"):
        validate_registries({"sample": job({"s": {"type": "str", "pattern": "("}})}, handlers)
