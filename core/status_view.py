"""The status document of a job: its record, and per stage its state and task counts."""

from __future__ import annotations

from typing import Any, Optional

from core.models import JobStatus, TaskStatus

TASK_STATUSES = [s.value for s in TaskStatus]


def status_view(job: dict[str, Any], counts: list[dict[str, Any]],
                job_class: Optional[Any]) -> dict[str, Any]:
    """job: its row; counts: (stage, status, n) rows; job_class: None if unregistered."""
    stages = []
    for number in range(1, job["total_stages"] + 1):
        by_status = {c["status"]: c["n"] for c in counts if c["stage"] == number}
        entry = {"stage": number, "state": _stage_state(job, number),
                 "total": sum(by_status.values())}
        if job_class is not None:
            entry["name"] = job_class.stages[number - 1]["name"]
        entry.update({s: by_status.get(s, 0) for s in TASK_STATUSES})
        stages.append(entry)
    view = {k: job[k] for k in (
        "job_id", "job_type", "status", "stage", "total_stages", "attempt", "parameters",
        "stage_results", "result_data", "error_details")}
    view["created_at"] = job["created_at"].isoformat()
    view["updated_at"] = job["updated_at"].isoformat()
    view["tasks_failed"] = sum(s["failed"] for s in stages)
    view["stages"] = stages
    cleanup = (job.get("metadata") or {}).get("cleanup")
    if cleanup is not None:  # a failed job's cleanup task (core/cleanup.py): how it went
        view["cleanup"] = cleanup
    return view


def _stage_state(job: dict[str, Any], number: int) -> str:
    """done (closed), running (the active job's current stage), pending (not reached),
    failed (where a failed job stopped), not run (after it)."""
    if str(number) in (job["stage_results"] or {}):
        return "done"
    if not JobStatus(job["status"]).is_terminal:
        return "running" if number == job["stage"] else "pending"
    return "failed" if number == job["stage"] and job["status"] == "failed" else "not run"
