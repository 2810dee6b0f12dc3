"""finalize_job protection (issue "Reliability", point 3) and StageResultExtractor end to
end (point 4): a finalize that fails or returns something other than a dict still ends the
job, completed_with_errors with a fallback result; a stage 1 result of the wrong shape fails
the job with a message naming the path, the keys present and the stage."""

from __future__ import annotations

import logging
from typing import Any, Optional

import pytest

from core.utils import StageResultExtractor
from jobs.base import JobBase, JobExecutionContext
from jobs.mixins import JobBaseMixin
from tests.integration.sample_jobs import ITEMS_HANDLERS, ItemsJob


class FinalizeGivesJob(ItemsJob):
    """finalize_job returns (or raises) what the job's `outcome` parameter selects."""

    job_type = "finalize_gives"
    parameters_schema = {**ItemsJob.parameters_schema,
                         "outcome": {"type": "str", "allowed": ["list", "none", "oserror"]}}

    @staticmethod
    def finalize_job(context):
        outcome = context.parameters["outcome"]
        if outcome == "oserror":
            raise OSError("summary store unreachable")
        return {"list": ["a", "b"], "none": None}[outcome]


def finalize_engine(engine):
    return engine.with_jobs({"finalize_gives": FinalizeGivesJob}, ITEMS_HANDLERS)


@pytest.mark.parametrize("outcome, error", [
    ("list", "ContractViolationError: FinalizeGivesJob.finalize_job returned list; it must "
             "return a dict"),
    ("none", "ContractViolationError: FinalizeGivesJob.finalize_job returned NoneType; it "
             "must return a dict"),
    ("oserror", "OSError: summary store unreachable"),
], ids=["list", "none", "raises"])
def test_a_finalize_that_does_not_return_a_dict_ends_the_job_with_errors(
        engine, caplog, outcome, error):
    caplog.set_level(logging.INFO)
    # Given a job whose every task completes but whose finalize_job misbehaves,
    job = finalize_engine(engine).run("finalize_gives", {"count": 2, "outcome": outcome})
    # Then the job still ends: completed_with_errors, the error beside a fallback result.
    assert job["status"] == "completed_with_errors"
    assert job["error_details"] == f"finalize_job failed: {error}"
    assert job["result_data"] == {"finalize_error": f"finalize_job failed: {error}",
                                  "tasks_total": 4, "tasks_completed": 4}
    assert [(s["total"], s["completed"]) for s in job["stages"]] == [(1, 1), (2, 2), (1, 1)]
    # And the failure is logged once, with its traceback and the job's id.
    [record] = [r for r in caplog.records if "finalize_job failed" in r.getMessage()]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert (record.job_id, record.operation) == (job["job_id"], "finalize_job")


def test_a_finalize_failure_is_not_retried_by_a_repeated_message(engine):
    # Given a job that ended completed_with_errors,
    eng = finalize_engine(engine)
    job = eng.run("finalize_gives", {"count": 1, "outcome": "oserror"})
    # When the machine is asked to resume or finalize it again,
    assert eng.machine.resume(job["job_id"]) is None
    assert eng.machine.finalize(job["job_id"]) is None
    # Then nothing changes.
    assert eng.status(job["job_id"]) == job


# -- StageResultExtractor, end to end --------------------------------------------------
def list_files(params: dict, context: dict) -> dict:
    files = ["a.tif", "b.tif"]
    if context["job_parameters"]["shape"] == "right":
        return {"files": files}
    return {"paths": files, "count": len(files)}  # what a careless handler might return


def process_file(params: dict, context: dict) -> dict:
    return {"file": params["file"]}


class FilesJob(JobBaseMixin, JobBase):
    job_type = "files"
    description = "List files, then process each; stage 2 reads stage 1's result.files"
    stages = [
        {"number": 1, "name": "list", "task_type": "list_files", "parallelism": "single"},
        {"number": 2, "name": "process", "task_type": "process_file",
         "parallelism": "fan_out"},
    ]
    parameters_schema = {"shape": {"type": "str", "allowed": ["right", "wrong"],
                                   "default": "right"}}

    @staticmethod
    def create_tasks_for_stage(stage: int, job_params: dict, job_id: str,
                               previous_results: Optional[list] = None
                               ) -> list[dict[str, Any]]:
        if stage == 1:
            return [{"parameters": {}}]
        files = StageResultExtractor.extract(previous_results, "result.files", stage=1)
        return [{"parameters": {"file": name}} for name in files]

    @staticmethod
    def finalize_job(context: JobExecutionContext) -> dict[str, Any]:
        return {"processed": [t.result_data["file"] for t in context.results_for_stage(2)]}


def files_engine(engine):
    return engine.with_jobs({"files": FilesJob},
                            {"list_files": list_files, "process_file": process_file})


def test_a_stage_reading_the_previous_stages_result_runs_when_the_shape_is_right(engine):
    job = files_engine(engine).run("files", {"shape": "right"})
    assert job["status"] == "completed", job["error_details"]
    assert job["result_data"] == {"processed": ["a.tif", "b.tif"]}


def test_a_previous_result_of_the_wrong_shape_fails_the_job_saying_where_to_look(engine):
    # Given a stage 1 handler that returns "paths" where stage 2 reads "result.files",
    job = files_engine(engine).run("files", {"shape": "wrong"})
    # Then the job fails at stage 2, naming the path, the keys present and the stage.
    assert job["status"] == "failed"
    error = job["error_details"]
    assert error.startswith("Stage 2: FilesJob.create_tasks_for_stage failed: "
                            "StageResultError: Result path 'result.files' not found")
    assert "keys there: ['count', 'paths']" in error
    assert "stage 1" in error and "Check what the stage 1 handler returns" in error
    assert [s["total"] for s in job["stages"]] == [1, 0]
