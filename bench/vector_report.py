"""The vector bench's tables: ingest_vector beside ogr2ogr per file, the job's time split,
and the CPU and server time behind them."""

from __future__ import annotations

from typing import Any, Optional

from .report import cpu_floor, fmt, table


def _s(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _baseline(runs: list[dict], file: str) -> Optional[dict]:
    return next((r for r in runs if r.get("file") == file and r.get("tool") == "ogr2ogr"
                 and "seconds" in r and not r.get("error")), None)


def medians(runs: list[dict]) -> tuple[list[dict], dict[str, list[dict]]]:
    """The run of median wall time of each tag (the lower middle of an even count), in
    the order the tags first ran, and every run by tag."""
    by_tag: dict[str, list[dict]] = {}
    for run in runs:
        by_tag.setdefault(run.get("tag", ""), []).append(run)
    chosen = []
    for group in by_tag.values():
        timed = sorted((r for r in group if r.get("seconds") is not None),
                       key=lambda r: r["seconds"])
        chosen.append(timed[(len(timed) - 1) // 2] if timed else group[0])
    return chosen, by_tag


def render_vector(results: dict[str, Any]) -> str:
    if results.get("error"):
        return f"Vector ingest: skipped ({results['error']})"
    runs, by_tag = medians(results.get("runs", []))
    repeat = results.get("repeat", 1)
    out = ["Vector ingest: ingest_vector (submit to the job's end, one local host) beside "
           "ogr2ogr -f PostgreSQL, same file, same PostGIS server"]
    m, pg = results.get("machine"), results.get("postgis") or {}
    if m:
        out.append(f"  machine: {m['nproc']} CPU(s) {m['cpu_model']}, {m['memory_gb']} GB, "
                   f"Python {m['python']}; {pg.get('version', '').split(' on ')[0]}, "
                   f"{pg.get('postgis', '').split(' [')[0]}, fsync={pg.get('fsync')}")
    for kind, info in results.get("files", {}).items():
        out.append(f"  {kind}: {info['features']:,} features, "
                   f"{info['bytes'] / 1e6:,.1f} MB GeoPackage ({info['path']})")
    rows = []
    for run in runs:
        base = _baseline(runs, run.get("file", ""))
        vs = (base["seconds"] / run["seconds"]) if base and run.get("seconds") else None
        chunking = "-" if run["tool"] == "ogr2ogr" else (
            f"{run.get('chunks') or 0} x {fmt(run.get('chunk_rows'))}"
            + ("" if run.get("chunk_size") else " (auto)"))
        handlers = "-" if run["tool"] == "ogr2ogr" else (
            f"{run.get('task_concurrency')} x {run.get('batch_handlers') or 16}")
        rows.append([run.get("tag", ""), run["tool"], chunking, handlers,
                     fmt(run.get("rows")), _s(run.get("seconds")),
                     fmt(run.get("rows_per_second")),
                     "-" if vs is None else f"{vs:.2f}x",
                     fmt(max((r.get("peak_mb") or 0 for r in by_tag[run.get("tag", "")]),
                             default=None)), fmt(run.get("host_idle_mb")),
                     " / ".join(_s(r.get("seconds")) for r in by_tag[run.get("tag", "")]),
                     run.get("error") and "error" or run.get("status", "ok")])
    out.append(table(["run", "tool", "chunks x rows", "invocations x handlers", "rows",
                      "wall s", "rows/s",
                      "speed vs ogr2ogr", "peak MB", "idle MB", "wall s, every run",
                      "status"], rows))
    if repeat > 1:
        out.append(f"(each run {repeat} times, interleaved; the run of median wall time is "
                   "shown, here and below; peak MB is the largest of the runs)")
    jobs = [r for r in runs if r["tool"] == "ingest_vector" and r.get("split")]
    if jobs:
        out.append("")
        out.append("ingest_vector's time, seconds summed over its tasks (load tasks run "
                   "at once, so their sums can exceed the load stage's wall time; a file of "
                   "one chunk is loaded by prepare, with no load stage):")
        rows = []
        for run in jobs:
            p, w = run["split"]["parts"], run["split"]["stage_walls"]
            rows.append([run["tag"], _s(p["download"]), _s(p["read"]), _s(p["clean"]),
                         f"{_s(p['transfer'])} ({_s(p['chunk_write'])} + "
                         f"{_s(p['chunk_download'])})", _s(p["load"]), _s(p["index"]),
                         _s(p["catalogue"]),
                         f"{_s(w['prepare'])} / {_s(w['load'])} / {_s(w['publish'])}",
                         _s(run["split"]["between_stages"])])
        out.append(table(["run", "download", "read", "clean",
                          "transfer (chunks up + down)", "load", "index", "catalogue",
                          "stage walls prepare / load / publish", "between stages"], rows))
        out.append("")
        out.append("ingest_vector's host memory (MB): RSS before the submit, the largest "
                   "sampled in each stage (every 0.1 s), and the peak (VmHWM):")
        rows = [[run["tag"], fmt(run.get("host_idle_mb")),
                 *[fmt((run.get("stage_peak_mb") or {}).get(name))
                   for name in ("prepare", "load", "publish")], fmt(run.get("peak_mb"))]
                for run in jobs]
        out.append(table(["run", "idle", "prepare", "load", "publish", "peak"], rows))
    out.append("")
    out.append("CPU seconds during each run (other: processes outside the run, a "
               "disturbed run shows here; floor: the run's own CPU over the cores, the "
               "least wall time its work could take here), and the server's own "
               "statement times (statements of 50 ms or more, from its log):")
    cores = (results.get("machine") or {}).get("nproc")
    rows = []
    for run in runs:
        cpu = run.get("cpu") or {}
        st = run.get("server_statements") or {}
        tool_cpu = cpu.get("host", cpu.get("ogr2ogr"))
        index = sum(v["seconds"] for k, v in st.items() if k.startswith("create_index")
                    or k == "primary_key")
        rows.append([run.get("tag", ""), _s(tool_cpu), _s(cpu.get("azurite")),
                     _s(cpu.get("postgis")), _s(cpu.get("engine_db")),
                     _s(cpu.get("other")),
                     fmt(cpu.get("machine_busy_pct"), 1), _s(cpu_floor(cpu, cores)),
                     _s(st.get("copy", {}).get("seconds")), _s(index or None),
                     _s(st.get("analyze", {}).get("seconds"))])
    out.append(table(["run", "host / ogr2ogr CPU", "Azurite CPU", "PostGIS CPU",
                      "engine DB CPU", "other CPU", "machine busy %", "floor s",
                      "server COPY s", "server index s",
                      "server ANALYZE s"], rows))
    return "\n".join(out)
