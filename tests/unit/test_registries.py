"""ALL_JOBS and ALL_HANDLERS, and the start-up check that refuses an inconsistent pair,
naming the job, the stage and the problem."""

from __future__ import annotations

from typing import Any

import pytest

from core.machine import CoreMachine
from core.registry import CONTRACT_METHODS, validate_registries
from exceptions import RegistryError
from jobs import ALL_JOBS
from jobs.base import JobBase
from jobs.hello_world import HelloWorldJob
from jobs.mixins import JobBaseMixin
from services import ALL_HANDLERS, validate_handler_registry

HANDLERS = {"first": lambda params, context: {}, "second": lambda params, context: {}}


def _create_tasks_for_stage(stage, job_params, job_id, previous_results=None):
    return [{"parameters": {}}]


def _finalize_job(context):
    return {}


def make_job(bases: tuple = (JobBaseMixin, JobBase), **attrs: Any) -> type:
    """A valid two-stage job, with attrs overriding its declaration."""
    namespace = {
        "job_type": "sample",
        "description": "A sample job",
        "stages": [
            {"number": 1, "name": "one", "task_type": "first", "parallelism": "single"},
            {"number": 2, "name": "two", "task_type": "second", "parallelism": "fan_in"},
        ],
        "parameters_schema": {"n": {"type": "int", "default": 1}},
        "create_tasks_for_stage": staticmethod(_create_tasks_for_stage),
        "finalize_job": staticmethod(_finalize_job),
    }
    namespace.update(attrs)
    return type("SampleJob", bases, namespace)


def refused(job: Any, key: str = "sample", handlers: dict = HANDLERS) -> str:
    with pytest.raises(RegistryError) as raised:
        validate_registries({key: job}, handlers)
    return str(raised.value)


def test_the_registries_are_plain_dicts_and_consistent():
    assert type(ALL_JOBS) is dict and type(ALL_HANDLERS) is dict
    assert ALL_JOBS["hello_world"] is HelloWorldJob
    validate_registries(ALL_JOBS, ALL_HANDLERS)
    validate_registries({"sample": make_job()}, HANDLERS)


def test_a_task_type_without_a_handler_is_refused_naming_job_stage_and_task_type():
    message = refused(make_job(), handlers={"first": HANDLERS["first"]})
    assert "Job 'sample' stage 2 ('two')" in message
    assert "task type 'second'" in message
    assert "Registered task types: first" in message


def test_a_cleanup_task_type_without_a_handler_is_refused_naming_it():
    # Given a job whose cleanup task type has no handler, When the app starts,
    message = refused(make_job(cleanup_task_type="sample_cleanup"))
    # Then it refuses, naming the job, the cleanup task type and the registered ones.
    assert message == ("Job 'sample' declares cleanup task type 'sample_cleanup', which has "
                       "no handler in ALL_HANDLERS (services/__init__.py). Registered task "
                       "types: first, second")
    # and with the handler registered, it starts.
    validate_registries({"sample": make_job(cleanup_task_type="first")}, HANDLERS)


@pytest.mark.parametrize("value", ["", 5])
def test_a_cleanup_task_type_that_is_not_a_name_is_refused(value):
    assert "cleanup_task_type" in refused(make_job(cleanup_task_type=value))


def test_the_machine_refuses_a_missing_cleanup_handler_at_start_up():
    with pytest.raises(RegistryError, match="cleanup task type 'sample_cleanup'"):
        CoreMachine(all_jobs={"sample": make_job(cleanup_task_type="sample_cleanup")},
                    all_handlers=HANDLERS)


def test_hello_world_without_its_reply_handler_is_refused():
    handlers = {"hello_world_greeting": ALL_HANDLERS["hello_world_greeting"]}
    with pytest.raises(RegistryError, match=r"stage 2 \('reply'\).*'hello_world_reply'"):
        validate_registries(ALL_JOBS, handlers)


@pytest.mark.parametrize(
    "stages, problem",
    [
        ([], "must declare a non-empty list of stages"),
        ([{"number": 0, "name": "one", "task_type": "first"}],
         "stage 1 has number 0; stages are numbered 1, 2, ... in order"),
        ([{"number": 1, "name": "one", "task_type": "first"},
          {"number": 3, "name": "two", "task_type": "second"}],
         "stage 2 has number 3"),
        ([{"number": 1, "name": "one", "task_type": "first"},
          {"name": "two", "task_type": "second"}],
         "stage 2 has number None"),
        ([{"number": 1, "name": "one", "task_type": "first", "parallelism": "scatter"}],
         "stage 1 ('one') has parallelism 'scatter'; allowed: single, fan_out, fan_in, "
         "dynamic, match_previous"),
        ([{"number": 1, "name": "one", "task_type": "first", "parallelism": "fan_in"}],
         "stage 1 ('one') is fan_in but has no previous stage"),
        ([{"number": 1, "name": "one", "task_type": "first", "parallelism": "match_previous"}],
         "stage 1 ('one') is match_previous but has no previous stage"),
        ([{"number": 1, "task_type": "first"}], "stage 1 has no name"),
        ([{"number": 1, "name": "one"}], "stage 1 ('one') names no task_type"),
        (["one"], "stage 1 must be a dict"),
    ],
    ids=["empty", "starts-at-0", "gap", "unnumbered", "unknown-parallelism", "fan-in-first",
         "match-previous-first", "no-name", "no-task-type", "not-a-dict"],
)
def test_bad_stage_declarations_are_refused(stages, problem):
    message = refused(make_job(stages=stages))
    assert "Job 'sample'" in message
    assert problem in message


