"""What the vector bench measures besides wall time: a process tree's memory (polled RSS and
the kernel's high-water mark), CPU seconds of the processes involved, the PostgreSQL
server's own statement durations (from its log), and ogr2ogr run as the baseline."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

from .cpu import TICKS, _children, machine_ticks, process_seconds, server_seconds
from .hosts import proc_status_kb

OGR2OGR = "/usr/bin/ogr2ogr"
# Server statements at least this long are logged (set on the bench's database only).
LOG_MIN_DURATION_MS = 50
_DURATION = re.compile(r"\[(\d+)\] LOG:  duration: ([\d.]+) ms  (?:statement|execute [^:]*): "
                       r"(.*)")


def tree(pid: int) -> list[int]:
    """pid and all its descendants (those alive now)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(_children(current))
    return out


class MemorySampler:
    """Polls the summed RSS of a process tree every `interval` seconds in a thread; the
    largest sum seen, and each process's VmHWM (the kernel's exact peak) when stopped."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid, self.interval = pid, interval
        self.peak_kb = 0
        self.hwm_kb: dict[int, int] = {}
        self.samples: list[tuple[float, int]] = []  # (time.time(), summed RSS in kB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _sample(self) -> None:
        total = 0
        for pid in tree(self.pid):
            rss = proc_status_kb(pid, "VmRSS")
            hwm = proc_status_kb(pid, "VmHWM")
            total += rss or 0
            if hwm is not None:
                self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), hwm)
        self.peak_kb = max(self.peak_kb, total)
        self.samples.append((time.time(), total))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        if not self._stop.is_set():
            self._sample()
            self._stop.set()
            self._thread.join(5)

    def peak_between(self, start: float, end: float) -> Optional[float]:
        """The largest summed RSS (MB) sampled from start to end (time.time() values)."""
        inside = [kb for t, kb in self.samples if start <= t <= end]
        return round(max(inside) / 1024, 1) if inside else None

    def result(self) -> dict[str, Any]:
        return {"peak_mb": round(self.hwm_kb.get(self.pid, 0) / 1024, 1),
                "tree_rss_peak_mb": round(self.peak_kb / 1024, 1),
                "processes": len(self.hwm_kb)}


class CpuClock:
    """CPU seconds spent by named processes (and the PostGIS server: postmaster and its
    backends; and the engine's database server, when given) between start and stop, and
    how busy the machine was."""

    def __init__(self, pids: dict[str, int], postmaster: Optional[int],
                 engine_postmaster: Optional[int] = None):
        self.pids, self.postmaster = pids, postmaster
        self.engine_postmaster = engine_postmaster
        self.start = self._read()

    def _read(self) -> dict[str, Any]:
        values: dict[str, Any] = {name: sum(process_seconds(p) for p in tree(pid))
                                  for name, pid in self.pids.items()}
        values["postgis"] = server_seconds(self.postmaster) or 0.0
        if self.engine_postmaster:
            values["engine_db"] = server_seconds(self.engine_postmaster) or 0.0
        values["bench"] = process_seconds(os.getpid())
        values["machine"] = machine_ticks()
        return values

    def stop(self, **extra: float) -> dict[str, Any]:
        """CPU seconds by process; `extra` adds processes measured otherwise (ogr2ogr's
        from wait4). "other": the machine's busy time less all of these, i.e. processes
        outside the run (a disturbed run shows here)."""
        end = self._read()
        out = {name: round(end[name] - self.start[name], 2) for name in end
               if name != "machine"}
        busy = end["machine"][0] - self.start["machine"][0]
        total = end["machine"][1] - self.start["machine"][1]
        out.update({k: round(v, 2) for k, v in extra.items()})
        out["other"] = round(busy / TICKS - sum(out.values()), 2)
        out["machine_busy_pct"] = round(100 * busy / total, 1) if total else None
        return out


class ServerLog:
    """The PostgreSQL server's log from a point on: statements that took at least
    LOG_MIN_DURATION_MS, summed by kind (COPY, CREATE INDEX, ANALYZE, ...)."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def statements(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            text = log.read().decode(errors="replace")
        out = []
        for line in text.splitlines():
            match = _DURATION.search(line)
            if match:
                out.append({"pid": int(match.group(1)),
                            "seconds": float(match.group(2)) / 1000,
                            "statement": match.group(3)[:200]})
        return out

    def summary(self) -> dict[str, Any]:
        """By kind: count and seconds; "other" also lists its five longest statements."""
        kinds: dict[str, dict[str, Any]] = {}
        for row in self.statements():
            kind = statement_kind(row["statement"])
            entry = kinds.setdefault(kind, {"count": 0, "seconds": 0.0})
            entry["count"] += 1
            entry["seconds"] = round(entry["seconds"] + row["seconds"], 3)
            if kind == "other":
                entry.setdefault("longest", []).append(
                    [round(row["seconds"], 3), row["statement"][:120]])
        if "other" in kinds:
            kinds["other"]["longest"] = sorted(kinds["other"]["longest"], reverse=True)[:5]
        return kinds


def statement_kind(statement: str) -> str:
    text = " ".join(statement.split()).upper()
    if text.startswith("COPY"):
        return "copy"
    if text.startswith("CREATE INDEX") or text.startswith("CREATE UNIQUE INDEX"):
        return "create_index_gist" if "GIST" in text else "create_index"
    if text.startswith("ALTER TABLE") and "PRIMARY KEY" in text:
        return "primary_key"
    if text.startswith("ANALYZE") or text.startswith("VACUUM"):
        return "analyze"
    if text.startswith("COMMIT") or text.startswith("END"):
        return "commit"
    return "other"


def ogr2ogr_run(source: Path, layer: str, pg: str, schema: str, table: str,
                postmaster: Optional[int], log: Path, timeout: float) -> dict[str, Any]:
    """ogr2ogr -f PostgreSQL with its defaults (COPY, a transaction per 100,000 features,
    the GiST index), timed; its peak memory (VmHWM, polled every 20 ms: wait4's ru_maxrss
    would not do, as it keeps the RSS of the bench process ogr2ogr was forked from); its
    CPU (wait4) and the server's; the server's COPY and CREATE INDEX durations."""
    exe = OGR2OGR if os.path.exists(OGR2OGR) else shutil.which("ogr2ogr")
    if exe is None:
        return {"tool": "ogr2ogr", "error": "ogr2ogr not found (Debian: apt-get install "
                                            "gdal-bin): column skipped"}
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    command = [exe, "-f", "PostgreSQL", pg, str(source), layer, "-nln", table,
               "-lco", f"SCHEMA={schema}", "-lco", "GEOMETRY_NAME=geom",
               "-lco", "SPATIAL_INDEX=GIST"]
    from .job_measure import timed_command  # (job_measure imports this module)

    server_log = ServerLog(log)
    with tempfile.TemporaryDirectory() as folder:
        output_path = Path(folder) / "ogr2ogr.log"
        run = timed_command(command, output_path, timeout, "ogr2ogr", postmaster=postmaster)
        output = output_path.read_text(errors="replace")
    shown = " ".join(command).replace(pg, "PG:<same server, bench database>")
    out: dict[str, Any] = {
        "tool": "ogr2ogr", "version": version.strip(), "command": shown,
        **run, "server_statements": server_log.summary()}
    if run["returncode"]:
        out["error"] = f"ogr2ogr exited with {run['returncode']}: {output.strip()[-500:]}"
    return out
