"""hello_world's task handlers: plain functions of (task_params, context) -> dict."""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from typing import Any, Optional


def _pause(params: dict[str, Any], context: Optional[dict] = None) -> None:
    # time.sleep(0) still costs a system call (about 60 us): skip it when not asked for.
    if params.get("sleep_seconds"):
        cancelled = (context or {}).get("cancelled")
        if cancelled is not None:  # wakes early when the engine no longer wants the run
            cancelled.wait(params["sleep_seconds"])
        else:
            time.sleep(params["sleep_seconds"])


def handle_greeting(params: dict[str, Any], context: Optional[dict] = None) -> dict[str, Any]:
    index = params["index"]
    _pause(params, context)
    if random.random() < params.get("failure_rate", 0.0):
        raise RuntimeError(f"greeting {index} failed on purpose (failure_rate)")
    return {
        "greeting": f"{params['message']} from task {index}!",
        "task_index": index,
        "timestamp": datetime.now(timezone.utc).isoformat(),
    }


def handle_reply(params: dict[str, Any], context: Optional[dict] = None) -> dict[str, Any]:
    _pause(params, context)
    predecessor = (context or {}).get("predecessor_result") or {}
    return {
        "reply": f"Replying to: {predecessor.get('greeting', params.get('greeting', 'unknown'))}",
        "task_index": params["index"],
        "timestamp": datetime.now(timezone.utc).isoformat(),
    }
