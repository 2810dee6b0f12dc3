"""The measurements: a throughput run (N concurrent hello_world jobs), sequential submits,
stage-advance latency from the tasks table, SQL counts from the hosts' stats files."""

from __future__ import annotations

import http.client
import json
import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

from .cpu import CpuMeter
from .hosts import HostGroup
from .server import BenchServer

POLL_SECONDS = 0.05
SMALL_JOBS_ALONE = 50
PROGRESS_MARKS = (25, 50, 75, 100)
TASK_ROLES = ("process_task_batch", "process_task_message", "task batch")


def percentile(values: list[float], pct: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(int(round(pct / 100 * len(ordered) + 0.5)) - 1, 0)
    return ordered[min(rank, len(ordered) - 1)]


def post_json(conn: http.client.HTTPConnection, path: str, body: dict) -> tuple[int, dict]:
    data = json.dumps(body).encode()
    conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read() or b"{}")


def submit(url: str, params: dict, timeout: float = 60.0) -> tuple[float, float, int, dict]:
    """One POST on its own connection: (start epoch, seconds, status, body)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        started, t0 = time.time(), time.perf_counter()
        status, body = post_json(conn, "/api/jobs/submit/hello_world", params)
        return started, time.perf_counter() - t0, status, body
    finally:
        conn.close()


def progress(server_conn: Any) -> tuple[int, int]:
    """(tasks finished, jobs finished), cheaply: job_stages has a row per started stage."""
    done = server_conn.execute(
        "SELECT coalesce(sum(task_count - pending), 0)::int FROM app.job_stages").fetchone()[0]
    jobs = server_conn.execute(
        "SELECT count(*)::int FROM app.jobs WHERE status IN"
        " ('completed', 'failed', 'completed_with_errors')").fetchone()[0]
    return done, jobs


def wait_for_jobs(server: BenchServer, group: Optional[HostGroup], jobs: int, tasks: int,
                  timeout: float, started: float) -> dict[str, Any]:
    """Poll the database until `jobs` jobs are finished; sample host RSS at progress marks."""
    rss_at: dict[str, Any] = {}
    marks = list(PROGRESS_MARKS)
    deadline = time.monotonic() + timeout
    with server.connect() as conn:
        while True:
            done, finished = progress(conn)
            pct = 100 * done / tasks if tasks else 100
            while group is not None and marks and (pct >= marks[0] and marks[0] < 100):
                rss_at[str(marks.pop(0))] = group.rss_mb()
            if finished >= jobs:
                if group is not None:
                    rss_at["100"] = group.rss_mb()
                return {"timed_out": False, "wall_seconds": time.time() - started,
                        "rss_mb_at_pct": rss_at}
            if time.monotonic() > deadline:
                return {"timed_out": True, "wall_seconds": time.time() - started,
                        "rss_mb_at_pct": rss_at, "tasks_done": done, "jobs_done": finished}
            time.sleep(POLL_SECONDS)


def stage_advance(server: BenchServer) -> dict[str, Any]:
    """Per job: stage 1's last task finished (updated_at) -> stage 2's first task claimed
    (heartbeat), split at stage 2's tasks being created (the stage opened)."""
    with server.connect() as conn:
        rows = conn.execute(
            "WITH s1 AS (SELECT parent_job_id, max(updated_at) AS last_done FROM app.tasks"
            "  WHERE stage = 1 GROUP BY 1),"
            " s2 AS (SELECT parent_job_id, min(created_at) AS opened,"
            "  min(heartbeat) AS first_start FROM app.tasks WHERE stage = 2 GROUP BY 1)"
            " SELECT extract(epoch FROM s2.first_start - s1.last_done) * 1000 AS total,"
            " extract(epoch FROM s2.opened - s1.last_done) * 1000 AS to_open,"
            " extract(epoch FROM s2.first_start - s2.opened) * 1000 AS to_claim"
            " FROM s1 JOIN s2 USING (parent_job_id)").fetchall()
    out: dict[str, Any] = {"jobs": len(rows)}
    for i, name in enumerate(("total", "to_open", "to_claim")):
        values = [float(r[i]) for r in rows if r[i] is not None]
        out[name] = {"p50": percentile(values, 50), "p99": percentile(values, 99),
                     "max": max(values) if values else None}
    return out


def job_window(server: BenchServer) -> dict[str, Any]:
    with server.connect() as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM min(created_at)), extract(epoch FROM max(updated_at)),"
            " count(*) FILTER (WHERE status = 'completed')::int, count(*)::int,"
            " (SELECT count(*)::int FROM app.tasks WHERE status = 'completed')"
            " FROM app.jobs").fetchone()
    return {"first_created": float(row[0]), "last_updated": float(row[1]),
            "jobs_completed": row[2], "jobs": row[3], "tasks_completed": row[4]}


