"""process_raster against `rio cogeo create` (issue 15, point 7), in one run on this
machine:

- two uncompressed GeoTIFFs of over 100 MB (made once, cached under .local/bench/raster/,
  bench/raster_files.py): a 3-band uint8 photo, 8000 x 5000, and a float32 DEM, 6000 x 6000;
- an Azurite and a local PostGIS server (with pgstac) of the bench's own, fresh (the vector
  bench's GeoServer); both files uploaded to bronze-rasters;
- per case (file and tier: the photo at analysis and visualization, the DEM at analysis):
  process_raster submitted over HTTP to a fresh `python -m local_host serve` (batch mode)
  and waited for, then `rio cogeo create` (rio-cogeo's CLI, the same rasterio and GDAL)
  with the tier's profile as services/raster_cog.py sets it, on the same local file.

Each run: wall time (the job: submit to its end; rio: start to exit), its ratio to rio's;
the job's time split from its tasks' rows (stage 2's own timings: download, convert,
validate, upload, item; stage walls from the tasks' timestamps); the host's peak memory
(VmHWM) and per stage, and rio's; CPU seconds of the host, Azurite, PostGIS and rio."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from .job_measure import geo_services, job_on_fresh_host, postgis_missing, \
    stage_windows, timed_command
from .raster_files import cached
from .server import ROOT, BenchServer
from .storage_runs import _storage
from .vector_runs import GeoServer

BRONZE = "bronze-rasters"
SILVER = "silver-cogs"
CASES = "photo:analysis,photo:visualization,dem:analysis"
RIO = Path(sys.executable).with_name("rio")


def rio_command(source: Path, output: Path, tier: str, dtype: str) -> list[str]:
    """`rio cogeo create` with the tier's profile exactly as make_cog sets it (the
    profile's own keys as creation options, 512 blocks and overview blocks, average
    overviews, not in memory, the mask for JPEG, tags forwarded, every CPU; GDAL_CACHEMAX
    goes in the environment: rasterio takes it only as a number, the CLI gives text). The
    cache is the 256 MB make_cog means; rasterio gives the job 256 bytes (see
    docs/performance.md and bench/raster_profile.py)."""
    from services.raster_cog import BLOCK, tier_profile

    profile = tier_profile(tier, dtype, 85)
    cli_profile = {"DEFLATE": "deflate", "JPEG": "jpeg",
                   "ZSTD": "zstd"}[profile["compress"]]
    options = [f"{k.upper()}={v}" for k, v in profile.items()
               if k not in ("driver", "interleave", "tiled", "blockxsize", "blockysize",
                            "compress")]
    command = [str(RIO), "cogeo", "create", str(source), str(output),
               "--cog-profile", cli_profile, "--blocksize", str(BLOCK),
               "--overview-blocksize", str(BLOCK), "--overview-resampling", "average",
               "--no-in-memory", "--forward-band-tags", "--forward-ns-tags",
               "--threads", "ALL_CPUS", "--co", "BIGTIFF=IF_NEEDED", "-q"]
    for option in options:
        command += ["--co", option]
    if tier == "visualization":
        command.append("--add-mask")
    return command


def rio_run(source: Path, tier: str, dtype: str, timeout: float) -> dict[str, Any]:
    """rio cogeo create, timed, with its peak memory and CPU; the COG's size."""
    from services.raster_cog import GDAL_CACHE_MB

    with tempfile.TemporaryDirectory(prefix="raster-rio-", dir=source.parent) as folder:
        output, log = Path(folder) / "out.tif", Path(folder) / "rio.log"
        command = rio_command(source, output, tier, dtype)
        out = timed_command(command, log, timeout, "rio",
                            env=dict(os.environ, GDAL_CACHEMAX=str(GDAL_CACHE_MB)))
        shown = " ".join(command).replace(str(source.parent) + "/", "").replace(
            str(output), "out.tif").replace(str(RIO), "rio")
        out.update(tool="rio", command=f"GDAL_CACHEMAX={GDAL_CACHE_MB} {shown}",
                   size=output.stat().st_size if output.exists() else None)
        if out["returncode"]:
            out["error"] = f"rio exited with {out['returncode']}: {log.read_text()[-500:]}"
    return out


def split(tasks: list[dict], wall: float) -> dict[str, Any]:
    """The job's time by part: stage 2's own timings; stage 1's download and validation
    from its own timings when its result has them ("seconds"), else its download taken
    as stage 2's (the same blob from the same storage) and the rest of its wall as the
    validation; stage walls from first claim to last completion."""
    walls, windows = stage_windows(tasks, {1: "validate", 2: "cog", 3: "stac"})
    cog = next((t["result_data"] or {} for t in tasks if t["stage"] == 2), {})
    cs = {k: float(v) for k, v in (cog.get("seconds") or {}).items()}
    first = next((t["result_data"] or {} for t in tasks if t["stage"] == 1), {})
    own = first.get("seconds") or (first.get("summary") or {}).get("seconds")
    if isinstance(own, dict) and "download" in own:
        s1_download, estimated = float(own["download"]), False
        s1_validate = float(own.get("validate", (walls["validate"] or 0) - s1_download))
    else:
        s1_download, estimated = cs.get("download", 0.0), True
        s1_validate = max((walls["validate"] or 0) - s1_download, 0.0)
    parts = {"download": round(s1_download + cs.get("download", 0.0), 3),
             "download_validate": round(s1_download, 3),
             "download_cog": cs.get("download"),
             "validate": round(s1_validate + cs.get("validate", 0.0), 3),
             "validate_raster": round(s1_validate, 3), "validate_cog": cs.get("validate"),
             "convert": cs.get("convert"), "upload": cs.get("upload"),
             "catalogue": round(cs.get("item", 0.0) + (walls["stac"] or 0), 3),
             "item": cs.get("item"), "stac_stage": walls["stac"]}
    cog_other = (walls["cog"] or 0) - sum(cs.values())
    return {"parts": parts, "stage1_download_estimated": estimated, "stage_walls": walls,
            "stage_windows": windows, "cog_other": round(cog_other, 3),
            "between_stages": round(wall - sum(v or 0 for v in walls.values()), 3),
            "cog_size": cog.get("size"), "overview_levels": cog.get("overview_levels"),
            "upload_blocks": cog.get("upload_blocks")}


