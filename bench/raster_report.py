"""The raster bench's tables: process_raster beside rio cogeo create per case, the job's
time split, and the memory and CPU behind them."""

from __future__ import annotations

from typing import Any, Optional

from .report import cpu_floor, fmt, table
from .vector_report import medians


def _s(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _mb(value: Optional[float]) -> str:
    return "-" if value is None else f"{value / 1e6:,.1f}"


def render_raster(results: dict[str, Any]) -> str:
    if results.get("error"):
        return f"Rasters: skipped ({results['error']})"
    runs, by_tag = medians([{**r, "tag": f"{r['case']} {r['tool']}"}
                            for r in results.get("runs", [])])
    out = ["Rasters: process_raster (submit to the job's end, one local host) beside rio "
           "cogeo create with the same profile on the same file"]
    m, v = results.get("machine"), results.get("versions") or {}
    if m:
        out.append(f"  machine: {m['nproc']} CPU(s) {m['cpu_model']}, {m['memory_gb']} GB, "
                   f"Python {m['python']}; rasterio {v.get('rasterio')}, GDAL "
                   f"{v.get('gdal')}")
    for kind, info in results.get("files", {}).items():
        out.append(f"  {kind}: {info['width']} x {info['height']} x {info['bands']} "
                   f"{info['dtype']}, {info['bytes'] / 1e6:,.1f} MB uncompressed GeoTIFF "
                   f"({info['path']}; upload {info.get('upload_seconds')} s)")
    rio_of = {r["case"]: r for r in runs if r["tool"] == "rio"}
    rows = []
    for run in runs:
        every = by_tag[run["tag"]]
        base = rio_of.get(run["case"])
        ratio = run["seconds"] / base["seconds"] if base and run["tool"] != "rio" and \
            not base.get("error") else None
        rows.append([run["case"], run["tool"], _s(run.get("seconds")),
                     " / ".join(_s(r.get("seconds")) for r in every),
                     "-" if ratio is None else f"{ratio:.2f}x",
                     fmt(max((r.get("peak_mb") or 0 for r in every), default=None)),
                     _mb(run.get("size")),
                     run.get("error") and "error" or run.get("status", "ok")])
    out.append(table(["case", "tool", "wall s", "wall s, every run", "vs rio",
                      "peak MB", "COG MB", "status"], rows))
    if results.get("repeat", 1) > 1:
        out.append(f"(each run {results['repeat']} times, interleaved; the run of median "
                   "wall time is shown, here and below; peak MB is the largest of the "
                   "runs)")
    jobs = [r for r in runs if r["tool"] == "process_raster" and r.get("split")]
    if jobs:
        estimated = any(r["split"].get("stage1_download_estimated") for r in jobs)
        out.append("")
        out.append("process_raster's time, seconds (stage 1's download "
                   + ("estimated as stage 2's: the validate task does not time it; "
                      if estimated else "from its own timings; ")
                   + "validate = validate_raster + the COG's check; catalogue = the item "
                   "+ the STAC stage):")
        rows = []
        for run in jobs:
            p, w, sp = run["split"]["parts"], run["split"]["stage_walls"], run["split"]
            rows.append([run["case"], f"{_s(p['download'])} ({_s(p['download_validate'])}"
                         f" + {_s(p['download_cog'])})",
                         f"{_s(p['validate'])} ({_s(p['validate_raster'])} + "
                         f"{_s(p['validate_cog'])})", _s(p["convert"]), _s(p["upload"]),
                         f"{_s(p['catalogue'])} ({_s(p['item'])} + {_s(p['stac_stage'])})",
                         f"{_s(w['validate'])} / {_s(w['cog'])} / {_s(w['stac'])}",
                         _s(sp["cog_other"]), _s(sp["between_stages"]), _s(run["seconds"])])
        out.append(table(["case", "download (stage 1 + 2)", "validate (raster + COG)",
                          "convert", "upload", "catalogue (item + stac)",
                          "stage walls validate / cog / stac", "cog stage other",
                          "between stages", "wall"], rows))
        out.append("")
        out.append("the host's memory (MB): RSS before the submit, the largest sampled in "
                   "each stage (every 0.1 s), the peak (VmHWM); rio's peak (VmHWM):")
        rows = [[run["case"], fmt(run.get("host_idle_mb")),
                 *[fmt((run.get("stage_peak_mb") or {}).get(n))
                   for n in ("validate", "cog", "stac")], fmt(run.get("peak_mb")),
                 fmt((rio_of.get(run["case"]) or {}).get("peak_mb"))] for run in jobs]
        out.append(table(["case", "idle", "validate", "cog", "stac", "host peak",
                          "rio peak"], rows))
    out.append("")
    out.append("CPU seconds during each run (other: processes outside the run; floor: the "
               "run's own CPU over the cores, the least wall time its work could take "
               "here; goal: 1.25x rio's wall):")
    rows = []
    cores = (m or {}).get("nproc")
    for run in runs:
        cpu = run.get("cpu") or {}
        base = rio_of.get(run["case"]) or {}
        goal = 1.25 * base["seconds"] if run["tool"] != "rio" and base.get("seconds") \
            else None
        rows.append([run["case"], run["tool"], _s(cpu.get("host", cpu.get("rio"))),
                     _s(cpu.get("azurite")), _s(cpu.get("postgis")),
                     _s(cpu.get("engine_db")), _s(cpu.get("other")),
                     fmt(cpu.get("machine_busy_pct"), 1), _s(cpu_floor(cpu, cores)),
                     _s(goal)])
    out.append(table(["case", "tool", "host / rio CPU", "Azurite CPU", "PostGIS CPU",
                      "engine DB CPU", "other CPU", "machine busy %", "floor s",
                      "goal s"], rows))
    command = next((r["command"] for r in runs if r["tool"] == "rio" and
                    r.get("command")), None)
    if command:
        out.append(f"rio's command (e.g.): {command}")
    return "\n".join(out)
