"""What a stage declaration says about its tasks' failures:

    {"number": 2, "name": "inventory", "task_type": "...", "parallelism": "fan_out",
     "on_task_failure": "continue", "max_failed_fraction": 0.2}

"fail" (the default): one task that fails for good fails the job at once. "continue":
such a task is counted, the stage completes when every task has ended, and the job ends
completed_with_errors; past max_failed_fraction of the stage's tasks failed (optional),
the job fails.
"""

from __future__ import annotations

from typing import Any

ON_TASK_FAILURE = ("fail", "continue")


def tolerates_failures(definition: dict[str, Any]) -> bool:
    return definition.get("on_task_failure", "fail") == "continue"


def failure_cap_exceeded(definition: dict[str, Any], row: dict[str, Any]) -> bool:
    """True when a tolerant stage's failed tasks (its app.job_stages row) are more than
    its max_failed_fraction allows."""
    cap = definition.get("max_failed_fraction")
    if cap is None or not row["failed"]:
        return False
    return row["failed"] > cap * row["task_count"]


def failure_cap_message(definition: dict[str, Any], row: dict[str, Any], first: str) -> str:
    return (f"Stage {row['stage']} ({definition['name']}) failed: {row['failed']} of "
            f"{row['task_count']} task(s) failed, more than its max_failed_fraction "
            f"{definition['max_failed_fraction']:g} allows. First failure: {first}")


# The failed tasks a job's result lists (all are counted).
LISTED_FAILURES = 100


def record_failures(failed: list[Any], stage_names: dict[int, str], result: dict[str, Any]
                    ) -> str:
    """Count a completed job's failed tasks (TaskRecords, of stages that tolerate
    failures) into its result, keeping what finalize_job set itself; returns the job's
    error_details: how many failed where, and the first failure."""
    by_stage: dict[int, int] = {}
    for task in failed:
        by_stage[task.stage] = by_stage.get(task.stage, 0) + 1
    result.setdefault("tasks_failed", len(failed))
    result.setdefault("failed_tasks", [
        {"task_id": t.task_id, "stage": t.stage, "task_index": t.task_index,
         "error": t.error_details} for t in failed[:LISTED_FAILURES]])
    where = ", ".join(f"{n} in stage {stage} ({stage_names.get(stage, '?')})"
                      for stage, n in sorted(by_stage.items()))
    first = failed[0]
    return (f"{len(failed)} task(s) failed ({where}); the job went on past them. First "
            f"failure: task {first.task_id}: {first.error_details}")