def sql_summary(stats: list[Optional[dict]], tasks: int) -> dict[str, Any]:
    """Sum the hosts' counters; per task, and per batch on the task path (a batch is one
    completion of received task messages: complete_many, or complete in single mode)."""
    stats = [s for s in stats if s]
    if not stats:
        return {"error": "no SQL stats files"}
    total = {w: {k: sum(s[w][k] for s in stats) for k in ("queue", "engine")}
             for w in ("statements", "transactions", "rollbacks")}
    task_path = {w: {k: sum(s["by_role"].get(r, {}).get(w, {}).get(k, 0)
                            for s in stats for r in TASK_ROLES) for k in ("queue", "engine")}
                 for w in ("statements", "transactions")}
    batches = sum(e["count"] for s in stats for e in s["by_statement"]
                  if e["role"] in TASK_ROLES and e["sql"].startswith("DELETE FROM app.queue_messages"))
    statements: dict[str, int] = {}
    for s in stats:
        for e in s["by_statement"]:
            key = f'{e["role"]}: {e["sql"]}'
            statements[key] = statements.get(key, 0) + e["count"]
    top = sorted(statements.items(), key=lambda kv: -kv[1])[:25]

    def per(value: float, n: int) -> Optional[float]:
        return value / n if n else None

    return {
        "total": total, "task_path": task_path, "batches": batches,
        "tasks_per_batch": per(tasks, batches),
        "per_task": {w: {k: per(v, tasks) for k, v in total[w].items()}
                     for w in ("statements", "transactions")},
        "per_batch_task_path": {w: {k: per(v, batches) for k, v in task_path[w].items()}
                                for w in ("statements", "transactions")},
        "top_statements": [{"count": n, "per_task": n / tasks if tasks else None,
                            "statement": k} for k, n in top],
    }


def throughput_run(server: BenchServer, *, mode: str, consumers: int, concurrency: int,
                   jobs: int, tasks_per_job: int, workdir: Path, timeout: float,
                   tag: str, job_params: Optional[dict] = None,
                   extra_env: Optional[dict] = None) -> dict[str, Any]:
    total_tasks = jobs * tasks_per_job * 2  # hello_world: two stages of n tasks
    server.truncate()
    run_dir = workdir / tag
    shutil.rmtree(run_dir, ignore_errors=True)  # no stats files of an earlier run
    result: dict[str, Any] = {"mode": mode, "consumers": consumers,
                              "task_concurrency": concurrency, "jobs": jobs,
                              "tasks_per_job": tasks_per_job, "tasks": total_tasks}
    with HostGroup(consumers, database_url=server.url, mode=mode,
                   task_concurrency=concurrency, stats_prefix=run_dir / "sql",
                   log_dir=run_dir, extra_env=extra_env) as group:
        result["rss_mb_start"] = group.rss_mb()
        meter = CpuMeter([h.pid for h in group.hosts], server.postmaster)
        params = [{"n": tasks_per_job, "message": f"bench {tag} job {i}", **(job_params or {})}
                  for i in range(jobs)]
        first = time.time()
        with ThreadPoolExecutor(jobs) as pool:
            answers = list(pool.map(
                lambda i: submit(group.hosts[i % consumers].url, params[i]), range(jobs)))
        bad = [a for a in answers if a[2] != 201]
        if bad:
            raise RuntimeError(f"submit failed: {bad[0][2]} {bad[0][3]}")
        first = min(a[0] for a in answers)
        waited = wait_for_jobs(server, group, jobs, total_tasks, timeout, first)
        result.update(waited)
        result["cpu"] = meter.stop(total_tasks)
        result["peak_rss_mb"] = group.peak_mb()
        stats = group.stop()
    if waited["timed_out"]:
        result["error"] = f"not finished within {timeout:g} s"
        return result
    window = job_window(server)
    result.update(window)
    result["seconds"] = window["last_updated"] - first
    result["tasks_per_second"] = total_tasks / result["seconds"]
    result["stage_advance_ms"] = stage_advance(server)
    result["sql"] = sql_summary(stats, total_tasks)
    ops = server.row_ops()
    result["row_ops"] = ops
    result["row_ops_per_task"] = {
        k: sum(t[k] for t in ops.values()) / total_tasks for k in ("ins", "upd", "hot_upd", "del")}
    return result


def sequential_submits(url: str, count: int, tag: str, keepalive: bool) -> dict[str, Any]:
    """count POSTs one after another of distinct n=1 jobs: client-side milliseconds."""
    host, port = url.removeprefix("http://").split(":")
    conn = None
    latencies = []
    started = time.time()
    for i in range(count):
        if conn is None:
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
        t0 = time.perf_counter()
        status, body = post_json(conn, "/api/jobs/submit/hello_world",
                                 {"n": 1, "message": f"bench {tag} {i}"})
        latencies.append((time.perf_counter() - t0) * 1000)
        if status != 201:
            raise RuntimeError(f"submit {i} answered {status}: {body}")
        if not keepalive:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()
    return {"count": count, "keepalive": keepalive, "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99), "max_ms": max(latencies),
            "mean_ms": statistics.fmean(latencies),
            "submits_per_second": count / (time.time() - started)}


