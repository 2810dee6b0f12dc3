"""Start-up checks of submit checks and cleanup task types (core/registry.py): a mistake
is refused when the registries load, naming the job, the check and what is wrong. And how
core/submit_checks.py runs declared checks, against resources of the test's own (no
database)."""

from __future__ import annotations

from typing import Any

import pytest

from core.registry import validate_registries
from core.submit_checks import check_requirements, identity_values
from exceptions import RegistryError, RequirementError, ResourceUnavailableError
from jobs.base import JobBase
from jobs.declarations import SubmitCheck
from jobs.mixins import JobBaseMixin

HANDLERS = {"load": lambda params, context: {}, "drop_staging": lambda params, context: {}}
TABLE = {"schema": "schema", "table": "table_name"}


def fingerprint(resources, schema, table):
    return f"{schema}.{table}:v1"


def make_job(**attrs: Any) -> type:
    namespace = {
        "job_type": "ingest", "description": "Load a table",
        "stages": [{"number": 1, "name": "load", "task_type": "load"}],
        "parameters_schema": {"schema": {"type": "str", "default": "staging"},
                              "table_name": {"type": "str"},
                              "if_exists": {"type": "str", "default": "fail"}},
        "create_tasks_for_stage": staticmethod(lambda stage, p, job_id, prev=None: []),
        "finalize_job": staticmethod(lambda context: {}),
    }
    namespace.update(attrs)
    return type("IngestJob", (JobBaseMixin, JobBase), namespace)


def refused(**attrs: Any) -> str:
    with pytest.raises(RegistryError) as raised:
        validate_registries({"ingest": make_job(**attrs)}, HANDLERS)
    return str(raised.value)


def test_valid_declarations_are_accepted():
    validate_registries({"ingest": make_job(
        submit_checks=(
            SubmitCheck("table_absent", parameter="table_name", arguments=TABLE,
                        when=lambda p: p["if_exists"] == "fail"),
            SubmitCheck("table_exists", parameter="schema",
                        arguments={"schema": "schema", "table": "table_name"}),
            SubmitCheck(fingerprint, parameter="table_name", arguments=TABLE,
                        identity="table_version"),
        ),
        cleanup_task_type="drop_staging")}, HANDLERS)


def test_a_cleanup_task_type_without_a_handler_is_refused_naming_it():
    message = refused(cleanup_task_type="drop_temp")
    assert "Job 'ingest'" in message
    assert "cleanup task type 'drop_temp', which has no handler in ALL_HANDLERS" in message


@pytest.mark.parametrize("value", ["", 42])
def test_a_cleanup_task_type_that_names_nothing_is_refused(value):
    assert "must name a task type" in refused(cleanup_task_type=value)


def test_an_unknown_check_name_is_refused_naming_the_known_ones():
    message = refused(submit_checks=(
        SubmitCheck("table_missing", parameter="table_name", arguments=TABLE),))
    assert "Job 'ingest' submit_checks[0] names check 'table_missing'" in message
    assert ("known checks: blob_etag, container_exists, geo_table_absent, geo_table_exists, "
            "geo_vector_table, table_absent, table_exists") in message


@pytest.mark.parametrize("arguments", [
    {"table": "table_name"},
    {"schema": "schema", "table": "table_name", "database": "schema"},
    {"schema_name": "schema", "table": "table_name"},
])
def test_wrong_arguments_for_a_named_check_are_refused(arguments):
    message = refused(submit_checks=(
        SubmitCheck("table_exists", parameter="table_name", arguments=arguments),))
    assert ("submit_checks[0] ('table_exists') takes arguments ['schema', 'table'], "
            f"declared {sorted(arguments)}") in message


@pytest.mark.parametrize("parameter, arguments, unknown", [
    ("table", TABLE, ["table"]),
    ("table_name", {"schema": "schema_name", "table": "table_name"}, ["schema_name"]),
])
def test_a_check_naming_a_parameter_the_schema_lacks_is_refused(parameter, arguments,
                                                                 unknown):
    message = refused(submit_checks=(
        SubmitCheck("table_absent", parameter=parameter, arguments=arguments),))
    assert (f"submit_checks[0] (table_absent) refers to parameter(s) {unknown} that "
            "parameters_schema does not declare") in message


