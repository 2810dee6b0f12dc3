"""The HTTP functions, called as the Python worker calls them: the registered user function
with a real azure.functions.HttpRequest, against a real database."""

from __future__ import annotations

import json

import azure.functions as func
import pytest

from jobs import ALL_JOBS
from services import ALL_HANDLERS

from tests.http_calls import call, status, submit
from jobs.hello_world import HelloWorldJob
from triggers import health
from triggers.runtime import core_machine

health_fn = health.health.build().get_user_function()
details_fn = health.health_details.build().get_user_function()


def job_count(database) -> int:
    with database.connection() as conn:
        return conn.execute("SELECT count(*) AS n FROM app.jobs").fetchone()["n"]


def test_submit_creates_a_job_and_status_shows_it(database):
    code, body = submit("hello_world", '{"n": 4}')
    assert code == 201
    assert body["status"] == "queued" and body["idempotent"] is False
    assert len(body["job_id"]) == 64 and body["parameters"]["n"] == 4

    code, job = status(body["job_id"])
    assert code == 200
    for key in ("job_id", "job_type", "status", "stage", "total_stages", "parameters",
                "stage_results", "result_data", "error_details", "created_at", "updated_at"):
        assert key in job
    assert [(s["stage"], s["name"], s["state"]) for s in job["stages"]] == [
        (1, "greeting", "running"), (2, "reply", "pending")]
    assert all(isinstance(s[k], int) for s in job["stages"]
               for k in ("total", "queued", "processing", "completed", "failed", "cancelled"))


def test_empty_body_means_all_defaults(database):
    code, body = submit("hello_world", b"", content_type=None)
    assert code == 201
    assert body["parameters"] == {"n": 3, "message": "Hello World", "failure_rate": 0.0, "sleep_seconds": 0.0}


def test_same_parameters_return_the_same_job(database):
    _, first = submit("hello_world", '{"n": 2}')
    code, second = submit("hello_world", '{"n": 2}')
    assert code == 200
    assert second["job_id"] == first["job_id"] and second["idempotent"] is True
    assert job_count(database) == 1


def test_a_completed_job_resubmitted_returns_its_result(engine):
    job = engine.run("hello_world", {"n": 2})
    code, body = submit("hello_world", '{"n": 2}')
    assert code == 200 and body["job_id"] == job["job_id"]
    assert body["status"] == "completed" and len(body["result_data"]["replies"]) == 2


def test_unknown_job_type_is_404_naming_the_available_ones(database):
    code, body = submit("no_such_job", "{}")
    assert code == 404
    assert "no_such_job" in body["error"]
    assert body["available_job_types"] == sorted(ALL_JOBS) and "hello_world" in sorted(ALL_JOBS)


@pytest.mark.parametrize("raw, fragment", [
    ('{"n": ', "not valid JSON"),
    ('{"n": NaN}', "NaN"),
    ('{"n": Infinity}', "Infinity"),
    ('{"n": -Infinity}', "Infinity"),
    ('[1, 2]', "JSON object of parameters, e.g. {\"name\": value}, not array"),
    ('"text"', "JSON object"),
    ('null', "not null"),
    ('{"message": "a\\u0000b"}', "NUL"),
    ('{"message": "\\ud800"}', "surrogate"),
    ('{"a\\u0000": 1}', "NUL"),
    ('{"n": "5"}', "'n' must be an integer"),
    ('{"n": true}', "'n' must be an integer"),
    ('{"n": 0}', "'n' must be >= 1"),
    ('{"n": 1001}', "'n' must be <= 1000"),
    ('{"failure_rate": 2}', "'failure_rate' must be <= 1.0"),
    ('{"nn": 3}', "Unknown parameter(s) 'nn'"),
    ('{"message": ' + "[" * 40 + "]" * 40 + "}", "nested deeper"),
])
def test_bad_input_is_400_and_stores_nothing(database, raw, fragment):
    code, body = submit("hello_world", raw)
    assert code == 400, body
    assert fragment in body["error"]
    assert job_count(database) == 0


def test_invalid_utf8_is_400(database):
    code, body = submit("hello_world", b'{"message": "\xff\xfe"}')
    assert code == 400 and "UTF-8" in body["error"]
    assert job_count(database) == 0


