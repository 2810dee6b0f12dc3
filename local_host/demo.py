"""The demo: start the host in-process, then the geojobs command line (cli/) submits
hello_world and watches it, a live progress bar per stage, and prints the result: the
same as `geojobs submit hello_world -p n=5 --watch` against `make serve`."""

from __future__ import annotations

import shlex
import sys
from datetime import datetime, timezone
from typing import TextIO

from .host import LocalHost

TIMEOUT_SECONDS = 120.0


def run_demo(n: int = 5, timeout: float = TIMEOUT_SECONDS, out: TextIO = sys.stdout,
             err: TextIO = sys.stderr) -> int:
    """The CLI's exit code: 0 if the job completed, 1 if it did not (see cli/main.py)."""
    from cli.main import run

    with LocalHost(port=0, out=out) as host:
        message = f"Hello from make demo at {datetime.now(timezone.utc).isoformat()}"
        # Half-second tasks, so each stage's progress is visible.
        args = ["submit", "hello_world", "--param", f"n={n}", "--param", f"message={message}",
                "--param", "sleep_seconds=0.5", "--watch", "--timeout", f"{timeout:g}"]
        print(f"\n$ geojobs {shlex.join(args)}\n", file=out, flush=True)
        return run(["--url", host.url, *args], out=out, err=err)
