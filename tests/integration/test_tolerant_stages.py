"""Stages that tolerate task failures ("on_task_failure": "continue"): a failed task is
counted, the stage completes when every task has ended, later stages and finalize_job
see every outcome, and the job ends completed_with_errors; past max_failed_fraction the
job fails. Both trigger modes."""

from __future__ import annotations

import pytest

from config import reset_settings
from jobs.base import JobBase
from jobs.mixins import JobBaseMixin


def inventory_job(name="inventory", **policy):
    class InventoryJob(JobBaseMixin, JobBase):
        job_type = name
        description = "read every file; a bad file is reported, not fatal"
        stages = [
            {"number": 1, "name": "read", "task_type": "read_file",
             "parallelism": "dynamic", **policy},
            {"number": 2, "name": "report", "task_type": "report", "parallelism": "fan_in"},
        ]
        parameters_schema = {"count": {"type": "int", "default": 10},
                             "bad": {"type": "str", "default": ""}}

        @staticmethod
        def create_tasks_for_stage(stage, job_params, job_id, previous_results=None):
            bad = {int(b) for b in job_params["bad"].split(",") if b}
            return [{"parameters": {"index": i, "bad": i in bad}}
                    for i in range(job_params["count"])]

        @staticmethod
        def finalize_job(context):
            return {"report": context.results_for_stage(2)[0].result_data,
                    "statuses": [t.status.value for t in context.results_for_stage(1)]}

    return InventoryJob


def read_file(params, context):
    if params["bad"]:
        raise ValueError(f"file {params['index']} is not a raster")
    return {"index": params["index"]}


def report(params, context):
    previous = context["previous_results"]
    return {"read": [p["task_index"] for p in previous if p["status"] == "completed"],
            "failed": [p["task_index"] for p in previous if p["status"] == "failed"],
            "errors": [p["result"]["error"] for p in previous if p["status"] == "failed"]}


HANDLERS = {"read_file": read_file, "report": report}


@pytest.fixture(params=[False, True], ids=["single messages", "batches"])
def eng(request, engine, batch_engine):
    return (batch_engine if request.param else engine)


def test_failed_tasks_are_counted_and_the_job_goes_on(eng):
    # Given a tolerant stage of 10 tasks of which 2 fail for good,
    job = eng.with_jobs({"inventory": inventory_job(on_task_failure="continue")}, HANDLERS
                        ).run("inventory", {"count": 10, "bad": "3,7"})
    # then the job completed with errors, the failures counted in its status and result,
    assert job["status"] == "completed_with_errors"
    assert job["tasks_failed"] == 2
    assert [(s["completed"], s["failed"]) for s in job["stages"]] == [(8, 2), (1, 0)]
    assert job["stage_results"]["1"]["failed"] == 2
    result = job["result_data"]
    assert result["tasks_failed"] == 2
    assert [(f["stage"], f["task_index"]) for f in result["failed_tasks"]] == [(1, 3), (1, 7)]
    assert "not a raster" in result["failed_tasks"][0]["error"]
    assert "2 task(s) failed (2 in stage 1 (read))" in job["error_details"]
    # and the next stage's builder and finalize_job saw every task's outcome.
    assert result["report"]["failed"] == [3, 7]
    assert result["report"]["read"] == [0, 1, 2, 4, 5, 6, 8, 9]
    assert "ValueError: file 3 is not a raster" in result["report"]["errors"][0]
    assert result["statuses"].count("failed") == 2


def test_a_tolerant_stage_without_failures_completes(eng):
    job = eng.with_jobs({"inventory": inventory_job(on_task_failure="continue")}, HANDLERS
                        ).run("inventory", {"count": 5})
    assert job["status"] == "completed"
    assert job["error_details"] is None
    assert job["tasks_failed"] == 0
    assert "tasks_failed" not in job["result_data"]


def test_past_the_failed_share_the_job_fails(eng):
    # Given a stage that tolerates up to 20% failed tasks, and 3 of 10 fail,
    job = eng.with_jobs(
        {"inventory": inventory_job(on_task_failure="continue", max_failed_fraction=0.2)},
        HANDLERS).run("inventory", {"count": 10, "bad": "1,2,3"})
    # then the job failed, saying why, and stage 2 never opened.
    assert job["status"] == "failed"
    assert "more than its max_failed_fraction 0.2 allows" in job["error_details"]
    assert "3 of 10 task(s) failed" in job["error_details"]
    assert job["stages"][1]["total"] == 0


def test_within_the_failed_share_the_job_goes_on(eng):
    job = eng.with_jobs(
        {"inventory": inventory_job(on_task_failure="continue", max_failed_fraction=0.2)},
        HANDLERS).run("inventory", {"count": 10, "bad": "4,5"})
    assert job["status"] == "completed_with_errors"
    assert job["result_data"]["tasks_failed"] == 2


def test_a_task_that_exhausts_its_retries_is_counted(eng, monkeypatch):
    monkeypatch.setenv("TASK_MAX_RETRIES", "1")
    reset_settings()
    runs = []

    def flaky(params, context):
        runs.append(params["index"])
        if params["index"] == 2:
            raise ConnectionError("storage unreachable")
        return {"index": params["index"]}

    job = eng.with_jobs({"inventory": inventory_job(on_task_failure="continue")},
                        {**HANDLERS, "read_file": flaky}).run("inventory", {"count": 4})
    assert job["status"] == "completed_with_errors"
    assert runs.count(2) == 2  # the first run and its one retry
    assert job["result_data"]["report"]["failed"] == [2]


def test_without_the_declaration_one_failure_fails_the_job(eng):
    job = eng.with_jobs({"inventory": inventory_job()}, HANDLERS
                        ).run("inventory", {"count": 6, "bad": "2"})
    assert job["status"] == "failed"
    assert "(stage 1 'read', task 2) failed: ValueError: file 2 is not a raster" in (
        job["error_details"])
