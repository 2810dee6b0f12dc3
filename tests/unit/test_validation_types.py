"""The richer parameter types of a dict parameters_schema: lists, nested objects, choices,
date-times, patterns, lengths and nullable fields. Errors name the full path of the
offending value (filter.extensions[2], bands[1].name) and what is allowed."""

from __future__ import annotations

import pytest

from exceptions import JobValidationError
from jobs.base import JobBase
from jobs.mixins import JobBaseMixin
from jobs.validation import validate_parameters


class TypesJob(JobBaseMixin, JobBase):
    job_type = "types_job"
    description = "A job that exists to exercise the richer parameter types"
    stages = [{"number": 1, "name": "only", "task_type": "noop"}]
    parameters_schema = {
        "filter": {"type": "object", "default": {}, "fields": {
            "extensions": {"type": "list", "items": {"type": "str", "pattern": "[a-z]{2,4}"},
                           "min_length": 1, "max_length": 3, "default": ["tif"]},
            "min_size": {"type": "int", "min": 0, "default": 0},
        }},
        "bands": {"type": "list", "default": [], "items": {"type": "object", "fields": {
            "name": {"type": "str", "required": True},
            "scale": {"type": "float", "default": 1.0},
        }}},
        "grid": {"type": "list", "items": {"type": "list", "items": {"type": "int"}}},
        "speed": {"type": "str", "choices": ["fast", "slow"], "default": "fast"},
        "level": {"type": "int", "choices": [1, 2, 3]},
        "start": {"type": "datetime", "min": "2026-01-01T00:00:00Z",
                  "max": "2026-12-31T23:59:59+00:00"},
        "code": {"type": "str", "pattern": "^[a-z][a-z0-9_]*$", "min_length": 2,
                 "max_length": 8},
        "label": {"type": "str", "pattern": "(?!tmp)[a-z]+"},  # a lookahead: Python's re
        "target_crs": {"type": "str", "nullable": True, "default": "EPSG:4326"},
        "source_crs": {"type": "str", "nullable": True},
    }

    @staticmethod
    def create_tasks_for_stage(stage, job_params, job_id, previous_results=None):
        return []

    @staticmethod
    def finalize_job(context):
        return {}


DEFAULTS = {"filter": {"extensions": ["tif"], "min_size": 0}, "bands": [], "speed": "fast",
            "target_crs": "EPSG:4326"}


def validate(params):
    return TypesJob.validate_job_parameters(params)


def rejection(params) -> JobValidationError:
    with pytest.raises(JobValidationError) as raised:
        validate(params)
    return raised.value


def job_id(params) -> str:
    return TypesJob.generate_job_id(validate(params))


# --- valid values --------------------------------------------------------------------------

@pytest.mark.parametrize(
    "given, expected",
    [
        ({}, DEFAULTS),
        ({"filter": {"extensions": ["jpg", "png"]}},
         {**DEFAULTS, "filter": {"extensions": ["jpg", "png"], "min_size": 0}}),
        ({"bands": [{"name": "red"}, {"name": "nir", "scale": 2}]},
         {**DEFAULTS, "bands": [{"name": "red", "scale": 1.0}, {"name": "nir", "scale": 2.0}]}),
        ({"grid": [[1, 2], [], [3]]}, {**DEFAULTS, "grid": [[1, 2], [], [3]]}),
        ({"speed": "slow", "level": 2}, {**DEFAULTS, "speed": "slow", "level": 2}),
        ({"code": "ab_1"}, {**DEFAULTS, "code": "ab_1"}),
        ({"label": "tiles"}, {**DEFAULTS, "label": "tiles"}),
        ({"start": "2026-06-01T12:00:00Z"}, {**DEFAULTS, "start": "2026-06-01T12:00:00Z"}),
    ],
    ids=["defaults", "nested-object", "list-of-objects", "list-of-lists", "choices",
         "pattern-and-lengths", "lookahead-pattern", "datetime"],
)
def test_valid_values_come_back_with_nested_defaults_applied(given, expected):
    assert validate(given) == expected


def test_an_object_default_is_validated_like_a_given_value():
    # Given "filter" left out, Then its default {} gets its own fields' defaults.
    assert validate({})["filter"] == {"extensions": ["tif"], "min_size": 0}
    assert job_id({}) == job_id({"filter": {"extensions": ["tif"], "min_size": 0}})


# --- errors with full paths ----------------------------------------------------------------

