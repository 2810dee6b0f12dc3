"""geojobs watch: poll a job's status until it ends, drawing its progress (a live bar per
stage on a terminal, plain lines elsewhere), and the exit codes."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Optional

from rich.text import Text

from . import render
from .client import ApiError, Client, ConnectionFailed

TERMINAL = ("completed", "failed", "completed_with_errors", "cancelled")
EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_API, EXIT_TIMEOUT, EXIT_INTERRUPTED = (
    0, 1, 2, 3, 4, 130)
# A watch rides out this many failed polls in a row (host restarting, a 503) before it
# gives up with exit code 3.
WATCH_TOLERATED_FAILURES = 10


def watch_job(cfg: Any, client: Client, job_id: str, interval: float = 0.5,
              timeout: Optional[float] = None) -> int:
    """Polls the job's status until it ends, showing progress; its exit code."""
    deadline = None if not timeout else time.monotonic() + timeout
    failures = 0
    doc: dict[str, Any] = {}
    watcher = (contextlib.nullcontext() if cfg.as_json
               else render.Watcher(cfg.out, job_id))
    try:
        with watcher as shown:
            while True:
                try:
                    doc = client.status(job_id)
                    failures = 0
                except (ConnectionFailed, ApiError) as exc:
                    # The job goes on while the host restarts or answers 503: ride it out.
                    transient = isinstance(exc, ConnectionFailed) or exc.status >= 500
                    failures += 1
                    if not doc or not transient or failures >= WATCH_TOLERATED_FAILURES:
                        raise
                    time.sleep(interval)
                    continue
                if shown is not None:
                    shown.show(doc)
                if doc.get("status") in TERMINAL:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    cfg.err.print(Text(f"gave up after {timeout:g} s: job {job_id} is still "
                                       f"{doc.get('status')} (geojobs watch {job_id})"),
                                  soft_wrap=True)
                    return EXIT_TIMEOUT
                time.sleep(interval)
    except KeyboardInterrupt:
        cfg.err.print(Text(f"stopped watching; the job goes on (geojobs watch {job_id})"),
                      soft_wrap=True)
        return EXIT_INTERRUPTED
    if cfg.as_json:
        render.print_json(cfg.out, doc)
    else:
        cfg.out.print()
        render.ending(cfg.out, doc)
    return EXIT_OK if doc.get("status") == "completed" else EXIT_JOB_FAILED
