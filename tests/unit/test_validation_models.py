"""A job may declare its parameters as a pydantic model instead of a dict (seed 001 §3.3).
Written with jobs.parameter_types, the model and the equivalent dict give identical
validated parameters, identical job ids and identical error messages."""

from __future__ import annotations

import json
import math
from typing import Annotated, Literal, Union

import pytest
from pydantic import (MISSING, Field, StrictBool, StrictFloat, StrictInt, StrictStr,
                      model_validator)

from exceptions import JobValidationError
from jobs.base import JobBase
from jobs.mixins import JobBaseMixin
from jobs.parameter_types import (Choices, FullMatch, ParametersModel, UtcDateTime,
                                  parse_datetime)
from jobs.validation import describe_parameters

DICT_SCHEMA = {
    "count": {"type": "int", "min": 1, "max": 10, "default": 3},
    "ratio": {"type": "float", "min": 0.0, "max": 1.0, "default": 0.5},
    "name": {"type": "str", "required": True, "min_length": 1, "max_length": 12,
             "pattern": "[a-z][a-z0-9_]*"},
    "mode": {"type": "str", "choices": ["fast", "slow"], "default": "fast"},
    "flag": {"type": "bool", "default": False},
    "note": {"type": "str"},
    "start": {"type": "datetime", "min": "2026-01-01T00:00:00Z"},
    "crs": {"type": "str", "nullable": True, "default": "EPSG:4326"},
    "filter": {"type": "object", "default": {}, "fields": {
        "extensions": {"type": "list", "items": {"type": "str"}, "min_length": 1,
                       "default": ["tif"]},
        "min_size": {"type": "int", "min": 0, "default": 0},
    }},
    "bands": {"type": "list", "max_length": 3, "default": [], "items": {
        "type": "object", "fields": {"name": {"type": "str", "required": True},
                                     "scale": {"type": "float", "default": 1.0}}}},
}


class Filter(ParametersModel):
    extensions: list[StrictStr] = Field(["tif"], min_length=1)
    min_size: StrictInt = Field(0, ge=0)


class Band(ParametersModel):
    name: StrictStr
    scale: StrictFloat = 1.0


class Params(ParametersModel):
    """DICT_SCHEMA as a model, field by field in the same order."""

    count: StrictInt = Field(3, ge=1, le=10)
    ratio: StrictFloat = Field(0.5, ge=0.0, le=1.0)
    name: Annotated[StrictStr, Field(min_length=1, max_length=12), FullMatch("[a-z][a-z0-9_]*")]
    mode: Annotated[StrictStr, Choices("fast", "slow")] = "fast"
    flag: StrictBool = False
    note: Union[StrictStr, MISSING] = MISSING  # optional: absent means absent
    start: Union[Annotated[UtcDateTime, Field(ge=parse_datetime("2026-01-01T00:00:00Z"))],
                 MISSING] = MISSING
    crs: StrictStr | None = "EPSG:4326"    # nullable: null is a value
    filter: Filter = Field(default_factory=Filter)
    bands: list[Band] = Field([], max_length=3)


def make_job(schema) -> type:
    class SampleJob(JobBaseMixin, JobBase):
        job_type = "sample"
        description = "A sample job"
        stages = [{"number": 1, "name": "only", "task_type": "noop"}]
        parameters_schema = schema
        create_tasks_for_stage = staticmethod(lambda *args, **kwargs: [])
        finalize_job = staticmethod(lambda context: {})

    return SampleJob


DictJob, ModelJob = make_job(DICT_SCHEMA), make_job(Params)

VALID = [
    {"name": "a"},
    {"name": "a", "count": 10, "ratio": 1, "mode": "slow", "flag": True, "note": "n"},
    {"name": "a", "count": None, "mode": None, "note": None},
    {"name": "a", "start": "2026-01-01T02:00:00+02:00"},
    {"name": "a", "start": "2026-01-01T00:00:00"},
    {"name": "a", "crs": None},
    {"name": "a", "filter": {"extensions": ["jpg", "png"]}},
    {"name": "a", "filter": {"min_size": None}},
    {"name": "a", "bands": [{"name": "red"}, {"name": "nir", "scale": 2}]},
]

INVALID = [
    {}, {"name": None}, {"name": 5}, {"name": ""}, {"name": "a" * 13}, {"name": "A"},
    {"name": "a", "count": "5"}, {"name": "a", "count": True}, {"name": "a", "count": 2.5},
    {"name": "a", "count": 0}, {"name": "a", "count": 11},
    {"name": "a", "ratio": False}, {"name": "a", "ratio": -0.1}, {"name": "a", "ratio": math.nan},
    {"name": "a", "ratio": math.inf},
    {"name": "a", "mode": "medium"}, {"name": "a", "mode": 1},
    {"name": "a", "flag": 1}, {"name": "a", "flag": "true"},
    {"name": "a", "start": "soon"}, {"name": "a", "start": "2025-12-31T23:59:59Z"},
    {"name": "a", "start": "2026-01-01T00:30:00+01:00"},
    {"name": "a", "crs": 4326},
    {"name": "a", "filter": "tif"}, {"name": "a", "filter": {"extensions": []}},
    {"name": "a", "filter": {"extensions": ["tif", "png", 5]}},
    {"name": "a", "filter": {"min_size": -1}},
    {"name": "a", "filter": {"colour": "red", "cnt": 1}},
    {"name": "a", "bands": [{"name": "r"}, {"scale": 1.0}]},
    {"name": "a", "bands": [{"name": "r", "gain": 2}]},
    {"name": "a", "bands": [{"name": "r"}] * 4},
    {"name": "a", "bands": [None]},
    {"name": "a", "colour": "red", "cnt": 4},
]