@pytest.mark.parametrize(
    "given, parameter, message",
    [
        ({"filter": {"extensions": ["tif", "png", 5]}}, "filter.extensions[2]",
         "Parameter 'filter.extensions[2]' must be a string, got integer (5)"),
        ({"filter": {"extensions": []}}, "filter.extensions",
         "Parameter 'filter.extensions' must have at least 1 item(s), got 0"),
        ({"filter": {"extensions": ["a1", "b", "c", "d"]}}, "filter.extensions",
         "Parameter 'filter.extensions' must have at most 3 item(s), got 4"),
        ({"filter": {"extensions": ["TIF"]}}, "filter.extensions[0]",
         "Parameter 'filter.extensions[0]' must match the pattern [a-z]{2,4}, got 'TIF'"),
        ({"filter": {"extensions": "tif"}}, "filter.extensions",
         "Parameter 'filter.extensions' must be a list, got string ('tif')"),
        ({"filter": {"min_size": -1}}, "filter.min_size",
         "Parameter 'filter.min_size' must be >= 0, got -1"),
        ({"filter": "tif"}, "filter", "Parameter 'filter' must be an object, got string ('tif')"),
        ({"bands": [{"name": "red"}, {"scale": 2.0}]}, "bands[1].name",
         "Parameter 'bands[1].name' is required"),
        ({"bands": [{"name": "red", "scale": "2"}]}, "bands[0].scale",
         "Parameter 'bands[0].scale' must be a number, got string ('2')"),
        ({"bands": [None]}, "bands[0]", "Parameter 'bands[0]' must be an object, got null (None)"),
        ({"grid": [[1], [2, "3"]]}, "grid[1][1]",
         "Parameter 'grid[1][1]' must be an integer, got string ('3')"),
        ({"speed": "medium"}, "speed",
         "Parameter 'speed' must be one of ['fast', 'slow'], got 'medium'"),
        ({"speed": 5}, "speed", "Parameter 'speed' must be a string, got integer (5)"),
        ({"level": 4}, "level", "Parameter 'level' must be one of [1, 2, 3], got 4"),
        ({"level": True}, "level", "Parameter 'level' must be an integer, got boolean (True)"),
        ({"code": "1ab"}, "code",
         "Parameter 'code' must match the pattern ^[a-z][a-z0-9_]*$, got '1ab'"),
        ({"code": "ab\n"}, "code",  # a full match: "$" does not let a trailing newline in
         "Parameter 'code' must match the pattern ^[a-z][a-z0-9_]*$, got 'ab\\n'"),
        ({"code": "a"}, "code", "Parameter 'code' must be at least 2 character(s) long, got 1"),
        ({"code": "abcdefghi"}, "code",
         "Parameter 'code' must be at most 8 character(s) long, got 9"),
        ({"label": "tmpfiles"}, "label",
         "Parameter 'label' must match the pattern (?!tmp)[a-z]+, got 'tmpfiles'"),
        ({"label": "files2"}, "label",  # the whole string must match, not a prefix
         "Parameter 'label' must match the pattern (?!tmp)[a-z]+, got 'files2'"),
        ({"start": "tomorrow"}, "start", "Parameter 'start' must be an ISO 8601 date-time, "
         "e.g. 2026-01-31T12:00:00Z, got string ('tomorrow')"),
        ({"start": 1767225600}, "start", "Parameter 'start' must be an ISO 8601 date-time, "
         "e.g. 2026-01-31T12:00:00Z, got integer (1767225600)"),
        ({"target_crs": 4326}, "target_crs",
         "Parameter 'target_crs' must be a string, got integer (4326)"),
    ],
)
def test_errors_name_the_full_path_and_what_is_allowed(given, parameter, message):
    error = rejection(given)
    assert error.parameter == parameter
    assert str(error) == message


def test_unknown_fields_of_a_nested_object_are_named_with_that_objects_allowed_fields():
    # Given typos inside "filter", When validated,
    error = rejection({"filter": {"extensions": ["tif"], "colour": "red", "cnt": 1}})
    # Then both are named by their full path, and the fields "filter" allows are listed.
    assert str(error) == ("Unknown parameter(s) 'filter.cnt', 'filter.colour'. "
                          "Allowed parameters in 'filter': extensions, min_size")
    assert error.parameter == "filter.cnt"


def test_unknown_fields_inside_a_list_of_objects_name_the_element():
    error = rejection({"bands": [{"name": "red"}, {"name": "nir", "gain": 2}]})
    assert str(error) == ("Unknown parameter(s) 'bands[1].gain'. "
                          "Allowed parameters in 'bands[1]': name, scale")


def test_a_null_inside_a_list_is_a_value_not_a_missing_one():
    error = rejection({"filter": {"extensions": ["tif", None]}})
    assert str(error) == "Parameter 'filter.extensions[1]' must be a string, got null (None)"


