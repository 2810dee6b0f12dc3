"""The status document of a job: its record, its timeline, and per stage its state, task
counts and times."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from core.models import JobStatus, TaskStatus

TASK_STATUSES = [s.value for s in TaskStatus]


def iso(value: Optional[datetime]) -> Optional[str]:
    """A timestamp as the API writes it: ISO 8601 in UTC (+00:00); None stays None."""
    return None if value is None else value.astimezone(timezone.utc).isoformat()


def seconds_between(start: Optional[datetime], end: Optional[datetime]) -> Optional[float]:
    """end - start in seconds (milliseconds kept), or None while either is unknown."""
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def stage_counts(counts: list[dict[str, Any]], number: int,
                 job_class: Optional[Any]) -> dict[str, Any]:
    """A stage's entry: its number, name (when the job type is registered), total and
    task counts by status; counts: (stage, status, n) rows of its job."""
    by_status = {c["status"]: c["n"] for c in counts if c["stage"] == number}
    entry: dict[str, Any] = {"stage": number}
    if job_class is not None:
        entry["name"] = job_class.stages[number - 1]["name"]
    entry["total"] = sum(by_status.values())
    entry.update({s: by_status.get(s, 0) for s in TASK_STATUSES})
    return entry


def timeline(job: dict[str, Any]) -> dict[str, Any]:
    """The current attempt's queued, started (its first stage opened) and finished times,
    and its duration from queued to finished (None until it ends)."""
    return {"queued_at": iso(job.get("queued_at")), "started_at": iso(job.get("started_at")),
            "finished_at": iso(job.get("finished_at")),
            "duration_seconds": seconds_between(job.get("queued_at"), job.get("finished_at"))}


def status_view(job: dict[str, Any], counts: list[dict[str, Any]],
                job_class: Optional[Any],
                stage_times: Optional[list[dict[str, Any]]] = None) -> dict[str, Any]:
    """job: its row; counts: (stage, status, n) rows; job_class: None if unregistered;
    stage_times: (stage, created_at, completed_at) rows of its opened stages."""
    times = {t["stage"]: t for t in stage_times or ()}
    stages = []
    for number in range(1, job["total_stages"] + 1):
        state = _stage_state(job, number)
        entry = stage_counts(counts, number, job_class)
        entry = {"stage": number, "state": state, **entry}
        started = times[number]["created_at"] if number in times else None
        finished = times[number]["completed_at"] if number in times else None
        if finished is None and state in ("failed", "cancelled"):  # where the job stopped
            finished = job.get("finished_at")
        entry.update(started_at=iso(started), finished_at=iso(finished),
                     duration_seconds=seconds_between(started, finished))
        stages.append(entry)
    view = {k: job[k] for k in (
        "job_id", "job_type", "status", "stage", "total_stages", "attempt", "parameters",
        "stage_results", "result_data", "error_details")}
    view["created_at"] = iso(job["created_at"])
    view["updated_at"] = iso(job["updated_at"])
    view.update(timeline(job))
    view["tasks_failed"] = sum(s["failed"] for s in stages)
    view["stages"] = stages
    cleanup = (job.get("metadata") or {}).get("cleanup")
    if cleanup is not None:  # a failed job's cleanup task (core/cleanup.py): how it went
        view["cleanup"] = cleanup
    cancellation = (job.get("metadata") or {}).get("cancellation")
    if cancellation is not None and job["status"] == "cancelled":  # when and why
        view["cancellation"] = cancellation
    return view


def _stage_state(job: dict[str, Any], number: int) -> str:
    """done (closed), running (the active job's current stage), pending (not reached),
    failed (where a failed job stopped), cancelled (where a cancelled job stopped), not
    run (after either)."""
    if str(number) in (job["stage_results"] or {}):
        return "done"
    if not JobStatus(job["status"]).is_terminal:
        return "running" if number == job["stage"] else "pending"
    if number == job["stage"] and job["status"] in ("failed", "cancelled"):
        return job["status"]
    return "not run"
