"""JobBaseMixin.generate_job_id: the same job (type and identifying parameters) always has
the same 64-hex id, so resubmitting finds it; anything else gets another id."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from jobs.hello_world import HelloWorldJob


def job_id(params: dict) -> str:
    return HelloWorldJob.generate_job_id(HelloWorldJob.validate_job_parameters(params))


class OtherJob(HelloWorldJob):
    """hello_world's schema under another job type."""

    job_type = "other_job"


def test_an_id_is_sha256_hex():
    assert re.fullmatch(r"[0-9a-f]{64}", job_id({"n": 3}))


def test_the_id_is_the_sha256_of_the_canonical_json_of_type_and_parameters():
    # The canonical form is a stored contract: changing it would give existing jobs new
    # ids after a deploy, and resubmits would create duplicates.
    canonical = '{"job_type":"hello_world","parameters":{"message":"Hello World","n":3}}'
    assert job_id({}) == hashlib.sha256(canonical.encode()).hexdigest()
    assert job_id({}) == "32b2aab1a6ba42af6fbcf1c66ca4ecfdd1f35843dc0942545912f53d7892cb8b"


def test_the_same_parameters_give_the_same_id():
    assert job_id({"n": 4, "message": "hi"}) == job_id({"n": 4, "message": "hi"})


def test_the_id_does_not_depend_on_key_order():
    forward = {"n": 4, "message": "hi", "failure_rate": 0.0}
    backward = dict(reversed(list(forward.items())))
    assert list(forward) != list(backward)
    assert HelloWorldJob.generate_job_id(forward) == HelloWorldJob.generate_job_id(backward)


def test_defaults_given_explicitly_give_the_same_id_as_defaults_left_out():
    assert job_id({}) == job_id({"n": 3, "message": "Hello World"})


@pytest.mark.parametrize("changed", [{"n": 4}, {"message": "Hello World!"}, {"n": 30}])
def test_different_parameters_give_a_different_id(changed):
    assert job_id(changed) != job_id({})


def test_the_job_type_is_part_of_the_id():
    params = HelloWorldJob.validate_job_parameters({"n": 3})
    assert OtherJob.generate_job_id(params) != HelloWorldJob.generate_job_id(params)


def test_failure_rate_is_left_out_of_hello_worlds_id():
    # A test knob, not a different job (id_excluded_parameters).
    assert "failure_rate" in HelloWorldJob.id_excluded_parameters
    assert job_id({"n": 2, "failure_rate": 0.9}) == job_id({"n": 2, "failure_rate": 0.0})


def test_unicode_is_hashed_as_utf8_however_the_request_escaped_it():
    # Given the same text sent as \u escapes and as raw UTF-8,
    # Then both requests name the same job, hashed over unescaped UTF-8.
    escaped = json.loads('{"message": "h\\u00e9llo \\u4e16\\u754c"}')
    raw = json.loads('{"message": "héllo 世界"}'.encode("utf-8"))
    assert job_id(escaped) == job_id(raw)
    canonical = '{"job_type":"hello_world","parameters":{"message":"héllo 世界","n":3}}'
    assert job_id(raw) == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