def test_a_null_for_a_required_nested_field_means_not_given():
    # The older rule (null means "not given") holds at every level.
    assert rejection({"bands": [{"name": None}]}).parameter == "bands[0].name"
    assert validate({"filter": {"min_size": None}})["filter"]["min_size"] == 0


# --- date-times ------------------------------------------------------------------------------

@pytest.mark.parametrize("given", ["2026-03-01T00:00:00", "2026-03-01T00:00:00Z",
                                   "2026-03-01T02:00:00+02:00", "2026-02-28T19:00:00-05:00",
                                   "2026-03-01"])
def test_a_datetime_without_a_zone_is_utc_and_every_spelling_gives_one_value_and_id(given):
    # Given the same instant written with no zone (UTC), with Z and with offsets,
    # Then the validated value is one ISO 8601 string in UTC, and the job id is one.
    assert validate({"start": given})["start"] == "2026-03-01T00:00:00Z"
    assert job_id({"start": given}) == job_id({"start": "2026-03-01T00:00:00Z"})


def test_fractions_of_a_second_are_kept():
    assert validate({"start": "2026-03-01T00:00:00.250+01:00"})["start"] == (
        "2026-02-28T23:00:00.250000Z")


@pytest.mark.parametrize(
    "given, accepted",
    [
        ("2026-01-01T00:00:00Z", True),            # exactly min
        ("2026-01-01T01:00:00+01:00", True),       # the same instant as min
        ("2026-01-01T00:59:59+01:00", False),      # later on the clock, earlier in UTC
        ("2025-12-31T23:30:00-01:00", True),       # earlier on the clock, later in UTC
        ("2026-12-31T23:59:59", True),             # exactly max, no zone means UTC
        ("2027-01-01T00:30:00+01:00", True),       # max, written one hour ahead
        ("2027-01-01T00:00:00+00:00", False),
    ],
)
def test_datetime_bounds_are_compared_as_aware_values(given, accepted):
    if accepted:
        assert validate({"start": given})["start"].endswith("Z")
    else:
        error = rejection({"start": given})
        assert error.parameter == "start"
        assert ("must be >= 2026-01-01T00:00:00Z" in str(error)
                or "must be <= 2026-12-31T23:59:59Z" in str(error))


def test_a_datetime_below_min_names_the_bound_in_utc():
    assert str(rejection({"start": "2025-12-31T23:59:59Z"})) == (
        "Parameter 'start' must be >= 2026-01-01T00:00:00Z, got 2025-12-31T23:59:59Z")


# --- nullable: null is a value, absent takes the default -------------------------------------

def test_null_for_a_nullable_field_is_kept_and_differs_from_absent():
    # Given "target_crs" nullable with a default: absent takes the default,
    absent = validate({})
    assert absent["target_crs"] == "EPSG:4326"
    # while an explicit null is kept as the value "none" (e.g. keep the source CRS),
    kept = validate({"target_crs": None})
    assert kept["target_crs"] is None
    # so the two are different jobs.
    assert job_id({}) != job_id({"target_crs": None})


def test_a_nullable_field_without_default_is_absent_when_absent_and_null_when_null():
    assert "source_crs" not in validate({})
    assert validate({"source_crs": None})["source_crs"] is None
    assert validate({"source_crs": "EPSG:3857"})["source_crs"] == "EPSG:3857"
    assert len({job_id({}), job_id({"source_crs": None}),
                job_id({"source_crs": "EPSG:3857"})}) == 3


def test_null_for_a_field_that_is_not_nullable_still_means_not_given():
    assert validate({"speed": None}) == DEFAULTS
    assert job_id({"speed": None}) == job_id({})


def test_a_required_nullable_field_accepts_null_but_not_absence():
    schema = {"crs": {"type": "str", "required": True, "nullable": True}}
    assert validate_parameters(schema, {"crs": None}) == {"crs": None}
    with pytest.raises(JobValidationError, match=r"^Parameter 'crs' is required$"):
        validate_parameters(schema, {})


def test_the_given_parameters_are_not_changed():
    given = {"bands": [{"name": "red", "scale": None}], "speed": None}
    validate(given)
    assert given == {"bands": [{"name": "red", "scale": None}], "speed": None}


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_datetime_out_of_range_once_in_utc_is_a_validation_error(value):
    # Given a date-time that exists in its own zone but not in UTC, When validated,
    # Then it is refused as bad input (a 400), never an OverflowError (a 503).
    with pytest.raises(JobValidationError) as raised:
        validate_parameters({"start": {"type": "datetime"}}, {"start": value})
    assert raised.value.parameter == "start"
