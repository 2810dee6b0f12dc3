"""Running one task handler: in a thread of its own, so the engine can stop waiting at the
stage's timeout and renew the task's lease while it waits; with the caller's log context,
so the handler's own log lines carry job_id and task_id; and with its result checked to be
something PostgreSQL can store."""

from __future__ import annotations

import contextvars
import json
import threading
import time
from typing import Any, Callable

from exceptions import ContractViolationError, TaskTimeoutError


def base_context(task: dict[str, Any]) -> dict[str, Any]:
    """What every handler's context holds, from a claimed task row."""
    return {
        "job_id": task["parent_job_id"], "job_type": task["job_type"],
        "task_id": task["task_id"], "stage": task["stage"],
        "task_index": task["task_index"], "retry": task["retry_count"],
        "job_parameters": task["job_parameters"],
        # Set when the engine no longer wants this run: its timeout passed, or its job
        # ended (failed) or was resubmitted, noticed at the next lease renewal. A long
        # handler checks it between units of work and returns early; what it returns
        # then is discarded.
        "cancelled": threading.Event(),
    }


def retry_delay(retry_count: int, base: float, cap: float) -> float:
    """The design documents' backoff: min(base * 2**retry_count, cap)."""
    return min(base * (2 ** retry_count), cap)


def storable_json(value: dict[str, Any], source: str) -> dict[str, Any]:
    """value as plain JSON that PostgreSQL's jsonb can store (no NaN or infinity, no NUL
    character in any key or string); other objects become their str()."""
    try:
        plain = json.loads(json.dumps(value, allow_nan=False, default=str))
    except ValueError as exc:
        raise ContractViolationError(f"{source} returned a value JSON cannot hold: {exc}") from None
    stack: list[Any] = [plain]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and "\x00" in item:
            raise ContractViolationError(
                f"{source} returned text with a NUL character, which PostgreSQL cannot store")
    return plain


def call_handler(
    handler: Callable[..., Any],
    params: dict[str, Any],
    context: dict[str, Any],
    timeout: float,
    renew_every: float,
    renew: Callable[[], Any],
    source: str,
) -> dict[str, Any]:
    """handler(params, context) as a storable dict. Raises what the handler raised,
    TaskTimeoutError past timeout (the thread is left to finish on its own: Python cannot
    stop it, so context["cancelled"] is set and its result discarded), or
    ContractViolationError for a result that is not a storable dict. renew() is called
    every renew_every seconds while it runs; when it returns False (the run is no longer
    wanted), context["cancelled"] is set and the handler runs on to its end."""
    cancelled = context["cancelled"]  # from base_context
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = handler(params, context)
        except BaseException as exc:  # handed to the caller's thread, which raises it
            outcome["error"] = exc

    run_in_context = contextvars.copy_context().run
    thread = threading.Thread(target=run_in_context, args=(target,), daemon=True,
                              name=f"handler {context.get('task_id', '')}")
    deadline = time.monotonic() + timeout
    thread.start()
    while True:
        thread.join(max(min(renew_every, deadline - time.monotonic()), 0.0))
        if not thread.is_alive():
            break
        if time.monotonic() >= deadline:
            cancelled.set()
            raise TaskTimeoutError(f"{source} ran longer than its {timeout:g} s timeout")
        if not renew():
            cancelled.set()
    if "error" in outcome:
        raise outcome["error"]
    result = outcome.get("value")
    if not isinstance(result, dict):
        raise ContractViolationError(
            f"{source} returned {type(result).__name__}; handlers must return a dict")
    return storable_json(result, source)
