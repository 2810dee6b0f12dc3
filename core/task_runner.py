"""What running a task handler needs on both trigger paths: the handler's base context,
the retry backoff, and a result checked to be something PostgreSQL can store. The
handlers themselves run in core/handler_pool.py."""

from __future__ import annotations

import json
import random
import threading
from typing import Any, Callable, Optional

from exceptions import ContractViolationError


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
        # Set when the handler starts (core/handler_pool.py): "deadline", an aware UTC
        # datetime, the earlier of its stage's timeout and its invocation's budget; and
        # "time_left", a function giving the seconds until then. A long scan stops in
        # time and returns what it has.
    }


def retry_delay(retry_count: int, base: float, cap: float,
                retry_after: Optional[float] = None,
                rng: Callable[[], float] = random.random) -> float:
    """The design documents' backoff, min(base * 2**retry_count, cap), with equal jitter:
    half of it fixed, half random, so tasks that failed together do not all come back at
    the same moment. Never sooner than a service's Retry-After."""
    ceiling = min(base * (2 ** retry_count), cap)
    delay = ceiling / 2 + rng() * ceiling / 2
    return max(delay, retry_after) if retry_after else delay


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
