"""python -m bench: orchestration throughput on the local host with the embedded queue.

For each mode (batch: process_task_batch; single: process_task_message) and consumer count,
starts that many `python -m local_host serve` processes on a fresh database, submits
--jobs hello_world jobs of --tasks-per-job tasks per stage at once over HTTP, and waits for
them by polling the database. Then sequential submit latency, stage advance of jobs alone,
and pgbench -N on the same server. Prints tables; writes .local/bench/results.json.
The last part (--only-vector alone) loads a million points and 100,000 polygons with
ingest_vector beside ogr2ogr (bench/vector_runs.py) and writes .local/bench/vector.json.
Then process_raster beside rio cogeo create (--only-raster alone) on a 120 MB photo and a
144 MB DEM (bench/raster_runs.py), written to .local/bench/raster.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from .large_stage import large_stage_run
from .listing import listing_run, render_listing
from .storage_runs import storage_runs
from .server import ROOT, BenchServer
from .raster_report import render_raster
from .raster_runs import CASES as RASTER_CASES, raster_runs
from .report import machine, render
from .runs import io_bound_run, submit_latency, throughput_run
from .vector_report import render_vector
from .vector_runs import vector_runs

WORKDIR = ROOT / ".local" / "bench"
# LOCAL_TASK_CONCURRENCY per mode (see docs/performance.md for the sweep behind them).
DEFAULT_CONCURRENCY = {"batch": "4", "single": "8"}


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=10, help="concurrent jobs per run (10)")
    p.add_argument("--tasks-per-job", type=int, default=1000,
                   help="hello_world n: tasks per stage, two stages (1000)")
    p.add_argument("--consumers", default="1,2,4", help="host processes per run (1,2,4)")
    p.add_argument("--modes", default="batch,single", help="batch,single")
    p.add_argument("--batch-concurrency", default=DEFAULT_CONCURRENCY["batch"],
                   help="LOCAL_TASK_CONCURRENCY in batch mode; a list sweeps (%(default)s)")
    p.add_argument("--single-concurrency", default=DEFAULT_CONCURRENCY["single"],
                   help="LOCAL_TASK_CONCURRENCY in single mode; a list sweeps (%(default)s)")
    p.add_argument("--submits", type=int, default=1000, help="sequential submits (1000)")
    p.add_argument("--pgbench-seconds", type=int, default=10)
    p.add_argument("--run-timeout", type=float, default=240.0,
                   help="seconds one run may take before it is abandoned (240)")
    p.add_argument("--io-tasks", type=int, default=2000,
                   help="I/O-bound runs: tasks that each wait --io-sleep s; 0 skips (2000)")
    p.add_argument("--io-sleep", type=float, default=0.1)
    p.add_argument("--io-concurrency", type=int, default=16,
                   help="handlers running at once in the I/O-bound runs (16)")
    p.add_argument("--io-batch-workers", type=int, default=2,
                   help="batch invocations at once in the I/O-bound batch run (2)")
    p.add_argument("--large-stage-tasks", type=int, default=100_000,
                   help="one stage of this many tasks opened in-process; 0 skips (100000)")
    p.add_argument("--storage-blobs", type=int, default=10_000,
                   help="list_container_contents over this many Azurite blobs beside a "
                        "sequential SDK loop; 0 skips (10000)")
    p.add_argument("--summarize-blobs", type=int, default=100_000,
                   help="summarize_container over this many blobs and a tenth of them, "
                        "with the host's peak memory; 0 skips (100000)")
    p.add_argument("--only-storage", action="store_true",
                   help="run only the storage part (Azurite): make bench-storage")
    p.add_argument("--listing-jobs", type=int, default=1_000_000,
                   help="the job list: fill this many jobs, then time GET /api/jobs pages "
                        "and summaries over HTTP; 0 skips (1000000)")
    p.add_argument("--listing-tasks-per-job", type=int, default=2,
                   help="tasks stored per filled job, over two stages (2)")
    p.add_argument("--listing-pages", type=int, default=300,
                   help="list pages timed per filter, following tokens (300)")
    p.add_argument("--listing-summaries", type=int, default=30,
                   help="summaries timed per filter (30)")
    p.add_argument("--only-listing", action="store_true",
                   help="run only the job list part: make bench-listing")
    p.add_argument("--vector-points", type=int, default=1_000_000,
                   help="ingest_vector beside ogr2ogr: a GeoPackage of this many points; "
                        "0 skips (1000000)")
    p.add_argument("--vector-polygons", type=int, default=100_000,
                   help="... and one of this many polygons of 10 to 30 vertices; 0 skips "
                        "(100000)")
    p.add_argument("--vector-small-chunk", type=int, default=100_000,
                   help="the points again with this chunk_size, for the host's memory; "
                        "0 skips (100000)")
    p.add_argument("--vector-bounded-handlers", type=int, default=2,
                   help="... and once more with one batch invocation of this many "
                        "handlers (TASK_BATCH_CONCURRENCY); 0 skips (2)")
    p.add_argument("--vector-repeat", type=int, default=1,
                   help="each vector run this many times, interleaved; the tables show "
                        "the median (1)")
    p.add_argument("--only-vector", action="store_true",
                   help="run only the vector part (Azurite, PostGIS, ogr2ogr): make "
                        "bench-vector; writes .local/bench/vector.json")
    p.add_argument("--raster-cases", default=RASTER_CASES,
                   help="process_raster beside rio cogeo create: file:tier pairs (files: "
                        "photo, dem); empty skips (%(default)s)")
    p.add_argument("--raster-repeat", type=int, default=1,
                   help="each raster case this many times, interleaved; the tables show "
                        "the median (1)")
    p.add_argument("--only-raster", action="store_true",
                   help="run only the raster part (Azurite, PostGIS, rio): make "
                        "bench-raster; writes .local/bench/raster.json")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 jobs of 100, 1 consumer, 50 submits, pgbench 2 s")
    p.add_argument("--out", default=str(WORKDIR / "results.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.jobs, args.tasks_per_job, args.consumers = 2, 100, "1"
        args.submits, args.pgbench_seconds, args.run_timeout = 50, 2, 60.0
        args.io_tasks, args.large_stage_tasks = 200, 10_000
        args.storage_blobs, args.summarize_blobs = 500, 2_000
        args.listing_jobs, args.listing_pages, args.listing_summaries = 20_000, 50, 5
        args.vector_points, args.vector_polygons, args.vector_small_chunk = 20_000, 2_000, 5_000
        args.raster_cases = "photo:analysis"
    return args


def _stop_on_sigterm() -> None:
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, handler)


def _engine_runs(args: argparse.Namespace, server: BenchServer, results: dict) -> None:
    """The engine's own runs: throughput, I/O-bound, a large stage, submit latency."""
    concurrency = {"batch": int_list(args.batch_concurrency),
                   "single": int_list(args.single_concurrency)}
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        for consumers in int_list(args.consumers):
            for conc in concurrency[mode]:
                tag = f"{mode}-{consumers}x{conc}"
                print(f"run {tag}: {args.jobs} jobs x {args.tasks_per_job} x 2 stages ...",
                      flush=True)
                try:
                    run = throughput_run(
                        server, mode=mode, consumers=consumers, concurrency=conc,
                        jobs=args.jobs, tasks_per_job=args.tasks_per_job,
                        workdir=WORKDIR / "runs", timeout=args.run_timeout, tag=tag)
                except RuntimeError as exc:
                    run = {"mode": mode, "consumers": consumers, "task_concurrency": conc,
                           "tasks": args.jobs * args.tasks_per_job * 2,
                           "error": str(exc)}
                results["runs"].append(run)
                print(f"  {run.get('tasks_per_second', 0):,.0f} tasks/s"
                      if "error" not in run else f"  error: {run['error']}", flush=True)
    results["io_runs"] = []
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()] if args.io_tasks else []:
        print(f"I/O-bound run {mode}: {args.io_tasks} tasks of {args.io_sleep:g} s, "
              f"{args.io_concurrency} at once ...", flush=True)
        try:
            run = io_bound_run(server, mode=mode, concurrency=args.io_concurrency,
                               workers=args.io_batch_workers, tasks=args.io_tasks,
                               sleep=args.io_sleep, workdir=WORKDIR / "runs",
                               timeout=args.run_timeout)
        except RuntimeError as exc:
            run = {"mode": mode, "error": str(exc)}
        results["io_runs"].append(run)
        print(f"  {run['seconds']:.2f} s, ideal {run['ideal_seconds']:.2f} s "
              f"({run['vs_ideal']:.2f}x)" if "vs_ideal" in run
              else f"  error: {run.get('error')}", flush=True)
    if args.large_stage_tasks:
        chunk = int(os.environ.get("STAGE_CHUNK_SIZE", "2000"))
        print(f"opening one stage of {args.large_stage_tasks:,} tasks in chunks of "
              f"{chunk} ...", flush=True)
        results["large_stage"] = large_stage_run(server, tasks=args.large_stage_tasks,
                                                 chunk_size=chunk)
    print(f"{args.submits} sequential submits ...", flush=True)
    results["submit"] = submit_latency(
        server, count=args.submits, workdir=WORKDIR / "runs",
        concurrency=concurrency["batch"][0], lone_job_tasks=args.tasks_per_job,
        timeout=args.run_timeout)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse(argv)
    _stop_on_sigterm()
    WORKDIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict = {"command": "python -m bench " + " ".join(sys.argv[1:] if argv is None
                                                            else argv),
                     "machine": machine(), "runs": []}
    server = BenchServer(WORKDIR)
    try:
        print("starting PostgreSQL ...", flush=True)
        server.start()
        results["postgres"] = server.info()
        if args.only_listing:
            results["listing"] = listing_run(
                server, jobs=args.listing_jobs, tasks_per_job=args.listing_tasks_per_job,
                pages=args.listing_pages, summaries=args.listing_summaries,
                workdir=WORKDIR / "listing")
            print()
            print(render_listing(results["listing"]))
            return _write(args, results, started)
        if args.only_vector:
            _vector(args, server, results)
            print()
            print(render_vector(results["vector"]))
            return 0
        if args.only_raster:
            _raster(args, server, results)
            print()
            print(render_raster(results["raster"]))
            return 0
        print(f"pgbench -N for {args.pgbench_seconds} s ...", flush=True)
        results["pgbench"] = server.pgbench(args.pgbench_seconds)
        print(f"  {results['pgbench']}", flush=True)
        if not args.only_storage:
            _engine_runs(args, server, results)
            if args.listing_jobs:
                results["listing"] = listing_run(
                    server, jobs=args.listing_jobs,
                    tasks_per_job=args.listing_tasks_per_job, pages=args.listing_pages,
                    summaries=args.listing_summaries, workdir=WORKDIR / "listing")
        if args.storage_blobs or args.summarize_blobs:
            print(f"storage: list_container_contents over {args.storage_blobs:,} Azurite "
                  f"blobs beside a sequential loop; summarize_container over "
                  f"{args.summarize_blobs:,} ...", flush=True)
            results["storage"] = storage_runs(
                server, blobs=args.storage_blobs, summarize_blobs=args.summarize_blobs,
                workdir=WORKDIR / "storage", timeout=max(args.run_timeout, 900.0))
        if (args.vector_points or args.vector_polygons) and not args.only_storage:
            _vector(args, server, results)
        if args.raster_cases.strip() and not args.only_storage:
            _raster(args, server, results)
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        server.close()
    print()
    print(render(results))
    if results.get("listing"):
        print()
        print(render_listing(results["listing"]))
    if results.get("vector"):
        print()
        print(render_vector(results["vector"]))
    if results.get("raster"):
        print()
        print(render_raster(results["raster"]))
    return _write(args, results, started)