def job_run(server: BenchServer, geo: GeoServer, connection_string: str,
            azurite_pid: Optional[int], blob: str, tier: str, workdir: Path,
            timeout: float, tag: str) -> dict[str, Any]:
    """process_raster of one blob at one tier on a fresh host (the local host's
    defaults)."""
    server.truncate()
    geo.quiet()
    run = job_on_fresh_host(
        server, "process_raster",
        {"blob_name": blob, "output_tier": tier, "item_id": f"{tag}-{blob[:-4]}"},
        env={"STORAGE_CONNECTION_STRING": connection_string, "GEO_DATABASE_URL": geo.url},
        pids={"azurite": azurite_pid} if azurite_pid else {}, postmaster=geo.postmaster,
        workdir=workdir, timeout=timeout, tag=tag)
    parts = split(run["tasks"], run["seconds"])
    sampler = run["sampler"]
    return {"tool": "process_raster", "tag": tag, "job_id": run["job_id"],
            "status": run["status"], "error": run["error"], "seconds": run["seconds"],
            "size": parts.pop("cog_size"), "host_idle_mb": run["host_idle_mb"],
            **run["memory"], "cpu": run["cpu"], "split": parts,
            "stage_peak_mb": {name: sampler.peak_between(*window) if window else None
                              for name, window in parts.pop("stage_windows").items()}}


def raster_runs(server: BenchServer, *, cases: str = CASES, workdir: Path,
                timeout: float, repeat: int = 1) -> dict[str, Any]:
    """Every case, `repeat` times, interleaved (job, rio, next case, ..., again)."""
    import rasterio

    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"files": {}, "runs": [], "repeat": repeat,
                           "versions": {"rasterio": rasterio.__version__,
                                        "gdal": rasterio.__gdal_version__}}
    out["error"] = postgis_missing()
    if out["error"]:
        print(f"  skipped: {out['error']}", flush=True)
        return out
    pairs = [tuple(c.split(":")) for c in cases.split(",") if c.strip()]
    for kind in dict.fromkeys(k for k, _ in pairs):
        path, made = cached(workdir, kind)
        with rasterio.open(path) as src:
            shape = {"width": src.width, "height": src.height, "bands": src.count,
                     "dtype": src.dtypes[0]}
        out["files"][kind] = {"path": str(path.relative_to(ROOT)), **shape,
                              "bytes": path.stat().st_size, "made_seconds": round(made, 1)}
        print(f"  {kind}: {shape['width']} x {shape['height']} x {shape['bands']} "
              f"{shape['dtype']}, {path.stat().st_size / 1e6:,.1f} MB", flush=True)
    with geo_services(workdir) as (geo, azurite):
        out["postgis"] = geo.info()
        storage = _storage(azurite.connection_string)
        storage.create_container(BRONZE)
        for kind, info in out["files"].items():
            started = time.perf_counter()
            storage.upload_file(BRONZE, f"{kind}.tif", ROOT / info["path"])
            info["upload_seconds"] = round(time.perf_counter() - started, 2)
        pid = azurite.proc.pid if azurite.proc is not None else None
        for attempt in range(repeat):  # interleaved, so drift hits every run
            for kind, tier in pairs:
                info, tag = out["files"][kind], f"{kind}-{tier}"
                print(f"  process_raster {tag} ...", flush=True)
                job = job_run(server, geo, azurite.connection_string, pid,
                              f"{kind}.tif", tier, workdir / "runs", timeout, tag)
                for blob in list(storage.list_blobs(SILVER)):  # Azurite's disk
                    storage.delete_blob(SILVER, getattr(blob, "name", blob))
                print(f"  rio cogeo create {tag} ...", flush=True)
                rio = rio_run(ROOT / info["path"], tier, info["dtype"], timeout)
                for run in (job, rio):
                    run.update(file=kind, tier=tier, case=tag, attempt=attempt)
                    out["runs"].append(run)
                ratio = None if rio.get("error") else job["seconds"] / rio["seconds"]
                print(f"    job {job['status']} {job['seconds']:.2f} s, peak "
                      f"{job['peak_mb']:.0f} MB; rio {rio['seconds']:.2f} s, peak "
                      f"{rio['peak_mb']:.0f} MB; "
                      f"{'-' if ratio is None else f'{ratio:.2f}'}x"
                      f"{' ' + str(job['error'])[:300] if job.get('error') else ''}"
                      f"{' ' + rio['error'] if rio.get('error') else ''}", flush=True)
    return out