@pytest.mark.parametrize("description", [None, ""])
def test_a_job_without_a_description_is_refused(description):
    assert refused(make_job(description=description)) == (
        "Job 'sample' (SampleJob) has no description")


def test_the_registry_key_must_be_the_job_type():
    message = refused(make_job(), key="samples")
    assert message == "ALL_JOBS key 'samples' does not match SampleJob.job_type 'sample'"


def test_a_registry_value_must_be_a_job_class():
    assert "must be a job class" in refused(make_job()())


def test_a_job_missing_a_contract_method_is_refused_naming_it():
    # Given a class that does not derive from JobBase and lacks finalize_job,
    job = make_job(bases=(JobBaseMixin,))
    del job.finalize_job
    # Then the check names the missing method.
    assert refused(job) == "Job 'sample' (SampleJob) does not implement finalize_job"


def test_a_jobbase_subclass_with_an_abstract_method_left_is_refused_naming_it():
    class SampleJob(JobBaseMixin, JobBase):
        job_type = "sample"
        description = "A sample job"
        stages = [{"number": 1, "name": "one", "task_type": "first"}]
        finalize_job = staticmethod(_finalize_job)

    assert refused(SampleJob) == (
        "Job 'sample' (SampleJob) does not implement create_tasks_for_stage")


@pytest.mark.parametrize(
    "schema, problem",
    [
        ({"n": {"type": "int", "minimum": 1}},
         "SampleJob.parameters_schema['n'] has unknown keys ['minimum']; allowed: "),
        ({"n": {"type": "integer"}},
         "SampleJob.parameters_schema['n'] has type 'integer'; allowed: "
         "['int', 'float', 'str', 'bool', 'datetime', 'list', 'object']"),
        ({"n": "int"}, "SampleJob.parameters_schema['n'] must be a dict"),
        (["n"], "SampleJob.parameters_schema must be a dict"),
    ],
)
def test_a_bad_parameters_schema_is_refused_naming_the_problem(schema, problem):
    assert problem in refused(make_job(parameters_schema=schema))


@pytest.mark.parametrize(
    "rule, problem",
    [
        ({"type": "int", "default": "3"}, "SampleJob.parameters_schema['n']: the default "
         "breaks its own rule: Parameter 'n' must be an integer, got string"),
        ({"type": "int", "min": 5, "default": 1}, "the default breaks its own rule"),
        ({"type": "str", "min": 1}, "min and max apply only to int and float"),
        ({"type": "int", "max": "10"}, "max must be an integer"),
        ({"type": "str", "allowed": "abc"}, "allowed must be a non-empty list"),
        ({"type": "str", "allowed": []}, "allowed must be a non-empty list"),
        ({"type": "str", "allowed": ["a", 1]}, "allowed value 1 is not a string"),
    ],
    ids=["default-of-wrong-type", "default-below-min", "min-on-str", "max-not-a-number",
         "allowed-a-string", "allowed-empty", "allowed-mixed-types"],
)
def test_a_rule_that_cannot_work_is_refused_at_start_up(rule, problem):
    # A schema mistake must fail at start-up, not as a TypeError (or a silently wrong
    # default) when the first request arrives.
    assert problem in refused(make_job(parameters_schema={"n": rule}))


def test_core_machine_refuses_a_bad_registry():
    with pytest.raises(RegistryError, match="task type 'second'"):
        CoreMachine(all_jobs={"sample": make_job()}, all_handlers={"first": HANDLERS["first"]})
    with pytest.raises(RegistryError, match="no description"):
        CoreMachine(all_jobs={"sample": make_job(description="")}, all_handlers=HANDLERS)


def test_a_handler_registry_entry_must_be_callable():
    with pytest.raises(RegistryError, match=r"ALL_HANDLERS\['x'\] is not callable"):
        validate_handler_registry({"x": "not a function"})


@pytest.mark.parametrize("method", ["validate_job_parameters", "generate_job_id",
                                    "create_job_record", "queue_job"])
def test_hello_world_takes_the_four_boilerplate_methods_from_the_mixin(method):
    mro = HelloWorldJob.__mro__
    assert mro.index(JobBaseMixin) < mro.index(JobBase)
    assert getattr(HelloWorldJob, method).__func__ is getattr(JobBaseMixin, method).__func__


def test_hello_world_is_concrete_and_implements_every_contract_method():
    assert not HelloWorldJob.__abstractmethods__
    assert all(callable(getattr(HelloWorldJob, m)) for m in CONTRACT_METHODS)


def test_a_job_declared_base_first_is_still_abstract_and_refused():
    # Given the bases the wrong way round, JobBase's abstract methods shadow the mixin's:
    job = make_job(bases=(JobBase, JobBaseMixin))
    assert job.__mro__.index(JobBase) < job.__mro__.index(JobBaseMixin)
    assert sorted(job.__abstractmethods__) == [
        "create_job_record", "generate_job_id", "queue_job", "validate_job_parameters"]
    # calling one would silently run the abstract body,
    assert job.validate_job_parameters({"n": 1}) is None
    # so the registry refuses the job, naming what it does not implement.
    assert refused(job) == (
        "Job 'sample' (SampleJob) does not implement create_job_record, generate_job_id, "
        "queue_job, validate_job_parameters")


def test_requires_names_a_known_requirement():
    validate_registries({"sample": make_job(requires=("postgis",))}, HANDLERS)
    with pytest.raises(RegistryError, match=r"Job 'sample' requires \['pgvector'\]; known "
                                            r"requirements: postgis"):
        validate_registries({"sample": make_job(requires=("pgvector",))}, HANDLERS)
    with pytest.raises(RegistryError, match="requires must be a tuple of names"):
        validate_registries({"sample": make_job(requires="postgis")}, HANDLERS)