def outcome(job, params):
    try:
        validated = job.validate_job_parameters(params)
    except JobValidationError as exc:
        return ("error", exc.parameter, str(exc))
    return ("valid", validated, job.generate_job_id(validated))


@pytest.mark.parametrize("params", VALID, ids=lambda p: json.dumps(p)[:60])
def test_a_dict_and_its_model_give_the_same_validated_parameters_and_id(params):
    # Given the same schema declared as a dict and as a model, When valid parameters are
    # validated, Then both give the same dict of JSON values and the same job id.
    by_dict, by_model = outcome(DictJob, params), outcome(ModelJob, params)
    assert by_dict[0] == "valid", by_dict
    assert by_model == by_dict


@pytest.mark.parametrize("params", INVALID, ids=lambda p: repr(p)[:60])
def test_a_dict_and_its_model_give_the_same_error(params):
    by_dict, by_model = outcome(DictJob, params), outcome(ModelJob, params)
    assert by_dict[0] == "error", by_dict
    assert by_model == by_dict


def test_the_model_path_keeps_the_message_shapes():
    assert outcome(ModelJob, {"name": "a", "count": "5"})[2] == (
        "Parameter 'count' must be an integer, got string ('5')")
    assert outcome(ModelJob, {"name": "a", "colour": "red", "cnt": 4})[2] == (
        "Unknown parameter(s) 'cnt', 'colour'. Allowed parameters: bands, count, crs, "
        "filter, flag, mode, name, note, ratio, start")
    assert outcome(ModelJob, {"name": "a", "filter": {"extensions": ["a", 5]}})[1] == (
        "filter.extensions[1]")


def test_absent_optional_fields_are_left_out_on_both_paths():
    validated = ModelJob.validate_job_parameters({"name": "a"})
    assert "note" not in validated and "start" not in validated
    assert validated["filter"] == {"extensions": ["tif"], "min_size": 0}


def test_a_literal_in_a_model_reports_its_choices_like_choices():
    class WithLiteral(ParametersModel):
        mode: Literal["fast", "slow"] = "fast"

    error = outcome(make_job(WithLiteral), {"mode": "medium"})
    assert error == ("error", "mode", "Parameter 'mode' must be one of ['fast', 'slow'], "
                     "got 'medium'")


def test_a_models_own_cross_field_rule_is_a_validation_error_for_the_whole_set():
    class Range(ParametersModel):
        low: StrictInt
        high: StrictInt

        @model_validator(mode="after")
        def ordered(self):
            if self.low >= self.high:
                raise ValueError("low must be below high")
            return self

    error = outcome(make_job(Range), {"low": 5, "high": 1})
    assert error[0] == "error" and error[1] is None
    assert "low must be below high" in error[2]


def test_a_field_named_like_a_pydantic_attribute_works_in_a_dict_schema():
    # Dict schemas are compiled with the parameter names as aliases, so names such as
    # "copy" or "schema" (BaseModel attributes) are plain parameters.
    job = make_job({"copy": {"type": "bool", "default": True}, "schema": {"type": "str"}})
    assert job.validate_job_parameters({"schema": "s"}) == {"copy": True, "schema": "s"}


# --- describe_parameters -------------------------------------------------------------------

def test_a_dict_schema_is_described_as_declared():
    described = describe_parameters(DictJob)
    assert described == DICT_SCHEMA and described is not DICT_SCHEMA
    assert describe_parameters(DICT_SCHEMA) == DICT_SCHEMA


def test_a_model_is_described_by_its_json_schema():
    described = describe_parameters(ModelJob)
    json.dumps(described)  # JSON-serializable, for the 400 answer and OpenAPI
    properties = described["properties"]
    assert described["additionalProperties"] is False
    assert described["required"] == ["name"]
    assert properties["mode"]["enum"] == ["fast", "slow"]
    assert properties["start"]["format"] == "date-time"
    assert properties["name"]["pattern"] == "^(?:[a-z][a-z0-9_]*)$"  # FullMatch, anchored
    assert properties["count"] == {"default": 3, "maximum": 10, "minimum": 1,
                                   "title": "Count", "type": "integer"}


def test_a_job_without_a_schema_is_described_as_no_parameters():
    assert describe_parameters(make_job({})) == {}
