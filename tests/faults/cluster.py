"""Local host processes for fault injection: several `python -m local_host serve --port 0`
against one database, each killable with SIGKILL at any moment and started again.

Every child is started from one long-lived spawner thread with PR_SET_PDEATHSIG, so it
dies with that thread (the cluster's close) even if the test process itself is killed;
close() kills whatever is left and waits for it. Loopback only: the host listens on
127.0.0.1.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[2]

# The short timings of the faults suite: locks, leases and backoff in seconds, not minutes.
FAST_TIMINGS = {
    "QUEUE_LOCK_SECONDS": "1",
    "TASK_LEASE_SECONDS": "2",
    "TASK_RETRY_BASE_SECONDS": "0.05",
    "TASK_RETRY_CAP_SECONDS": "0.2",
    "TASK_MAX_RETRIES": "3",
    "SWEEP_AFTER_SECONDS": "1",
    # Service Bus's 10-minute window scaled as SWEEP_AFTER_SECONDS is (x10, as 60 s to 600)
    "QUEUE_DUPLICATE_DETECTION_SECONDS": "10",
    "LOCAL_TASK_CONCURRENCY": "4",
    "LOCAL_JOB_CONCURRENCY": "2",
    # hello_world's stages (n of 5 to 30 tasks) open in chunks of 4: kills land between them
    "STAGE_CHUNK_SIZE": "4",
}
START_TIMEOUT = 30.0
HTTP_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1


def _die_with_spawner() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class HostError(AssertionError):
    pass


class Host:
    """One host slot: the process now running in it (if any) and its log files."""

    def __init__(self, index: int, log_dir: Path):
        self.index = index
        self.log_dir = log_dir
        self.proc: Optional[subprocess.Popen] = None
        self.url: Optional[str] = None
        self.incarnation = 0
        self.log_path: Optional[Path] = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class HostCluster:
    def __init__(self, database_url: str, size: int, log_dir: Path,
                 env: Optional[dict[str, str]] = None):
        self.database_url = database_url
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.hosts = [Host(i, self.log_dir) for i in range(size)]
        self.env = dict(env or {})
        # Settings of one host slot, over env (e.g. which task trigger it runs).
        self.per_host_env: list[dict[str, str]] = [{} for _ in range(size)]
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="host-spawner")
        self.kills = 0

    # -- processes ----------------------------------------------------------------------
    def _environment(self, index: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ServiceBusConnection", "AzureWebJobs."))}
        env.update(FAST_TIMINGS)
        env.update({
            "DATABASE_URL": self.database_url, "QUEUE_BACKEND": "embedded",
            "DB_POOL_MIN_SIZE": "1", "DB_POOL_MAX_SIZE": "12",
            # Names this process's database sessions: the probes tell who sent what.
            "PGAPPNAME": f"faults-host-{index}", "PYTHONUNBUFFERED": "1",
        })
        env.update(self.env)
        env.update(self.per_host_env[index])
        return env

    def _spawn(self, host: Host) -> subprocess.Popen:
        host.incarnation += 1
        host.log_path = self.log_dir / f"host{host.index}-{host.incarnation}.log"
        log = open(host.log_path, "wb")
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "local_host", "serve", "--port", "0"],
                cwd=ROOT, env=self._environment(host.index), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_spawner,
            )
        finally:
            log.close()

    def start(self, index: Optional[int] = None) -> "HostCluster":
        """Start one host (or every stopped one) and wait until each listens."""
        hosts = [self.hosts[index]] if index is not None else [
            h for h in self.hosts if not h.alive]
        for host in hosts:
            if host.alive:
                raise HostError(f"host {host.index} is already running")
            host.url = None
            host.proc = self._spawner.submit(self._spawn, host).result(timeout=30)
        for host in hosts:
            self._wait_listening(host)
        return self

    def _wait_listening(self, host: Host) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if host.proc.poll() is not None:
                raise HostError(f"host {host.index} exited with {host.proc.returncode} "
                                f"while starting:\n{host.tail()}")
            for line in host.log_path.read_text(errors="replace").splitlines():
                if line.startswith("Listening on "):
                    host.url = line.split()[2]
                    return
            time.sleep(0.05)
        raise HostError(f"host {host.index} did not listen within {START_TIMEOUT} s:\n"
                        f"{host.tail()}")

    def kill(self, index: int) -> bool:
        """SIGKILL one host (no clean-up of any kind runs); False if it was not running."""
        host = self.hosts[index]
        if not host.alive:
            return False
        host.proc.send_signal(signal.SIGKILL)
        host.proc.wait(timeout=10)
        host.url = None
        self.kills += 1
        return True

    def kill_all(self) -> int:
        return sum(self.kill(h.index) for h in self.hosts)

    def close(self) -> None:
        for host in self.hosts:
            if host.proc is not None and host.proc.poll() is None:
                host.proc.kill()
                try:
                    host.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        self._spawner.shutdown(wait=True)

    def alive_urls(self) -> list[str]:
        return [h.url for h in self.hosts if h.alive and h.url]

    def logs(self, lines: int = 25) -> str:
        return "\n".join(f"--- host {h.index} (#{h.incarnation}, {h.log_path})\n{h.tail(lines)}"
                         for h in self.hosts)

    # -- HTTP ---------------------------------------------------------------------------
    def submit(self, params: dict[str, Any], job_type: str = "hello_world",
               timeout: float = 45.0, prefer: int = 0) -> tuple[int, dict]:
        """POST a submit to a live host; a host killed under the request (or none up yet)
        means: try again, on another host if there is one. Submitting is idempotent."""
        deadline = time.monotonic() + timeout
        attempt = prefer
        last: Any = None
        while time.monotonic() < deadline:
            urls = self.alive_urls()
            if urls:
                url = urls[attempt % len(urls)]
                attempt += 1
                try:
                    code, body = request("POST", f"{url}/api/jobs/submit/{job_type}", params)
                    if code < 500:
                        return code, body
                    last = (code, body)
                except (OSError, http.client.HTTPException) as exc:
                    last = exc
            time.sleep(0.1)
        raise HostError(f"submit {params} got no answer within {timeout} s: {last!r}")

    def status(self, job_id: str, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            for url in self.alive_urls():
                try:
                    code, body = request("GET", f"{url}/api/jobs/status/{job_id}")
                    if code == 200:
                        return body
                    last = (code, body)
                except (OSError, http.client.HTTPException) as exc:
                    last = exc
            time.sleep(0.1)
        raise HostError(f"status of {job_id}: no answer within {timeout} s: {last!r}")


def request(method: str, url: str, payload: Any = None) -> tuple[int, dict]:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def start_script(args: list[str], database_url: str, log_path: Path,
                 app: str = "faults-worker") -> subprocess.Popen:
    """A Python child (`python <args>`) on the suite's timings and this database; its
    stdout is piped (read it with read_until), its stderr goes to log_path. It dies with
    the calling thread: call from the test's own thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ServiceBusConnection")}
    env.update(FAST_TIMINGS)
    env.update({"DATABASE_URL": database_url, "QUEUE_BACKEND": "embedded",
                "PGAPPNAME": app, "PYTHONUNBUFFERED": "1"})
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=log, text=True, start_new_session=True,
                                preexec_fn=_die_with_spawner)


def read_until(proc: subprocess.Popen, prefix: str, timeout: float) -> str:
    """The first stdout line starting with prefix, within timeout seconds."""
    import threading

    found: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            if line.startswith(prefix):
                found.append(line.strip())
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        raise HostError(f"no '{prefix}' line within {timeout} s (exit {proc.poll()})")
    return found[0]
