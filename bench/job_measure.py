"""Measuring one job, or one command-line tool, end to end, as the geospatial benches
(vector, raster) compare them: the job submitted over HTTP to a fresh local host and its
row polled to its end, with the host's memory and the CPU of everything involved; the tool
run as a subprocess, with its own peak memory and CPU. The vector bench's ingest_run and
ogr2ogr_run still hold their own copies of these loops."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from .hosts import HostGroup
from .server import BenchServer
from .storage_runs import _submit
from .vector_measure import CpuClock, MemorySampler
from .vector_runs import GeoServer

ENDED = ("completed", "failed", "completed_with_errors")


def postgis_missing() -> Optional[str]:
    """Why the machine's PostgreSQL and PostGIS cannot run a server, or None."""
    from infrastructure.local_postgis import LocalPostgisError, find_binaries

    try:
        find_binaries(None)
    except LocalPostgisError as exc:
        return f"PostGIS is missing: {exc.reason}; {exc.hint}"
    return None


@contextmanager
def geo_services(workdir: Path) -> Iterator[tuple[GeoServer, Any]]:
    """A fresh PostGIS server (GeoServer, started) and Azurite of the bench's own, in
    workdir/postgis and workdir/azurite; both stopped and deleted on the way out."""
    from local_host.azurite import Azurite

    location = workdir / "azurite"
    shutil.rmtree(location, ignore_errors=True)
    geo = GeoServer(workdir / "postgis")
    try:
        geo.start()
        with Azurite(port=0, location=location) as azurite:
            yield geo, azurite
    finally:
        geo.close()
        shutil.rmtree(location, ignore_errors=True)


def _seconds(a: Any, b: Any) -> Optional[float]:
    return None if a is None or b is None else round((b - a).total_seconds(), 3)


def stage_windows(tasks: list[dict], names: dict[int, str]
                  ) -> tuple[dict[str, Optional[float]], dict[str, Optional[tuple]]]:
    """Per stage: its wall time (first claim to last completion, from the tasks' rows)
    and that window as time.time() values, for MemorySampler.peak_between."""
    walls, windows = {}, {}
    for stage, name in names.items():
        rows = [t for t in tasks if t["stage"] == stage]
        starts = [t["started_at"] for t in rows if t["started_at"] is not None]
        ends = [t["updated_at"] for t in rows]
        walls[name] = _seconds(min(starts), max(ends)) if starts and ends else None
        windows[name] = (min(starts).timestamp(), max(ends).timestamp()) \
            if starts and ends else None
    return walls, windows


def job_on_fresh_host(server: BenchServer, job_type: str, params: dict[str, Any], *,
                      env: dict[str, str], pids: dict[str, int],
                      postmaster: Optional[int], workdir: Path, timeout: float, tag: str,
                      concurrency: int = 8) -> dict[str, Any]:
    """One job on a fresh `python -m local_host serve` (batch mode, `concurrency` batch
    invocations): submitted over HTTP, its row polled every 50 ms. Returns its status,
    result, error, seconds (submit to end), tasks (rows of app.tasks), the host's RSS
    before the submit and its memory (MemorySampler: result and sampler), and CPU seconds
    of the host, the processes in `pids` and the PostGIS server at `postmaster`."""
    with HostGroup(1, database_url=server.url, mode="batch", task_concurrency=concurrency,
                   stats_prefix=workdir / f"{tag}-sql", log_dir=workdir / tag,
                   extra_env=env) as group:
        host = group.hosts[0]
        idle_mb = host.rss_mb()
        cpu = CpuClock({"host": host.pid, **pids}, postmaster, server.postmaster)
        with MemorySampler(host.pid) as memory:
            started = time.perf_counter()
            job_id = _submit(host.url, job_type, params)
            deadline = time.monotonic() + timeout
            with server.connect() as conn:
                while True:
                    row = conn.execute("SELECT status, result_data, error_details"
                                       " FROM app.jobs WHERE job_id = %s",
                                       (job_id,)).fetchone()
                    if row[0] in ENDED:
                        break
                    if time.monotonic() > deadline:  # the host is stopped on the way out
                        raise RuntimeError(f"{job_type} {tag} did not end within "
                                           f"{timeout:g} s; see {workdir / tag}")
                    time.sleep(0.05)
            seconds = time.perf_counter() - started
        cpu_used = cpu.stop()
    with server.connect() as conn:
        cur = conn.cursor()
        cur.execute("SELECT stage, task_index, status, result_data, started_at, updated_at"
                    " FROM app.tasks WHERE parent_job_id = %s ORDER BY stage, task_index",
                    (job_id,))
        names = [c.name for c in cur.description]
        tasks = [dict(zip(names, r)) for r in cur.fetchall()]
    return {"job_id": job_id, "status": row[0], "result": row[1] or {}, "error": row[2],
            "seconds": seconds, "tasks": tasks, "cpu": cpu_used, "sampler": memory,
            "memory": memory.result(),
            "host_idle_mb": None if idle_mb is None else round(idle_mb, 1)}


def timed_command(command: list[str], log: Path, timeout: float, name: str,
                  env: Optional[dict[str, str]] = None,
                  postmaster: Optional[int] = None) -> dict[str, Any]:
    """A command run to its end (killed after `timeout` s), its output in `log`: seconds,
    returncode, its peak memory (VmHWM polled every 20 ms: wait4's ru_maxrss would report
    the bench process it was forked from), its CPU (wait4, as `name`) and the machine's."""
    started = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    cpu = CpuClock({}, postmaster)
    with MemorySampler(proc.pid, interval=0.02) as memory:
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "returncode": os.waitstatus_to_exitcode(status),
            **memory.result(), "cpu": cpu.stop(**{name: usage.ru_utime + usage.ru_stime})}
