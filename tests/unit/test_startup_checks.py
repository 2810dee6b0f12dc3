"""Start-up refuses time limits that cannot hold: FUNCTION_TIMEOUT_SECONDS must mirror
host.json's functionTimeout, and every stage's timeout must fit in one invocation; the
stage options a job declares are checked, naming the stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config import Settings
from core.registry import validate_registries
from core.startup import check_function_timeout, check_stage_timeouts, host_function_timeout
from exceptions import ConfigurationError, RegistryError
from jobs import ALL_JOBS
from services import ALL_HANDLERS

ROOT = Path(__file__).resolve().parents[2]


def settings(**values) -> Settings:
    return Settings(**{k.upper(): str(v) for k, v in values.items()})


def host(tmp_path, timeout) -> Path:
    path = tmp_path / "host.json"
    body = {"version": "2.0"}
    if timeout is not None:
        body["functionTimeout"] = timeout
    path.write_text(json.dumps(body))
    return path


def job_with(**stage_options):
    base = ALL_JOBS["hello_world"]
    return type("TimedJob", (base,), {"stages": [
        {**base.stages[0], **stage_options}, base.stages[1]]})


def test_the_shipped_host_json_agrees_with_the_default_setting():
    assert host_function_timeout(ROOT / "host.json") == Settings().function_timeout_seconds
    check_function_timeout(ROOT / "host.json", Settings())


def test_a_setting_that_differs_from_host_json_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="FUNCTION_TIMEOUT_SECONDS is 300 but .*"
                                                 "functionTimeout is 600"):
        check_function_timeout(host(tmp_path, "00:10:00"), settings(function_timeout_seconds=300))
    check_function_timeout(host(tmp_path, "00:05:00"), settings(function_timeout_seconds=300))


def test_host_json_without_a_function_timeout_is_refused_and_minus_one_means_none(tmp_path):
    with pytest.raises(ConfigurationError, match="sets no functionTimeout"):
        check_function_timeout(host(tmp_path, None), Settings())
    check_function_timeout(host(tmp_path, "-1"), settings(function_timeout_seconds=3600))


def test_a_stage_timeout_longer_than_an_invocation_is_refused_naming_the_stage():
    jobs = {"hello_world": job_with(timeout_seconds=900)}
    with pytest.raises(RegistryError, match=r"Job 'hello_world' stage 1 \('greeting'\): its "
                                            r"timeout_seconds of 900 s is longer"):
        check_stage_timeouts(jobs, Settings())
    # One that fits in functionTimeout but not in what the reserve leaves is refused too.
    with pytest.raises(RegistryError, match="less INVOCATION_RESERVE_SECONDS"):
        check_stage_timeouts({"hello_world": job_with(timeout_seconds=590)}, Settings())
    check_stage_timeouts({"hello_world": job_with(timeout_seconds=570)}, Settings())


def test_the_default_task_timeout_is_checked_too():
    with pytest.raises(RegistryError, match="TASK_TIMEOUT_SECONDS"):
        check_stage_timeouts(ALL_JOBS, settings(task_timeout_seconds=700))


def test_core_machine_refuses_to_start_with_such_a_stage():
    from core.machine import CoreMachine

    with pytest.raises(RegistryError, match="stage 1"):
        CoreMachine({"hello_world": job_with(timeout_seconds=1000)}, ALL_HANDLERS)


@pytest.mark.parametrize("options, message", [
    ({"max_concurrency": 0}, "max_concurrency 0"),
    ({"max_concurrency": 2.5}, "max_concurrency 2.5"),
    ({"max_concurrency": True}, "max_concurrency True"),
    ({"on_task_failure": "ignore"}, "on_task_failure 'ignore'; allowed: fail, continue"),
    ({"max_failed_fraction": 0.1}, "max_failed_fraction without on_task_failure"),
    ({"on_task_failure": "continue", "max_failed_fraction": 1.5}, "max_failed_fraction 1.5"),
    ({"timeout_seconds": 0}, "timeout_seconds 0"),
    ({"timeout_seconds": "60"}, "timeout_seconds '60'"),
])
def test_stage_options_are_checked(options, message):
    with pytest.raises(RegistryError, match=r"stage 1 \('greeting'\)") as raised:
        validate_registries({"hello_world": job_with(**options)}, ALL_HANDLERS)
    assert message in str(raised.value)


def test_valid_stage_options_are_accepted():
    validate_registries({"hello_world": job_with(
        max_concurrency=4, on_task_failure="continue", max_failed_fraction=0.25,
        timeout_seconds=60)}, ALL_HANDLERS)
