"""The demo: start the host in-process, submit hello_world, show each stage's progress
live from the status endpoint, print the result."""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any, Optional, TextIO

from .host import LocalHost

TERMINAL = ("completed", "failed", "completed_with_errors")
POLL_SECONDS = 0.2
BAR_WIDTH = 16


def _call(method: str, url: str, payload: Optional[dict] = None) -> tuple[int, dict]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, {"error": body.decode("utf-8", "replace")}


def stage_line(stage: dict[str, Any]) -> str:
    total = stage.get("total", 0)
    done = stage.get("completed", 0) + stage.get("failed", 0)
    label = f"{stage['stage']} {stage.get('name', ''):<9}"
    if not total:
        return f"{label} [{'.' * BAR_WIDTH}] {stage.get('state', 'waiting')}"
    filled = round(BAR_WIDTH * done / total)
    return (f"{label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total}"
            f"  queued {stage.get('queued', 0)} running {stage.get('processing', 0)}"
            f" failed {stage.get('failed', 0)}")


class Progress:
    """Redraws the stage bars in place on a terminal; elsewhere, prints a line per change."""

    def __init__(self, out: TextIO):
        self.out = out
        self.tty = out.isatty()
        self.drawn = 0
        self.last: Optional[tuple] = None

    def show(self, status: dict[str, Any]) -> None:
        stages = status.get("stages", [])
        key = (status.get("status"), tuple(tuple(sorted(s.items())) for s in stages))
        if key == self.last:
            return
        self.last = key
        if self.tty:
            lines = [f"job {status['job_id'][:12]}... {status.get('status')}"]
            lines += ["  stage " + stage_line(s) for s in stages]
            # A wrapped line would throw the cursor arithmetic off.
            width = shutil.get_terminal_size().columns - 1
            lines = [line[:width] for line in lines]
            if self.drawn:
                self.out.write(f"\x1b[{self.drawn}F")  # back to the first line drawn
            self.out.write("".join(f"\x1b[2K{line}\n" for line in lines))
            self.drawn = len(lines)
        else:
            self.out.write(f"{status.get('status')}: " + "; ".join(
                f"stage {s['stage']} {s.get('name', '')} {s.get('completed', 0)}/"
                f"{s.get('total', 0)} completed, {s.get('queued', 0)} queued, "
                f"{s.get('processing', 0)} processing, {s.get('failed', 0)} failed"
                for s in stages) + "\n")
        self.out.flush()


def run_demo(n: int = 5, timeout: float = 120.0, out: TextIO = sys.stdout) -> int:
    """0 if the job completed, 1 otherwise."""
    with LocalHost(port=0, out=out) as host:
        message = f"Hello from make demo at {datetime.now(timezone.utc).isoformat()}"
        code, submitted = _call("POST", f"{host.url}/api/jobs/submit/hello_world",
                                # Half-second tasks, so each stage's progress is visible.
                                {"n": n, "message": message, "sleep_seconds": 0.5})
        if code not in (200, 201):
            print(f"submit failed: HTTP {code}: {json.dumps(submitted)}", file=out)
            return 1
        job_id = submitted["job_id"]
        print(f"\nsubmitted hello_world n={n}: job {job_id}\n", file=out, flush=True)
        progress = Progress(out)
        deadline = time.monotonic() + timeout
        while True:
            code, status = _call("GET", f"{host.url}/api/jobs/status/{job_id}")
            if code == 200:
                progress.show(status)
                if status["status"] in TERMINAL:
                    break
            else:
                print(f"status: HTTP {code}: {status.get('error')}", file=out, flush=True)
            if time.monotonic() > deadline:
                print(f"\ngave up after {timeout:.0f} s: job {job_id} is still "
                      f"{status.get('status', 'unknown')}", file=out, flush=True)
                return 1
            time.sleep(POLL_SECONDS)
        print(f"\njob {job_id} {status['status']}", file=out)
        if status.get("error_details"):
            print(f"error: {status['error_details']}", file=out)
        print("result_data:", file=out)
        print(json.dumps(status.get("result_data"), indent=2), file=out, flush=True)
        return 0 if status["status"] == "completed" else 1
