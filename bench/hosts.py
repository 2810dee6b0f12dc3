"""Local hosts under test: `python -m local_host serve` subprocesses, one HTTP port each,
started and stopped with bounds, their memory read from /proc."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

from .server import ROOT

MODES = {
    # mode -> the task-queue function switched off (AzureWebJobs.<fn>.Disabled)
    "batch": "process_task_message",
    "single": "process_task_batch",
}
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_status_kb(pid: int, field: str) -> Optional[int]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class Host:
    def __init__(self, index: int, database_url: str, mode: str, task_concurrency: int,
                 stats_prefix: Path, log_path: Path, extra_env: Optional[dict] = None):
        self.index = index
        self.port = free_port()
        self.stats_prefix = stats_prefix
        self.log_path = log_path
        env = dict(os.environ)
        for name in list(env):  # the bench decides these, not the caller's environment
            if name.startswith("AzureWebJobs.") or name in ("SQL_STATS_FILE",):
                del env[name]
        env.update({
            "DATABASE_URL": database_url,
            "QUEUE_BACKEND": "embedded",
            f"AzureWebJobs.{MODES[mode]}.Disabled": "true",
            "SQL_STATS_FILE": str(stats_prefix),
            "LOCAL_TASK_CONCURRENCY": str(task_concurrency),
            # Workers + job workers + HTTP + lock renewal, with room to spare.
            "DB_POOL_MAX_SIZE": str(task_concurrency + 8),
            "PYTHONUNBUFFERED": "1",
            # Storage named (never touched by hello_world), so a host does not start an
            # Azurite of its own; the storage runs pass their Azurite's.
            "STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
        })
        env.update(extra_env or {})
        self.env = env
        self.proc: Optional[subprocess.Popen] = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> "Host":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "local_host", "serve", "--port", str(self.port)],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"host {self.index} exited with {self.proc.returncode}; "
                                   f"see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/api/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"host {self.index} not ready after {timeout:g} s; see "
                           f"{self.log_path}")

    def rss_mb(self) -> Optional[float]:
        kb = proc_status_kb(self.pid, "VmRSS")
        return None if kb is None else kb / 1024

    def peak_mb(self) -> Optional[float]:
        kb = proc_status_kb(self.pid, "VmHWM")
        return None if kb is None else kb / 1024

    def stop(self) -> Optional[dict]:
        """SIGTERM (the host finishes in-flight work and closes its pool, which writes the
        SQL stats), then SIGKILL after STOP_TIMEOUT. Returns the host's SQL stats."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        path = Path(f"{self.stats_prefix}.{self.proc.pid}.json")
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None


class HostGroup:
    """`count` hosts started together; always stopped, even on error (use as a context)."""

    def __init__(self, count: int, **kwargs: Any):
        self.hosts = [Host(i, log_path=kwargs["log_dir"] / f"host-{i}.log",
                           **{k: v for k, v in kwargs.items() if k != "log_dir"})
                      for i in range(count)]
        self.stats: list[Optional[dict]] = []

    def __enter__(self) -> "HostGroup":
        try:
            for host in self.hosts:
                host.start()
            for host in self.hosts:
                host.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> list[Optional[dict]]:
        if not self.stats:
            self.stats = [host.stop() for host in self.hosts]
        return self.stats

    def rss_mb(self) -> list[Optional[float]]:
        return [h.rss_mb() for h in self.hosts]

    def peak_mb(self) -> list[Optional[float]]:
        return [h.peak_mb() for h in self.hosts]