def test_validation_error_names_the_parameter_and_the_rules(database):
    code, body = submit("hello_world", '{"n": 0}')
    assert code == 400
    assert body["parameter"] == "n"
    assert body["parameters_schema"]["n"] == {"type": "int", "min": 1, "max": 1000, "default": 3}


def test_a_jobs_own_check_raising_value_error_is_a_400_naming_it(database, monkeypatch):
    # Given a job whose validate_job_parameters checks across parameters with ValueError,
    class RangeJob(HelloWorldJob):
        job_type = "range_job"
        parameters_schema = {"low": {"type": "int"}, "high": {"type": "int"}}

        @classmethod
        def validate_job_parameters(cls, params):
            validated = super().validate_job_parameters(params)
            if validated["low"] >= validated["high"]:
                raise ValueError("low must be below high")
            return validated

    monkeypatch.setitem(core_machine.jobs_registry, "range_job", RangeJob)
    # Then breaking that rule is a 400 naming it (not a 503 blaming the database),
    code, body = submit("range_job", '{"low": 5, "high": 1}')
    assert code == 400, body
    assert body["error"] == "range_job: low must be below high"
    assert body["parameters_schema"] == RangeJob.parameters_schema
    # and nothing is stored.
    assert job_count(database) == 0


def test_oversized_body_is_413(database, monkeypatch):
    monkeypatch.setenv("MAX_REQUEST_BYTES", "2048")
    from config import reset_settings

    reset_settings()
    code, body = submit("hello_world", json.dumps({"message": "x" * 5000}))
    assert code == 413 and body["limit_bytes"] == 2048
    assert job_count(database) == 0


def test_wrong_content_type_is_415(database):
    code, body = submit("hello_world", '{"n": 2}', content_type="text/plain")
    assert code == 415 and "application/json" in body["error"]


def test_sql_looking_text_is_ordinary_data(engine):
    text = "'); DROP TABLE app.jobs; --"
    code, body = submit("hello_world", json.dumps({"message": text, "n": 1}))
    assert code == 201
    engine.drain()
    code, job = status(body["job_id"])
    assert job["parameters"]["message"] == text
    assert job["result_data"]["greetings"] == [f"{text} from task 0!"]


@pytest.mark.parametrize("job_id", ["abc", "g" * 64, "A" * 63, "0" * 65, "../../etc"])
def test_malformed_job_id_is_400(database, job_id):
    code, body = status(job_id)
    assert code == 400 and "64" in body["error"]


def test_unknown_job_id_is_404(database):
    code, body = status("0" * 64)
    assert code == 404 and "0" * 64 in body["error"]


def get(fn, path):
    return call(fn, func.HttpRequest("GET", path, body=b""))


def test_health_says_only_up(database):
    assert get(health_fn, "/api/health") == (200, {"status": "up"})


def test_health_details_report_database_and_registries(database):
    code, body = get(details_fn, "/api/health/details")
    assert code == 200
    assert body["database"] == "reachable" and body["queue_backend"] == "embedded"
    assert body["job_types"] == sorted(ALL_JOBS) and "summarize_container" in body["job_types"]
    assert body["task_types"] == sorted(ALL_HANDLERS)
    assert {"hello_world_greeting", "hello_world_reply", "analyze_blob"} <= set(
        body["task_types"])


def test_health_is_503_when_the_database_is_unreachable(monkeypatch):
    from config import reset_settings
    from infrastructure.db import set_database

    set_database(None)
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    reset_settings()
    try:
        assert get(health_fn, "/api/health") == (503, {"status": "down"})
        code, body = get(details_fn, "/api/health/details")
        assert code == 503 and body["database"] == "unreachable"
    finally:
        set_database(None)
        reset_settings()


def test_submit_is_503_not_500_when_the_database_is_unreachable(monkeypatch):
    from config import reset_settings
    from infrastructure.db import set_database

    set_database(None)
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    reset_settings()
    try:
        code, body = submit("hello_world", '{"n": 2}')
        assert code == 503 and "try again" in body["error"]
    finally:
        set_database(None)
        reset_settings()