def submit_latency(server: BenchServer, *, count: int, workdir: Path, concurrency: int,
                   lone_job_tasks: int, timeout: float) -> dict[str, Any]:
    """count sequential submits of distinct n=1 jobs to one host (batch mode), each on a
    new connection as curl would, while the host runs them; the same on one keep-alive
    connection; then the stage advance of those small jobs (submitted faster than one
    host finishes them), of 50 n=1 jobs one at a time, and of one job of lone_job_tasks
    tasks alone; last, submits to a host whose job trigger is off
    (the submit path alone)."""
    server.truncate()
    run_dir = workdir / "submit"
    shutil.rmtree(run_dir, ignore_errors=True)
    keepalive_count = max(count // 5, 1)
    with HostGroup(1, database_url=server.url, mode="batch", task_concurrency=concurrency,
                   stats_prefix=run_dir / "sql", log_dir=run_dir) as group:
        url = group.hosts[0].url
        meter = CpuMeter([group.hosts[0].pid], server.postmaster)
        out = sequential_submits(url, count, "fresh", keepalive=False)
        out["cpu"] = meter.stop(count)
        out["keepalive"] = sequential_submits(url, keepalive_count, "keepalive", True)
        started = time.time()
        waited = wait_for_jobs(server, None, count + keepalive_count,
                               2 * (count + keepalive_count), timeout, started)
        out["sustained_timed_out"] = waited["timed_out"]
        out["sustained_stage_advance_ms"] = stage_advance(server)
        # n=1 jobs one at a time, each finished before the next: nothing queued ahead.
        server.truncate()
        for i in range(SMALL_JOBS_ALONE):
            _, _, status, body = submit(url, {"n": 1, "message": f"bench alone {i}"})
            if status != 201:
                raise RuntimeError(f"small job submit answered {status}: {body}")
            if wait_for_jobs(server, None, i + 1, 2 * (i + 1), timeout, time.time())[
                    "timed_out"]:
                raise RuntimeError("a small job did not finish")
        out["small_jobs"] = SMALL_JOBS_ALONE
        out["small_jobs_stage_advance_ms"] = stage_advance(server)
        # One fan-out job alone: its stage 2 opens lone_job_tasks tasks, nothing else queued.
        server.truncate()
        _, _, status, body = submit(url, {"n": lone_job_tasks, "message": "bench lone job"})
        if status != 201:
            raise RuntimeError(f"lone job submit answered {status}: {body}")
        waited = wait_for_jobs(server, None, 1, 2 * lone_job_tasks, timeout, time.time())
        out["lone_job_timed_out"] = waited["timed_out"]
        out["lone_job_tasks"] = lone_job_tasks
        out["lone_job_stage_advance_ms"] = stage_advance(server)
    server.truncate()
    with HostGroup(1, database_url=server.url, mode="batch", task_concurrency=concurrency,
                   stats_prefix=run_dir / "sql-alone", log_dir=run_dir / "alone",
                   extra_env={"AzureWebJobs.process_job_message.Disabled": "true"}) as group:
        meter = CpuMeter([group.hosts[0].pid], server.postmaster)
        out["submit_path_alone"] = sequential_submits(group.hosts[0].url, keepalive_count,
                                                      "alone", keepalive=False)
        out["submit_path_alone"]["cpu"] = meter.stop(keepalive_count)
    return out


def io_bound_run(server: BenchServer, *, mode: str, concurrency: int, workers: int,
                 tasks: int, sleep: float, workdir: Path, timeout: float) -> dict[str, Any]:
    """`tasks` hello_world tasks that each wait `sleep` seconds (as on storage), on one
    host running `concurrency` handlers at once: in batch mode `workers` batch
    invocations of concurrency / workers handlers each (TASK_BATCH_CONCURRENCY), in single
    mode `concurrency` single-message invocations. Reported beside the ideal,
    tasks x sleep / concurrency."""
    if mode == "batch":
        local, env = workers, {"TASK_BATCH_CONCURRENCY": str(max(concurrency // workers, 1))}
    else:
        local, env = concurrency, {}
    env["DB_POOL_MAX_SIZE"] = str(local + concurrency + 8)
    tag = f"io-{mode}-{concurrency}"
    run = throughput_run(server, mode=mode, consumers=1, concurrency=local, jobs=1,
                         tasks_per_job=tasks // 2, workdir=workdir, timeout=timeout, tag=tag,
                         job_params={"sleep_seconds": sleep}, extra_env=env)
    run.update({"handler_concurrency": concurrency, "sleep_seconds": sleep,
                "local_task_concurrency": local, **env,
                "ideal_seconds": tasks * sleep / concurrency})
    if "seconds" in run:
        run["vs_ideal"] = run["seconds"] / run["ideal_seconds"]
    return run
