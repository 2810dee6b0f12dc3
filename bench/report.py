"""The benchmark's figures as readable tables, and the issue's targets checked."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Optional

TARGETS = {
    "batch_tasks_per_second": 8000,
    "single_tasks_per_second": 1000,
    "engine_transactions_per_batch": 2,
    "submit_p99_ms": 20,
    "stage_advance_ms": 50,
    "memory_growth_pct": 10,  # RSS at 100% of a run vs at 25%: "flat"
}


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(line.split()[1]) for line in
                      Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": model,
            "memory_gb": round(mem_kb / 1024 / 1024, 1), "python": platform.python_version(),
            "kernel": platform.release()}


def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


RUN_CPU_PARTS = ("host", "rio", "ogr2ogr", "azurite", "postgis", "engine_db")


def cpu_floor(cpu: dict[str, Any], cores: Optional[int]) -> Optional[float]:
    """The least wall time the run's own work could take here: the CPU seconds of its
    processes (the tool or host, Azurite, the servers; not "other") over the cores."""
    spent = [cpu[k] for k in RUN_CPU_PARTS if cpu.get(k) is not None]
    return round(sum(spent) / cores, 2) if spent and cores else None


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def growth_pct(run: dict) -> Optional[float]:
    """RSS growth of the hosts from 25% to 100% of the run (summed over hosts)."""
    at = run.get("rss_mb_at_pct", {})
    if "25" not in at or "100" not in at:
        return None
    early, late = sum(v or 0 for v in at["25"]), sum(v or 0 for v in at["100"])
    return 100 * (late - early) / early if early else None


def run_rows(runs: list[dict], tps_baseline: Optional[float]) -> str:
    headers = ["mode", "consumers", "conc", "tasks", "seconds", "tasks/s", "/pgbench tps",
               "advance p50 ms", "advance max ms", "hosts RSS MB at 25/50/75/100%",
               "peak MB (largest host)"]
    rows = []
    for r in runs:
        head = [r["mode"], str(r["consumers"]), str(r["task_concurrency"]), str(r["tasks"])]
        if "error" in r:
            rows.append(head + ["error: " + r["error"]] + [""] * 6)
            continue
        adv, rss = r["stage_advance_ms"]["total"], r["rss_mb_at_pct"]
        rows.append(head + [
            fmt(r["seconds"], 2), fmt(r["tasks_per_second"]),
            fmt(r["tasks_per_second"] / tps_baseline, 2) if tps_baseline else "-",
            fmt(adv["p50"]), fmt(adv["max"]),
            "/".join(fmt(sum(v or 0 for v in rss.get(k, []))) for k in ("25", "50", "75", "100")),
            fmt(max((v or 0) for v in r["peak_rss_mb"]))])
    return table(headers, rows)


def io_rows(runs: list[dict]) -> str:
    headers = ["mode", "tasks", "wait s", "handlers at once", "invocations x per batch",
               "seconds", "ideal s", "x ideal", "tasks/s"]
    rows = []
    for r in runs:
        if "error" in r:
            rows.append([r["mode"], "error: " + r["error"]] + [""] * 7)
            continue
        shape = (f"{r['local_task_concurrency']} x {r['TASK_BATCH_CONCURRENCY']}"
                 if r["mode"] == "batch" else f"{r['local_task_concurrency']} x 1")
        rows.append([r["mode"], str(r["tasks"]), fmt(r["sleep_seconds"], 2),
                     str(r["handler_concurrency"]), shape, fmt(r["seconds"], 2),
                     fmt(r["ideal_seconds"], 2), fmt(r["vs_ideal"], 2),
                     fmt(r["tasks_per_second"])])
    return table(headers, rows)


def cost_rows(runs: list[dict]) -> str:
    headers = ["mode", "cons", "conc", "engine stmt/task", "engine tx/task",
               "engine tx/batch (task path)", "tasks/batch", "queue stmt/task", "queue tx/task",
               "rows ins/upd(HOT)/del per task", "CPU ms/1k tasks host", "pg", "busy %",
               "other CPU s"]
    rows = []
    for r in runs:
        if "error" in r:
            continue
        sql, cpu, ops = r["sql"], r["cpu"], r["row_ops_per_task"]
        rows.append([
            r["mode"], str(r["consumers"]), str(r["task_concurrency"]),
            fmt(sql["per_task"]["statements"]["engine"], 2),
            fmt(sql["per_task"]["transactions"]["engine"], 2),
            fmt(sql["per_batch_task_path"]["transactions"]["engine"], 2),
            fmt(sql["tasks_per_batch"], 1),
            fmt(sql["per_task"]["statements"]["queue"], 2),
            fmt(sql["per_task"]["transactions"]["queue"], 2),
            f'{ops["ins"]:.2f}/{ops["upd"]:.2f}({ops["hot_upd"]:.2f})/{ops["del"]:.2f}',
            fmt(cpu["hosts_ms_per_1000_tasks"]), fmt(cpu["server_ms_per_1000_tasks"]),
            fmt(cpu["machine_busy_pct"]), fmt(cpu["other_seconds"], 1)])
    return table(headers, rows)


def best(runs: list[dict], mode: str) -> Optional[dict]:
    done = [r for r in runs if r["mode"] == mode and "error" not in r]
    return max(done, key=lambda r: r["tasks_per_second"]) if done else None


def targets(results: dict) -> list[dict]:
    runs, sub = results["runs"], results.get("submit") or {}
    checks = []

    def check(name: str, value: Optional[float], limit: float, at_least: bool, where: str):
        met = None if value is None else (value >= limit if at_least else value <= limit)
        checks.append({"target": name, "value": value, "limit": limit,
                       "rule": ">=" if at_least else "<=", "met": met, "where": where})

    for mode, key in (("batch", "batch_tasks_per_second"),
                      ("single", "single_tasks_per_second")):
        b = best(runs, mode)
        if b:
            check(f"{mode} tasks/s", b["tasks_per_second"], TARGETS[key], True,
                  f"best of {mode}: {b['consumers']} consumer(s), concurrency "
                  f"{b['task_concurrency']}")
    batch_runs = [r for r in runs if r["mode"] == "batch" and "error" not in r]
    if batch_runs:
        worst = max(r["sql"]["per_batch_task_path"]["transactions"]["engine"] or 0
                    for r in batch_runs)
        check("engine transactions per batch (task path)", worst,
              TARGETS["engine_transactions_per_batch"], False, "worst batch run")
    if sub:
        check("submit p99 ms", sub.get("p99_ms"), TARGETS["submit_p99_ms"], False,
              f"{sub['count']} sequential submits, one host")
        for label, key in (("n=1 jobs one at a time", "small_jobs_stage_advance_ms"),
                           (f"{sub.get('lone_job_tasks')}-task job alone",
                            "lone_job_stage_advance_ms")):
            adv = (sub.get(key) or {}).get("total", {})
            check(f"stage advance p99 ms, {label}", adv.get("p99"),
                  TARGETS["stage_advance_ms"], False, key)
    b = best(runs, "batch")
    if b:
        check("stage advance p50 ms, 10 jobs at once", b["stage_advance_ms"]["total"]["p50"],
              TARGETS["stage_advance_ms"], False, "best batch run (includes queue wait)")
    growths = [g for g in (growth_pct(r) for r in runs if "error" not in r) if g is not None]
    if growths:
        check("memory growth 25%->100% of a run, %", max(growths),
              TARGETS["memory_growth_pct"], False, "worst run, hosts summed")
    return checks


def render(results: dict) -> str:
    m, pg, base = results["machine"], results["postgres"], results.get("pgbench") or {}
    tps = base.get("tps")
    parts = [
        f"machine: {m['nproc']} CPU(s) {m['cpu_model']}, {m['memory_gb']} GB, "
        f"Python {m['python']}, {pg['version'].split(' on ')[0]} "
        f"({pg['server']}, fsync={pg['fsync']}, synchronous_commit="
        f"{pg['synchronous_commit']})",
        f"pgbench -N, {base.get('clients')} clients, {base.get('seconds')} s: "
        f"{fmt(tps, 1)} tps (latency {fmt(base.get('latency_ms'), 2)} ms)"
        + (f"  [{base['error']}]" if "error" in base else ""),
        "",
        "throughput: tasks/s from the first submit to the last job completed; adv = stage "
        "advance (stage 1's last task finished -> stage 2's first task claimed) over jobs;"
        " /pgbench = tasks/s / pgbench tps",
        run_rows(results["runs"], tps),
        "",
        "cost per task: SQL counted by SQL_STATS_FILE (queue = the embedded queue's own "
        "statements, which Service Bus does in Azure); rows from pg_stat_user_tables; CPU "
        "from /proc (other = CPU of processes outside the run)",
        cost_rows(results["runs"]),
    ]
    if results.get("io_runs"):
        parts += ["", "I/O-bound: hello_world tasks that each wait (sleep_seconds), against "
                  "the ideal tasks x wait / handlers at once", io_rows(results["io_runs"])]
    sub = results.get("submit")
    if sub:
        adv_small = sub["small_jobs_stage_advance_ms"]
        adv_sustained = sub["sustained_stage_advance_ms"]
        adv_lone = sub["lone_job_stage_advance_ms"]
        ka, alone = sub["keepalive"], sub["submit_path_alone"]
        parts += ["", f"submit latency over {sub['count']} sequential submits (a new "
                  f"connection each, the host running the jobs): p50 {fmt(sub['p50_ms'], 1)} ms,"
                  f" p99 {fmt(sub['p99_ms'], 1)} ms, max {fmt(sub['max_ms'], 1)} ms "
                  f"({fmt(sub['submits_per_second'])}/s; machine "
                  f"{fmt(sub['cpu']['machine_busy_pct'])}% busy, other CPU "
                  f"{fmt(sub['cpu']['other_seconds'], 1)} s)",
                  f"  on one keep-alive connection ({ka['count']}): p50 {fmt(ka['p50_ms'], 1)} "
                  f"ms, p99 {fmt(ka['p99_ms'], 1)} ms; with the job trigger off (the submit "
                  f"path alone, {alone['count']}): p50 {fmt(alone['p50_ms'], 1)} ms, p99 "
                  f"{fmt(alone['p99_ms'], 1)} ms",
                  f"stage advance: {sub['small_jobs']} n=1 jobs one at a time: p50 "
                  f"{fmt(adv_small['total']['p50'], 1)} ms, p99 "
                  f"{fmt(adv_small['total']['p99'], 1)} ms; a {sub['lone_job_tasks']}-task job "
                  f"alone: {fmt(adv_lone['total']['p50'], 1)} ms (its stage 2 created after "
                  f"{fmt(adv_lone['to_open']['p50'], 1)} ms, first task claimed "
                  f"{fmt(adv_lone['to_claim']['p50'], 1)} ms later); the "
                  f"{adv_sustained['jobs']} submitted n=1 jobs: p50 "
                  f"{fmt(adv_sustained['total']['p50'], 1)} ms, p99 "
                  f"{fmt(adv_sustained['total']['p99'], 1)} ms (job-queue backlog)"]
    big = results.get("large_stage")
    if big:
        parts += ["", f"one stage of {big['tasks']:,} tasks opened in chunks of "
                  f"{big['chunk_size']}: {fmt(big['open_seconds'], 2)} s "
                  f"({fmt(big['tasks_per_second'])} tasks/s), {big['transactions']} "
                  f"transactions, the longest {fmt(big['longest_transaction_seconds'], 3)} s; "
                  f"{big['tasks_inserted']:,} tasks and {big['task_messages_queued']:,} "
                  "messages stored"]
    parts += storage_lines(results.get("storage"))
    checks = targets(results)
    results["targets"] = checks
    parts += ["", "targets:", table(
        ["target", "measured", "rule", "met", "where"],
        [[c["target"], fmt(c["value"], 2), f"{c['rule']} {c['limit']}",
          {True: "yes", False: "NO", None: "-"}[c["met"]], c["where"]] for c in checks])]
    return "\n".join(parts)


def storage_lines(st: Optional[dict]) -> list[str]:
    """The storage part (bench/storage_runs.py), if it ran."""
    if not st:
        return []
    lines = ["", "storage (Azurite on this machine):"]
    if st.get("job"):
        job, loop = st["job"], st["loop"]
        lines.append(
            f"  {st['blobs']:,} blobs (filled in {fmt(st['fill_seconds'], 1)} s): "
            f"list_container_contents end to end {fmt(job['seconds'], 2)} s on {job['hosts']} "
            f"host(s) ({job['blobs_analyzed']} analyzed, host peak "
            f"{fmt(job['host_peak_mb'], 0)} MB) "
            f"vs a sequential SDK loop (list, properties, first 512 bytes) "
            f"{fmt(loop['seconds'], 2)} s: the job {fmt(st['job_vs_loop'], 2)}x faster")
    for key in ("summarize_small", "summarize_large"):
        run = st.get(key)
        if run:
            lines.append(
                f"  summarize_container over {run['files_scanned']:,} blobs: "
                f"{fmt(run['seconds'], 2)} s end to end (scan {fmt(run['scan_seconds'], 2)} s),"
                f" host peak {fmt(run['host_peak_mb'], 0)} MB")
    return lines
