"""What handlers and finalize_job may return: a dict that PostgreSQL's jsonb can store.
Anything else fails the task (or completes the job with errors) with a message; nothing may
leave a job stuck."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from infrastructure.repositories import TaskRepository
from tests.integration.sample_jobs import ITEMS_HANDLERS, ItemsJob


class FinalizeReturnsJob(ItemsJob):
    """finalize_job returns whatever the job's `value` parameter selects."""

    job_type = "finalize_returns"
    parameters_schema = {**ItemsJob.parameters_schema,
                         "value": {"type": "str", "allowed": ["nan", "nul"]}}

    @staticmethod
    def finalize_job(context):
        return {"value": {"nan": math.nan, "nul": "a\x00b"}[context.parameters["value"]]}


def run_with_result(engine, result: dict) -> dict:
    """Run an ItemsJob whose one stage 2 task returns `result`."""
    handlers = {**ITEMS_HANDLERS, "process_item": lambda params, context: result}
    return engine.with_jobs({"items": ItemsJob}, handlers).run("items", {"count": 1})


def stage_two_task(database, job_id: str) -> dict:
    with database.connection() as conn:
        [task] = TaskRepository().list_tasks(conn, job_id, 2)
    return task


def test_values_json_cannot_hold_are_stored_as_json(database, engine):
    # Given a result with a tuple and a datetime, Then it is stored as JSON would hold it.
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    job = run_with_result(engine, {"processed": "x", "pair": (1, 2), "when": when})
    assert job["status"] == "completed", job["error_details"]
    assert stage_two_task(database, job["job_id"])["result_data"] == {
        "processed": "x", "pair": [1, 2], "when": str(when)}


@pytest.mark.parametrize("result, why", [
    ({"processed": math.nan}, "ContractViolationError: handler for 'process_item' returned a "
                              "value JSON cannot hold: Out of range float values"),
    ({"processed": "a\x00b"}, "ContractViolationError: handler for 'process_item' returned "
                              "text with a NUL character"),
    ({"processed": {"a\x00": 1}}, "ContractViolationError: handler for 'process_item' "
                                  "returned text with a NUL character"),
], ids=["nan", "nul-in-value", "nul-in-key"])
def test_a_result_jsonb_cannot_store_fails_the_task_with_the_reason(database, engine, result,
                                                                    why):
    job = run_with_result(engine, result)
    assert job["status"] == "failed"
    task = stage_two_task(database, job["job_id"])
    assert task["status"] == "failed" and task["error_details"].startswith(why)


def test_text_that_only_looks_like_an_escaped_nul_is_kept(database, engine):
    text = "C:\\u0000\\dir"  # a backslash, then 'u0000': no NUL character
    assert "\x00" not in text
    job = run_with_result(engine, {"processed": "x", "path": text})
    assert job["status"] == "completed", job["error_details"]
    assert stage_two_task(database, job["job_id"])["result_data"]["path"] == text


def test_finalize_returning_nan_completes_the_job_with_errors(engine):
    eng = engine.with_jobs({"finalize_returns": FinalizeReturnsJob}, ITEMS_HANDLERS)
    job = eng.run("finalize_returns", {"count": 1, "value": "nan"})
    assert job["status"] == "completed_with_errors"
    assert job["error_details"].startswith(
        "finalize_job failed: ContractViolationError: FinalizeReturnsJob.finalize_job returned "
        "a value JSON cannot hold: Out of range float")


def test_finalize_returning_a_nul_completes_the_job_with_errors(engine):
    eng = engine.with_jobs({"finalize_returns": FinalizeReturnsJob}, ITEMS_HANDLERS)
    job = eng.run("finalize_returns", {"count": 1, "value": "nul"})
    assert job["status"] == "completed_with_errors"
    assert "NUL" in job["error_details"]
