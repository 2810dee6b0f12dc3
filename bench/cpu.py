"""CPU accounting over a run, from /proc: the hosts' own CPU seconds, the PostgreSQL
server's (postmaster, its live backends, and the backends that exited meanwhile), and how
busy the machine was."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> Optional[list[str]]:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from state (3rd) on


def process_seconds(pid: int, children: bool = False) -> float:
    """utime + stime (+ cutime + cstime of waited-for children), in seconds."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    # after the command: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICKS


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            pass
    return out


def server_seconds(postmaster: Optional[int]) -> Optional[float]:
    if postmaster is None:
        return None
    return process_seconds(postmaster, children=True) + sum(
        process_seconds(c) for c in _children(postmaster))


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)  # idle + iowait
    return sum(parts) - idle, sum(parts)


def postmaster_of(conn: Any) -> Optional[int]:
    """The server's postmaster pid, when it runs on this machine (a backend's parent)."""
    backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    fields = _stat(backend)
    if fields is None:
        return None
    try:
        exe = os.readlink(f"/proc/{backend}/exe")
    except OSError:
        return None
    return int(fields[1]) if os.path.basename(exe).startswith("postgres") else None


class CpuMeter:
    def __init__(self, host_pids: list[int], postmaster: Optional[int]):
        self.host_pids, self.postmaster = host_pids, postmaster
        self.start = self._read()

    def _read(self) -> dict[str, Any]:
        return {"hosts": sum(process_seconds(p) for p in self.host_pids),
                "server": server_seconds(self.postmaster), "machine": machine_ticks(),
                "bench": process_seconds(os.getpid())}

    def stop(self, tasks: int) -> dict[str, Any]:
        end = self._read()
        hosts = end["hosts"] - self.start["hosts"]
        server = (None if end["server"] is None
                  else end["server"] - self.start["server"])
        busy = end["machine"][0] - self.start["machine"][0]
        total = end["machine"][1] - self.start["machine"][1]
        per_k = 1000 / tasks if tasks else 0
        bench = end["bench"] - self.start["bench"]
        # CPU the machine spent on anything else (other processes: a disturbed run)
        other = busy / TICKS - hosts - (server or 0) - bench
        return {"hosts_seconds": hosts, "server_seconds": server, "bench_seconds": bench,
                "other_seconds": other,
                "hosts_ms_per_1000_tasks": hosts * per_k * 1000,
                "server_ms_per_1000_tasks": None if server is None else server * per_k * 1000,
                "machine_busy_pct": 100 * busy / total if total else None}
