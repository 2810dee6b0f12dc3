"""Start-up checks of time limits: the app refuses to start when a setting disagrees with
host.json, or a stage's timeout cannot fit in one invocation."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

from exceptions import ConfigurationError, RegistryError

_TIMESPAN = re.compile(r"(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)")


def timespan_seconds(text: str) -> float:
    """A .NET TimeSpan as host.json writes it: [d.]hh:mm:ss[.fff]."""
    match = _TIMESPAN.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not a timespan: {text!r}")
    days, hours, minutes, seconds = match.groups()
    return ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + float(seconds)


def host_function_timeout(host_json: Path) -> Optional[float]:
    """host.json's functionTimeout in seconds; None when it is -1 (no limit)."""
    try:
        host = json.loads(Path(host_json).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{host_json}: not readable JSON: {exc}") from None
    text = host.get("functionTimeout") if isinstance(host, dict) else None
    if text is None:
        raise ConfigurationError(
            f"{host_json} sets no functionTimeout: set one (e.g. \"00:10:00\") and the "
            "app setting FUNCTION_TIMEOUT_SECONDS to the same number of seconds")
    if str(text).strip() == "-1":
        return None
    try:
        return timespan_seconds(str(text))
    except ValueError:
        raise ConfigurationError(
            f"{host_json}: functionTimeout {text!r} is not hh:mm:ss") from None


def check_function_timeout(host_json: Path, settings: Any) -> None:
    """FUNCTION_TIMEOUT_SECONDS must mirror host.json's functionTimeout: the engine plans
    each invocation's time by it."""
    host = host_function_timeout(host_json)
    if host is not None and abs(host - settings.function_timeout_seconds) > 1e-6:
        raise ConfigurationError(
            f"FUNCTION_TIMEOUT_SECONDS is {settings.function_timeout_seconds:g} but "
            f"{host_json}'s functionTimeout is {host:g} s: set them to the same value")


def check_stage_timeouts(all_jobs: dict[str, Any], settings: Any) -> None:
    """Every stage's timeout (its timeout_seconds, else TASK_TIMEOUT_SECONDS) must fit in
    one invocation: functionTimeout less the reserve kept for recording outcomes."""
    limit = settings.function_timeout_seconds - settings.invocation_reserve_seconds
    for job_type, job in all_jobs.items():
        for number, stage in enumerate(getattr(job, "stages", []), start=1):
            own = isinstance(stage, dict) and "timeout_seconds" in stage
            timeout = stage["timeout_seconds"] if own else settings.task_timeout_seconds
            if timeout > limit:
                what = ("its timeout_seconds" if own
                        else "its timeout (TASK_TIMEOUT_SECONDS, the default)")
                name = stage.get("name", "?") if isinstance(stage, dict) else "?"
                raise RegistryError(
                    f"Job '{job_type}' stage {number} ('{name}'): {what} of {timeout:g} s "
                    f"is longer than an invocation allows: functionTimeout "
                    f"({settings.function_timeout_seconds:g} s, FUNCTION_TIMEOUT_SECONDS) "
                    f"less INVOCATION_RESERVE_SECONDS ({settings.invocation_reserve_seconds:g}"
                    f" s) is {limit:g} s")
