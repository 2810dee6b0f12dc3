"""python -m bench.profile: where one host's time goes, for docs/performance.md.

One run of --jobs concurrent hello_world jobs on one host (as `python -m bench` runs them),
with either
  --py-spy : py-spy (pip install py-spy; not a project dependency) sampling the host,
             only while a thread holds the GIL (--gil), i.e. the host's Python CPU; prints
             the functions with the largest inclusive and own shares;
  --pg-log : PostgreSQL's log_min_duration_statement = 0 for the run; prints the server
             time per statement shape (execution plus waits for locks and CPU).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

from .hosts import HostGroup
from .runs import submit, wait_for_jobs
from .server import ROOT, BenchServer

WORKDIR = ROOT / ".local" / "bench" / "profile"


def summarize_py_spy(path: Path, top: int) -> str:
    total, own, inclusive = 0, collections.Counter(), collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")[1:]]
        n = int(count)
        total += n
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    out = [f"{total} samples with the GIL held", "", "inclusive:"]
    out += [f"{100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    out += ["", "own:"]
    out += [f"{100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top // 2)]
    return "\n".join(out)


def summarize_pg_log(text: str, tasks: int, top: int) -> str:
    durations: dict[str, list[float]] = collections.defaultdict(list)
    for m in re.finditer(r"duration: ([\d.]+) ms  (?:statement|execute [^:]*): (.*)", text):
        durations[" ".join(m.group(2).split())[:100]].append(float(m.group(1)))
    total = sum(sum(v) for v in durations.values())
    out = [f"server time {total:,.0f} ms in all, {total / tasks:.3f} ms per task", "",
           f"{'ms':>8} {'calls':>6} {'avg ms':>8} {'ms/task':>8}  statement"]
    for q, v in sorted(durations.items(), key=lambda kv: -sum(kv[1]))[:top]:
        out.append(f"{sum(v):8.0f} {len(v):6d} {sum(v) / len(v):8.3f} "
                   f"{sum(v) / tasks:8.4f}  {q}")
    return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("batch", "single"), default="batch")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--jobs", type=int, default=10)
    p.add_argument("--tasks-per-job", type=int, default=1000)
    p.add_argument("--top", type=int, default=30)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--py-spy", action="store_true")
    what.add_argument("--pg-log", action="store_true")
    args = p.parse_args(argv)
    spy_exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if args.py_spy and not Path(spy_exe).exists():
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 1
    tasks = args.jobs * args.tasks_per_job * 2
    WORKDIR.mkdir(parents=True, exist_ok=True)
    server = BenchServer(WORKDIR)
    try:
        server.start()
        log_path = server.pgdata / "log" if server.pgdata else None
        if args.pg_log:
            if log_path is None:
                print("--pg-log needs the embedded server (unset DATABASE_URL)",
                      file=sys.stderr)
                return 1
            with server.admin() as conn:
                conn.execute("ALTER SYSTEM SET log_min_duration_statement = 0")
                conn.execute("SELECT pg_reload_conf()")
        server.truncate()
        with HostGroup(1, database_url=server.url, mode=args.mode,
                       task_concurrency=args.concurrency, stats_prefix=WORKDIR / "sql",
                       log_dir=WORKDIR) as group:
            host = group.hosts[0]
            spy, out = None, WORKDIR / "py-spy.txt"
            if args.py_spy:
                spy = subprocess.Popen(
                    [spy_exe, "record", "-p", str(host.pid), "-o", str(out), "-f", "raw",
                     "-r", "250", "--threads", "--nonblocking", "--gil"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1.5)
            log_start = log_path.stat().st_size if log_path else 0
            started = time.time()
            with ThreadPoolExecutor(args.jobs) as pool:
                list(pool.map(lambda i: submit(host.url, {
                    "n": args.tasks_per_job, "message": f"profile {i}"}), range(args.jobs)))
            waited = wait_for_jobs(server, None, args.jobs, tasks, 600, started)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
        print(f"{args.mode}, concurrency {args.concurrency}: {tasks} tasks in "
              f"{waited['wall_seconds']:.2f} s ({tasks / waited['wall_seconds']:,.0f} tasks/s,"
              f" slowed by the measuring)\n")
        if args.py_spy:
            print(summarize_py_spy(out, args.top))
        else:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                f.seek(log_start)
                print(summarize_pg_log(f.read(), tasks, args.top))
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
