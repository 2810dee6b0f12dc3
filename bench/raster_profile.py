"""process_raster's conversion alone, in a fresh process per run, without storage or a
database: services.raster_cog.make_cog on a local file as the job calls it, and again with
GDAL's block cache given in bytes (make_cog hands rasterio.Env GDAL_CACHEMAX=256, which
rasterio passes to GDALSetCacheMax64 as bytes: a 256-byte cache, no block fits); each
with its wall and CPU time and the process's peak memory (VmHWM). Also validate_raster's
time on the same file (stage 1's work besides its download).

    python -m bench.raster_profile .local/bench/raster/photo-v1.tif --tier analysis
    python -m bench.raster_profile .local/bench/raster/dem-v1.tif --repeat 3

The functions are the job's own, so this follows the code as it changes."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from .hosts import proc_status_kb
from .server import ROOT

MIB = 1024 * 1024


def _cache_bytes() -> int:
    import ctypes

    import rasterio

    libs = Path(rasterio.__file__).parent.parent / "rasterio.libs"
    lib = ctypes.CDLL(str(next(libs.glob("libgdal*"))))
    lib.GDALGetCacheMax64.restype = ctypes.c_int64
    return lib.GDALGetCacheMax64()


def convert(source: Path, tier: str, cache: Optional[int]) -> dict[str, Any]:
    """make_cog as the job calls it (cache None), or with GDAL_CACHE_MB replaced by
    `cache` (a number of bytes, as rasterio takes it)."""
    import rasterio

    import services.raster_cog as raster_cog

    if cache is not None:
        raster_cog.GDAL_CACHE_MB = cache
    with rasterio.Env(GDAL_CACHEMAX=raster_cog.GDAL_CACHE_MB):
        effective = _cache_bytes()
    with tempfile.TemporaryDirectory(prefix="raster-profile-", dir=source.parent) as d:
        started, cpu = time.perf_counter(), os.times()
        made = raster_cog.make_cog(source, Path(d) / "cog.tif", tier, {"jpeg_quality": 85})
        wall, after = time.perf_counter() - started, os.times()
    return {"tier": tier, "gdal_cachemax_given": raster_cog.GDAL_CACHE_MB,
            "gdal_cache_bytes": effective, "seconds": round(wall, 2),
            "cpu": round(after.user + after.system - cpu.user - cpu.system, 2),
            "steps": made["seconds"], "size": made["size"],
            "peak_mb": round((proc_status_kb(os.getpid(), "VmHWM") or 0) / 1024)}


def validate(source: Path) -> dict[str, Any]:
    from services.raster_validation import validate_raster

    started = time.perf_counter()
    report = validate_raster(str(source), source.name, {})
    return {"validate_raster_seconds": round(time.perf_counter() - started, 2),
            "valid": report["valid"], "sample": report["sample"]["rows"]}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.raster_profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", type=Path)
    p.add_argument("--tier", default="analysis",
                   choices=("analysis", "visualization", "archive"))
    p.add_argument("--repeat", type=int, default=2, help="runs of each, interleaved (2)")
    p.add_argument("--run", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    source = args.file.resolve()
    if args.run:
        out = validate(source) if args.run == "validate" else \
            convert(source, args.tier, None if args.run == "job" else 256 * MIB)
        print(json.dumps(out))
        return 0
    for attempt in range(args.repeat):
        for run in ("job", "bytes", "validate"):
            result = subprocess.run([sys.executable, "-m", "bench.raster_profile",
                                     str(source), "--tier", args.tier, "--run", run],
                                    cwd=ROOT, capture_output=True, text=True, check=True)
            label = {"job": "make_cog as the job calls it", "validate": "validate_raster",
                     "bytes": "make_cog, GDAL_CACHEMAX=256 MiB in bytes"}[run]
            print(f"{attempt + 1}. {label}: {result.stdout.strip()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