def test_a_function_checks_parameters_are_checked_too():
    message = refused(submit_checks=(
        SubmitCheck(fingerprint, parameter="table_name", arguments={"table": "tbl"}),))
    assert "(fingerprint) refers to parameter(s) ['tbl']" in message


def test_an_identity_clashing_with_a_parameter_is_refused():
    message = refused(submit_checks=(
        SubmitCheck(fingerprint, parameter="table_name", arguments=TABLE,
                    identity="if_exists"),))
    assert "has identity 'if_exists', which is already a parameter's" in message


def test_two_checks_with_one_identity_are_refused():
    check = SubmitCheck(fingerprint, parameter="table_name", arguments=TABLE,
                        identity="version")
    message = refused(submit_checks=(check, check))
    assert "submit_checks[1] (fingerprint) has identity 'version'" in message


@pytest.mark.parametrize("checks, problem", [
    ({"check": "table_exists"}, "must be a list of SubmitCheck"),
    (("table_exists",), "submit_checks[0] is str; it must be a SubmitCheck"),
    ((SubmitCheck(42, parameter="table_name"),),
     "check must be a check's name or a function"),
])
def test_malformed_declarations_are_refused(checks, problem):
    assert problem in refused(submit_checks=checks)


# -- running them, with resources of the test's own ------------------------------------
class FakeTables:
    def __init__(self, *existing: str, error: Exception | None = None):
        self.existing, self.error, self.asked = set(existing), error, []

    def exists(self, schema, table):
        self.asked.append(f"{schema}.{table}")
        if self.error:
            raise self.error
        return f"{schema}.{table}" in self.existing


class FakeResources:
    def __init__(self, tables: FakeTables):
        self.tables = tables


ABSENT_UNLESS_REPLACE = SubmitCheck("table_absent", parameter="table_name", arguments=TABLE,
                                    when=lambda p: p["if_exists"] == "fail")


def test_a_failed_named_check_names_the_parameter_its_value_and_the_resource():
    job = make_job(submit_checks=(ABSENT_UNLESS_REPLACE,))
    params = {"schema": "staging", "table_name": "roads", "if_exists": "fail"}
    with pytest.raises(RequirementError) as raised:
        check_requirements(job, params, FakeResources(FakeTables("staging.roads")))
    assert str(raised.value) == ("Parameter 'table_name' ('roads'): table staging.roads "
                                 "already exists")
    assert (raised.value.parameter, raised.value.resource) == ("table_name", "staging.roads")


def test_when_false_or_a_null_argument_skips_the_check():
    job = make_job(submit_checks=(ABSENT_UNLESS_REPLACE,))
    tables = FakeTables("staging.roads")
    check_requirements(job, {"schema": "staging", "table_name": "roads",
                             "if_exists": "replace"}, FakeResources(tables))
    check_requirements(job, {"schema": None, "table_name": "roads", "if_exists": "fail"},
                       FakeResources(tables))
    assert tables.asked == []


def test_identity_and_requirement_checks_run_apart():
    job = make_job(submit_checks=(
        ABSENT_UNLESS_REPLACE,
        SubmitCheck(fingerprint, parameter="table_name", arguments=TABLE,
                    identity="table_version")))
    params = {"schema": "staging", "table_name": "roads", "if_exists": "fail"}
    tables = FakeTables()
    assert identity_values(job, params, FakeResources(tables)) == {
        "table_version": "staging.roads:v1"}
    assert tables.asked == []  # the requirement check did not run with the identity one
    check_requirements(job, params, FakeResources(tables))
    assert tables.asked == ["staging.roads"]


@pytest.mark.parametrize("error", [ConnectionError("refused"), OSError("no route"),
                                   TimeoutError("timed out")])
def test_a_check_function_raising_a_transient_error_is_resource_unavailable(error):
    def probe(resources, table):
        raise error

    job = make_job(submit_checks=(SubmitCheck(probe, parameter="table_name",
                                              arguments={"table": "table_name"}),))
    with pytest.raises(ResourceUnavailableError) as raised:
        check_requirements(job, {"table_name": "roads"}, FakeResources(FakeTables()))
    assert "submit check probe for parameter 'table_name' could not reach" in str(
        raised.value)
    assert raised.value.__cause__ is error