def _vector(args: argparse.Namespace, server: BenchServer, results: dict) -> None:
    """ingest_vector beside ogr2ogr; also written to .local/bench/vector.json."""
    print(f"vector: ingest_vector beside ogr2ogr on {args.vector_points:,} points and "
          f"{args.vector_polygons:,} polygons ...", flush=True)
    started = time.monotonic()
    results["vector"] = vector_runs(
        server, points=args.vector_points, polygons=args.vector_polygons,
        small_chunk=args.vector_small_chunk, bounded_handlers=args.vector_bounded_handlers,
        workdir=WORKDIR / "vector", timeout=max(args.run_timeout, 900.0),
        repeat=max(args.vector_repeat, 1))
    results["vector"].update(machine=results["machine"],
                             seconds=round(time.monotonic() - started, 1))
    out = WORKDIR / "vector.json"
    out.write_text(json.dumps({"command": results["command"], **results["vector"]},
                              indent=1, default=str))
    print(f"  vector results in {out}", flush=True)


def _raster(args: argparse.Namespace, server: BenchServer, results: dict) -> None:
    """process_raster beside rio cogeo create; also written to .local/bench/raster.json."""
    print(f"rasters: process_raster beside rio cogeo create ({args.raster_cases}) ...",
          flush=True)
    started = time.monotonic()
    results["raster"] = raster_runs(server, cases=args.raster_cases,
                                    workdir=WORKDIR / "raster",
                                    timeout=max(args.run_timeout, 900.0),
                                    repeat=max(args.raster_repeat, 1))
    results["raster"].update(machine=results["machine"],
                             seconds=round(time.monotonic() - started, 1))
    out = WORKDIR / "raster.json"
    out.write_text(json.dumps({"command": results["command"], **results["raster"]},
                              indent=1, default=str))
    print(f"  raster results in {out}", flush=True)


def _write(args: argparse.Namespace, results: dict, started: float) -> int:
    results["elapsed_seconds"] = time.monotonic() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\n{results['elapsed_seconds']:.0f} s in all; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
