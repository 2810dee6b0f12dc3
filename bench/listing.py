"""The read side at scale: fill the bench database with a million jobs (and their tasks),
then time GET /api/jobs pages (with and without filters, following continuation tokens
deep into the list) and GET /api/jobs/summary over HTTP on one local host.

The jobs are written by SQL (generate_series, in chunks of one transaction each), as the
engine stores them: 30 days of jobs, newest last; 90% completed, 5% failed (with a
two-line error), 3% completed_with_errors, and the newest 1% processing or queued; 70%
hello_world, 15% summarize_container, 15% list_container_contents; two stages of
`tasks_per_job` tasks in all. The host runs with its job trigger and sweeper switched off,
so nothing changes the table while it is measured.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlencode

from .hosts import Host

CHUNK = 100_000
DAYS = 30

FILL_JOBS = """
INSERT INTO app.jobs (job_id, job_type, parameters, status, stage, total_stages, attempt,
    stage_results, metadata, result_data, error_details, created_at, updated_at, queued_at,
    started_at, finished_at)
SELECT g.job_id, g.job_type, jsonb_build_object('n', 1, 'message', 'bench ' || g.i),
    g.status, CASE WHEN g.status IN ('queued', 'processing') THEN 1 ELSE 2 END, 2, 1,
    '{}'::jsonb, '{}'::jsonb,
    CASE WHEN g.status LIKE 'completed%%' THEN '{"ok": true}'::jsonb END,
    CASE WHEN g.status = 'failed' THEN 'Task ' || g.job_id || '-s1-0 failed: boom'
         || E'\\nTraceback (most recent call last): ...' END,
    g.created, g.created + interval '3 seconds', g.created,
    CASE WHEN g.status <> 'queued' THEN g.created + interval '10 milliseconds' END,
    CASE WHEN g.status NOT IN ('queued', 'processing') THEN g.created + interval '3 seconds'
    END
FROM (
  SELECT i, encode(sha256(('bench-job-' || i)::bytea), 'hex') AS job_id,
    CASE WHEN i %% 20 < 14 THEN 'hello_world' WHEN i %% 20 < 17 THEN 'summarize_container'
         ELSE 'list_container_contents' END AS job_type,
    CASE WHEN i > %(active_from)s THEN (CASE WHEN i %% 2 = 0 THEN 'processing' ELSE 'queued' END)
         WHEN (i * 7919) %% 100 < 90 THEN 'completed'
         WHEN (i * 7919) %% 100 < 95 THEN 'failed'
         ELSE 'completed_with_errors' END AS status,
    %(start)s::timestamptz + (i * %(step)s) * interval '1 microsecond' AS created
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i) g
"""

FILL_TASKS = """
INSERT INTO app.tasks (task_id, parent_job_id, job_type, task_type, stage, task_index,
    parameters, status, result_data, error_details, retry_count, attempt, created_at,
    updated_at, started_at, heartbeat)
SELECT j.job_id || '-s' || s || '-' || k, j.job_id, j.job_type, 'bench', s, k,
    jsonb_build_object('index', k),
    CASE WHEN j.status = 'queued' THEN 'queued'
         WHEN j.status = 'processing' THEN (CASE WHEN s = 1 THEN 'processing' ELSE 'queued' END)
         WHEN j.status = 'failed' THEN (CASE WHEN s = 1 THEN 'failed' ELSE 'cancelled' END)
         ELSE 'completed' END,
    CASE WHEN j.status LIKE 'completed%%' THEN '{"ok": true}'::jsonb END,
    CASE WHEN j.status = 'failed' AND s = 1 THEN 'boom' END, 0, 1,
    j.created_at, j.updated_at, j.started_at, j.started_at
FROM app.jobs j CROSS JOIN generate_series(1, 2) AS s
     CROSS JOIN generate_series(0, %(per_stage)s::int - 1) AS k
WHERE j.job_id IN (SELECT encode(sha256(('bench-job-' || i)::bytea), 'hex')
                   FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i)
