"""What list_container_contents reports, from its analyze tasks' outcomes (each
{"task_id", "status", "result"} as stages pass them, or a task record): a pure function
shared by the job's finalize_job and the diamond's fan-in handler. It imports nothing of
the jobs package (which imports it)."""

from __future__ import annotations

from typing import Any, Iterable

FIRST_ERRORS = 10
MAX_MISMATCHES = 1000


def _outcome(item: Any) -> tuple[str, Any, Any, Any]:
    if isinstance(item, dict):
        return item["status"], item.get("result"), item.get("task_id"), item.get("error")
    status = getattr(item.status, "value", item.status)
    return status, item.result_data, item.task_id, item.error_details


def _add(table: dict[str, dict[str, int]], key: str, size: int) -> None:
    entry = table.setdefault(key, {"count": 0, "bytes": 0})
    entry["count"] += 1
    entry["bytes"] += size


def aggregate_inventory(outcomes: Iterable[Any]) -> dict[str, Any]:
    analyzed = succeeded = failed = total = 0
    by_extension: dict[str, dict[str, int]] = {}
    by_format: dict[str, dict[str, int]] = {}
    mismatches: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    largest = None
    for item in outcomes:
        status, result, task_id, error = _outcome(item)
        analyzed += 1
        if status != "completed" or not result:
            failed += 1
            if len(errors) < FIRST_ERRORS:
                errors.append({"task_id": task_id,
                               "error": (result or {}).get("error") or error})
            continue
        succeeded += 1
        size = result["size"]
        total += size
        _add(by_extension, result["extension"], size)
        _add(by_format, result["format"], size)
        if result.get("extension_mismatch") and len(mismatches) < MAX_MISMATCHES:
            mismatches.append({"name": result["name"], "extension": result["extension"],
                               "format": result["format"]})
        if largest is None or size > largest["size"]:
            largest = {"name": result["name"], "size": size}
    return {"blobs_analyzed": analyzed, "succeeded": succeeded, "failed": failed,
            "total_bytes": total, "by_extension": dict(sorted(by_extension.items())),
            "by_format": dict(sorted(by_format.items())), "mismatches": mismatches,
            "largest": largest, "errors": errors}
