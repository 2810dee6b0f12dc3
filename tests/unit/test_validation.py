"""JobBaseMixin.validate_job_parameters: the declarative parameters_schema rules.

Every rejection is a JobValidationError whose .parameter names the offending parameter and
whose message names it and the rule it broke."""

from __future__ import annotations

import math

import pytest

from exceptions import JobValidationError
from jobs.base import JobBase
from jobs.hello_world import HelloWorldJob
from jobs.mixins import JobBaseMixin


class SchemaJob(JobBaseMixin, JobBase):
    job_type = "schema_job"
    description = "A job that exists to exercise every rule of parameters_schema"
    stages = [{"number": 1, "name": "only", "task_type": "noop"}]
    parameters_schema = {
        "count": {"type": "int", "min": 1, "max": 10, "default": 3},
        "ratio": {"type": "float", "min": 0.0, "max": 1.0, "default": 0.5},
        "scale": {"type": "float", "default": 1.0},
        "name": {"type": "str", "required": True},
        "mode": {"type": "str", "allowed": ["fast", "slow"], "default": "fast"},
        "flag": {"type": "bool", "default": False},
        "note": {"type": "str"},  # optional, no default: absent when not given
    }

    @staticmethod
    def create_tasks_for_stage(stage, job_params, job_id, previous_results=None):
        return []

    @staticmethod
    def finalize_job(context):
        return {}


DEFAULTS = {"count": 3, "ratio": 0.5, "scale": 1.0, "mode": "fast", "flag": False}


def validate(params):
    return SchemaJob.validate_job_parameters(params)


@pytest.mark.parametrize(
    "given, expected",
    [
        ({"name": "a"}, {**DEFAULTS, "name": "a"}),
        ({"name": "a", "count": 1}, {**DEFAULTS, "name": "a", "count": 1}),
        ({"name": "a", "count": 10}, {**DEFAULTS, "name": "a", "count": 10}),
        ({"name": "a", "ratio": 0}, {**DEFAULTS, "name": "a", "ratio": 0.0}),
        ({"name": "a", "ratio": 1.0}, {**DEFAULTS, "name": "a", "ratio": 1.0}),
        ({"name": "a", "scale": 5}, {**DEFAULTS, "name": "a", "scale": 5.0}),
        ({"name": "a", "mode": "slow"}, {**DEFAULTS, "name": "a", "mode": "slow"}),
        ({"name": "a", "flag": True}, {**DEFAULTS, "name": "a", "flag": True}),
        ({"name": "a", "note": "n"}, {**DEFAULTS, "name": "a", "note": "n"}),
        # An explicit null means "not given": the default applies.
        ({"name": "a", "count": None}, {**DEFAULTS, "name": "a"}),
    ],
    ids=["defaults", "int-at-min", "int-at-max", "float-at-min-from-int", "float-at-max",
         "int-as-float", "allowed", "bool", "optional-str", "null-means-default"],
)
def test_valid_parameters_come_back_with_defaults_applied(given, expected):
    assert validate(given) == expected


def test_an_int_given_for_a_float_becomes_a_float():
    value = validate({"name": "a", "scale": 5})["scale"]
    assert value == 5.0 and type(value) is float


@pytest.mark.parametrize(
    "given, parameter, rule",
    [
        ({"name": "a", "count": True}, "count", "must be an integer, got boolean"),
        ({"name": "a", "count": "5"}, "count", "must be an integer, got string"),
        ({"name": "a", "count": 2.5}, "count", "must be an integer, got number"),
        ({"name": "a", "count": 0}, "count", "must be >= 1"),
        ({"name": "a", "count": 11}, "count", "must be <= 10"),
        ({"name": "a", "ratio": False}, "ratio", "must be a number, got boolean"),
        ({"name": "a", "ratio": "0.5"}, "ratio", "must be a number, got string"),
        ({"name": "a", "ratio": -0.1}, "ratio", "must be >= 0.0"),
        ({"name": "a", "ratio": 1.5}, "ratio", "must be <= 1.0"),
        ({"name": "a", "scale": math.nan}, "scale", "must be a finite number"),
        ({"name": "a", "scale": math.inf}, "scale", "must be a finite number"),
        ({"name": "a", "scale": -math.inf}, "scale", "must be a finite number"),
        ({"name": 5}, "name", "must be a string, got integer"),
        ({"name": ["a"]}, "name", "must be a string, got array"),
        ({}, "name", "is required"),
        ({"name": None}, "name", "is required"),
        ({"name": "a", "mode": "medium"}, "mode", "must be one of ['fast', 'slow']"),
        ({"name": "a", "flag": 1}, "flag", "must be a boolean, got integer"),
        ({"name": "a", "flag": "true"}, "flag", "must be a boolean, got string"),
    ],
)
def test_each_rule_rejects_with_the_parameter_and_the_rule_named(given, parameter, rule):
    with pytest.raises(JobValidationError) as raised:
        validate(given)
    assert raised.value.parameter == parameter
    assert f"'{parameter}'" in str(raised.value)
    assert rule in str(raised.value)


def test_validation_errors_are_value_errors():
    # Callers that only know ValueError (the HTTP layer's 400) still catch them.
    with pytest.raises(ValueError):
        validate({})


def test_unknown_names_are_rejected_by_name_listing_the_allowed_ones():
    # Given a typo beside a valid parameter, When validated,
    # Then the typo is named (never silently replaced by a default) and the allowed names listed.
    with pytest.raises(JobValidationError) as raised:
        validate({"name": "a", "colour": "red", "cnt": 4})
    message = str(raised.value)
    assert "'cnt'" in message and "'colour'" in message
    assert "Allowed parameters: count, flag, mode, name, note, ratio, scale" in message
    assert raised.value.parameter == "cnt"


@pytest.mark.parametrize("given", [None, {}])
def test_no_parameters_means_all_defaults(given):
    assert HelloWorldJob.validate_job_parameters(given) == {
        "n": 3, "message": "Hello World", "failure_rate": 0.0, "sleep_seconds": 0.0}


@pytest.mark.parametrize("given, kind", [([1, 2], "array"), ("n=3", "string"), (3, "integer"),
                                         (True, "boolean")])
def test_parameters_that_are_not_an_object_are_rejected(given, kind):
    with pytest.raises(JobValidationError) as raised:
        validate(given)
    assert str(raised.value) == f"Parameters must be a JSON object, got {kind}"


def test_validated_parameters_are_a_new_dict():
    given = {"name": "a"}
    validated = validate(given)
    validated["count"] = 99
    assert given == {"name": "a"}