"""


def fill(server: Any, jobs: int, tasks_per_job: int) -> dict[str, Any]:
    """A million jobs (by default) and their tasks; VACUUM ANALYZE after."""
    started = time.monotonic()
    per_stage = max(1, tasks_per_job // 2)
    step = int(DAYS * 86_400 * 1_000_000 / max(jobs, 1))
    with server.connect() as conn:
        start = conn.execute(
            "SELECT now() - make_interval(days => %s)", (DAYS,)).fetchone()[0]
        for first in range(1, jobs + 1, CHUNK):
            last = min(first + CHUNK - 1, jobs)
            params = {"first": first, "last": last, "start": start, "step": step,
                      "active_from": int(jobs * 0.99), "per_stage": per_stage}
            with conn.transaction():
                conn.execute(FILL_JOBS, params)
                conn.execute(FILL_TASKS, params)
            print(f"  {last:,} jobs ({time.monotonic() - started:.0f} s)", flush=True)
        filled = time.monotonic() - started
        conn.execute("VACUUM ANALYZE app.jobs")
        conn.execute("VACUUM ANALYZE app.tasks")
        sizes = conn.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('app.jobs')),"
            " pg_size_pretty(pg_total_relation_size('app.tasks')),"
            " (SELECT count(*) FROM app.jobs), (SELECT count(*) FROM app.tasks)").fetchone()
    return {"jobs": sizes[2], "tasks": sizes[3], "fill_seconds": round(filled, 1),
            "vacuum_seconds": round(time.monotonic() - started - filled, 1),
            "jobs_size": sizes[0], "tasks_size": sizes[1]}


class Client:
    """One keep-alive connection to the host; each request timed."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str, query: dict[str, Any]) -> tuple[float, int, dict]:
        url = path + ("?" + urlencode(query, doseq=True) if query else "")
        began = time.perf_counter()
        self.conn.request("GET", url)
        resp = self.conn.getresponse()
        body = resp.read()
        elapsed = (time.perf_counter() - began) * 1000
        return elapsed, resp.status, json.loads(body)

    def close(self) -> None:
        self.conn.close()


def _stats(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, max(0, int(round(0.99 * len(ordered))) - 1))]
    return {"requests": len(samples), "p50_ms": round(statistics.median(ordered), 2),
            "p99_ms": round(p99, 2), "max_ms": round(ordered[-1], 2)}


def _pages(client: Client, query: dict[str, Any], count: int) -> dict[str, Any]:
    """`count` list pages, following continuation tokens (from the first page again at
    the end of the list); each page's latency."""
    samples, token, rows, deepest, depth = [], None, 0, 0, 0
    for _ in range(count):
        params = dict(query, **({"continuation_token": token} if token else {}))
        elapsed, status, body = client.get("/api/jobs", params)
        if status != 200:
            raise RuntimeError(f"GET /api/jobs {params}: {status} {body}")
        samples.append(elapsed)
        rows += len(body["jobs"])
        token = body["continuation_token"]
        depth = depth + 1 if token else 0
        deepest = max(deepest, depth)
    return {**_stats(samples), "rows": rows, "deepest_page": deepest + 1}


def _summaries(client: Client, query: dict[str, Any], count: int) -> dict[str, Any]:
    samples = []
    for _ in range(count):
        elapsed, status, body = client.get("/api/jobs/summary", query)
        if status != 200:
            raise RuntimeError(f"GET /api/jobs/summary {query}: {status} {body}")
        samples.append(elapsed)
    return {**_stats(samples), "total": body["total"]}


def scenarios(window: tuple[str, str, str], prefix: str) -> list[tuple[str, str, dict]]:
    """(kind, name, query) of each measurement; window: a day's start and end, and the
    start of the last day."""
    after, before, recent = window
    return [
        ("list", "no filter", {}),
        ("list", "no filter, limit 500", {"limit": 500}),
        ("list", "status=failed (5%)", {"status": "failed"}),
        ("list", "status=queued,processing (1%)", {"status": "queued,processing"}),
        ("list", "status=completed,failed (95%)", {"status": "completed,failed"}),
        ("list", "job_type=summarize_container (15%)", {"job_type": "summarize_container"}),
        ("list", "job_type=hello_world&status=failed",
         {"job_type": "hello_world", "status": "failed"}),
        ("list", "created_after & created_before (one day)",
         {"created_after": after, "created_before": before}),
        ("list", "updated_after (the last day)", {"updated_after": recent}),
        ("list", f"id_prefix={prefix}", {"id_prefix": prefix}),
        ("summary", "no filter", {}),
        ("summary", "status=failed", {"status": "failed"}),
        ("summary", "created_after & created_before (one day)",
         {"created_after": after, "created_before": before}),
    ]


class _Capture:
    """Stands in for a connection: keeps the statement a query method would run."""

    def execute(self, sql: str, params: Any = None) -> "_Capture":
        self.sql, self.params = sql, params
        return self

    def fetchall(self) -> list:
        return []


def _plan_nodes(node: dict[str, Any], found: list[str]) -> None:
    label = node["Node Type"]
    if "Index Name" in node:
        label += f" {node['Index Name']}"
    if label not in found:
        found.append(label)
    for child in node.get("Plans", ()):
        _plan_nodes(child, found)


def plans(server: Any, window: tuple[str, str, str]) -> list[dict[str, Any]]:
    """EXPLAIN ANALYZE of each scenario's first page (or summary) as the host runs it:
    the plan's nodes (with the indexes used) and the server's execution time."""
    from core.job_listing import job_filters
    from infrastructure.job_queries import JobQueries
    from jobs import ALL_JOBS

    queries, found = JobQueries(), []
    for kind, name, query in scenarios(window, "ab"):
        filters = job_filters({k: str(v) for k, v in query.items() if k != "limit"},
                              list(ALL_JOBS))
        capture = _Capture()
        if kind == "list":
            queries.list_jobs(capture, filters, None, int(query.get("limit", 50)) + 1)
        else:
            queries.summary(capture, filters)
        with server.connect() as conn:
            plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + capture.sql,
                                capture.params).fetchone()[0][0]
        nodes: list[str] = []
        _plan_nodes(plan["Plan"], nodes)
        found.append({"kind": kind, "name": name, "nodes": nodes,
                      "execution_ms": round(plan["Execution Time"], 2)})
    return found


def listing_run(server: Any, jobs: int, tasks_per_job: int, pages: int, summaries: int,
                workdir: Path) -> dict[str, Any]:
    server.truncate()
    print(f"filling {jobs:,} jobs with {tasks_per_job} tasks each ...", flush=True)
    result: dict[str, Any] = {"fill": fill(server, jobs, tasks_per_job)}
    print(f"  {result['fill']}", flush=True)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    stamp = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
    window = (stamp(now - timedelta(days=15)), stamp(now - timedelta(days=14)),
              stamp(now - timedelta(days=1)))
    host = Host(0, server.url, mode="batch", task_concurrency=1,
                stats_prefix=workdir / "sql-stats", log_path=workdir / "host.log",
                extra_env={"AzureWebJobs.sweep.Disabled": "true",
                           "AzureWebJobs.process_job_message.Disabled": "true",
                           "SQL_STATS_FILE": ""})
    host.start()
    measured = []
    try:
        host.wait_ready()
        client = Client(host.port)
        try:
            client.get("/api/jobs", {})  # the host's first request opens its pool
            for kind, name, query in scenarios(window, "ab"):
                print(f"  {kind} {name} ...", flush=True)
                figures = (_pages(client, query, pages) if kind == "list"
                           else _summaries(client, query, summaries))
                measured.append({"kind": kind, "name": name, "query": query, **figures})
                print(f"    p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms", flush=True)
        finally:
            client.close()
    finally:
        host.stop()
    result["measurements"] = measured
    result["plans"] = plans(server, window)
    result["pages_per_list_scenario"] = pages
    result["requests_per_summary_scenario"] = summaries
    # The next runs (storage) start from empty tables: the filled jobs' active 1% would
    # otherwise be sent again by their hosts' sweepers as stranded jobs.
    server.truncate()
    return result


def render_listing(listing: Optional[dict[str, Any]]) -> str:
    if not listing:
        return ""
    fill = listing["fill"]
    lines = [f"job list over HTTP: {fill['jobs']:,} jobs ({fill['jobs_size']}), "
             f"{fill['tasks']:,} tasks ({fill['tasks_size']}); filled in "
             f"{fill['fill_seconds']} s, VACUUM ANALYZE {fill['vacuum_seconds']} s",
             "| request | filter | requests | p50 ms | p99 ms | max ms | deepest page |",
             "|---|---|---|---|---|---|---|"]
    for m in listing["measurements"]:
        lines.append(f"| {m['kind']} | {m['name']} | {m['requests']} | {m['p50_ms']} | "
                     f"{m['p99_ms']} | {m['max_ms']} | {m.get('deepest_page', '')} |")
    lines += ["", "first page's plan (EXPLAIN ANALYZE on the server)",
              "| request | filter | server ms | plan nodes |", "|---|---|---|---|"]
    for p in listing.get("plans", ()):
        lines.append(f"| {p['kind']} | {p['name']} | {p['execution_ms']} | "
                     f"{', '.join(p['nodes'])} |")
    return "\n".join(lines)
