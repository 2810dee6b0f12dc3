"""Where ingest_vector's CPU goes, step by step, in one process without storage or a
database: the steps prepare and load run on a file, timed (and the load steps' memory
measured in a fresh process per chunk, from VmRSS and VmHWM):

    python -m bench.vector_profile .local/bench/vector/points-1000000-v1.gpkg
    python -m bench.vector_profile FILE --chunk-size 100000

prepare: read (pyogrio's Arrow batches), clean (GeometryCleaner: WKB -> GEOS, checks,
repairs), convert (the attribute columns), to_wkb (the WKB column: as read where the
cleaning changed nothing, else GEOS -> WKB), parquet write (the chunk, zstd); load, per
chunk: parquet read, binary (the rows in COPY's binary format: the job's way when every
column's type allows), and the CSV way: hex (the geometries as hex WKB), csv (pyarrow's
CSV writer). The functions are the job's own
(services/), so this follows the code as it changes; it is not the job's code path for
storage or COPY."""

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


def _mb(field: str) -> float:
    return round((proc_status_kb(os.getpid(), field) or 0) / 1024, 1)


def prepare_steps(path: Path, chunk_rows: int, folder: Path) -> dict[str, Any]:
    import numpy as np  # noqa: F401  (imported before the clock, as the job has)
    import pyarrow as pa
    import pyarrow.parquet as pq
    from services.vector_cleaning import GeometryCleaner
    from services.vector_columns import convert, plan_columns
    from services.vector_prepare import cleaned_wkb
    from services.vector_reader import open_reader
    from services.vector_sources import SourceFile

    fmt = path.suffix.lstrip(".").lower()
    reader = open_reader(SourceFile(path, fmt, path.name), {})
    info = reader.info()
    cleaner = GeometryCleaner(None, None, None, path.name)
    seconds = dict.fromkeys(("read", "clean", "convert", "to_wkb", "parquet_write"), 0.0)
    columns, pending, rows, chunks = None, [], 0, []

    def flush() -> None:
        nonlocal pending
        started = time.perf_counter()
        table = pa.concat_tables(pending)
        pending = []
        chunk = folder / f"chunk-{len(chunks):05d}.parquet"
        pq.write_table(table, chunk, compression="zstd")
        seconds["parquet_write"] += time.perf_counter() - started
        chunks.append(str(chunk))

    clock = time.perf_counter()
    for batch in reader.batches(min(chunk_rows, 65_536)):
        seconds["read"] += time.perf_counter() - clock
        if columns is None:
            columns, _ = plan_columns(batch.attributes.schema, info.json_fields)
        step = time.perf_counter()
        keep, geoms = cleaner.clean_batch(batch)
        seconds["clean"] += time.perf_counter() - step
        step = time.perf_counter()
        kept = convert(batch.attributes.filter(pa.array(keep)), columns)
        seconds["convert"] += time.perf_counter() - step
        step = time.perf_counter()
        wkb = cleaned_wkb(batch, geoms, cleaner.changed).filter(pa.array(keep))
        kept = kept.append_column("geom", wkb)
        seconds["to_wkb"] += time.perf_counter() - step
        pending.append(kept)
        rows += kept.num_rows
        if sum(t.num_rows for t in pending) >= chunk_rows:
            flush()
        clock = time.perf_counter()
    if pending:
        flush()
    return {"rows": rows, "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "chunks": chunks}


def load_steps(chunk: str) -> dict[str, Any]:
    """One chunk through load's conversions, with the process's peak memory (VmHWM)
    after each."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from services.vector_binary import binary_blocks, binary_types
    from services.vector_columns import plan_columns
    from services.vector_load import csv_blocks, hex_wkb

    # warm up (pyarrow's lazy modules and thread pool): a host has paid for these already
    warm = io.BytesIO()
    pq.write_table(pa.Table.from_batches(
        [next(pq.ParquetFile(chunk).iter_batches(batch_size=10))]), warm)
    hex_wkb(pq.read_table(pa.BufferReader(warm.getvalue())).column("geom"))
    memory = {"imports": _mb("VmHWM")}
    seconds = {}
    started = time.perf_counter()
    data = io.BytesIO(Path(chunk).read_bytes())  # as load_chunk holds the download
    table = pq.read_table(pa.BufferReader(data.getvalue()))
    del data
    seconds["parquet_read"] = time.perf_counter() - started
    memory["parquet_read"] = _mb("VmHWM")
    started = time.perf_counter()
    columns, _ = plan_columns(table.drop_columns(["geom"]).schema, set())
    pg_types = [c.pg_type for c in columns] + ["geometry"]
    binary_size = sum(len(block) for block in binary_blocks(table, pg_types)) \
        if binary_types({t: t for t in pg_types}, pg_types) is not None else None
    seconds["binary"] = time.perf_counter() - started
    memory["binary"] = _mb("VmHWM")
    started = time.perf_counter()
    geometry = hex_wkb(table.column("geom"))
    table = table.set_column(table.column_names.index("geom"), "geom", geometry)
    del geometry
    seconds["hex"] = time.perf_counter() - started
    memory["hex"] = _mb("VmHWM")
    started = time.perf_counter()
    size = sum(len(block) for block in csv_blocks(table))
    seconds["csv"] = time.perf_counter() - started
    memory["csv"] = _mb("VmHWM")
    return {"rows": table.num_rows, "parquet_mb": round(Path(chunk).stat().st_size / 1e6, 1),
            "csv_mb": round(size / 1e6, 1),
            "binary_mb": round(binary_size / 1e6, 1) if binary_size else None, "seconds": {k: round(v, 3) for k, v in
                                                         seconds.items()},
            "peak_mb_after": memory}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.vector_profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", type=Path)
    p.add_argument("--chunk-size", type=int, default=500_000,
                   help="rows per chunk (500000: the job's cap, and its choice for the "
                        "bench's points)")
    p.add_argument("--load-chunk", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.load_chunk:
        print(json.dumps(load_steps(args.load_chunk)))
        return 0
    with tempfile.TemporaryDirectory(prefix="vector-profile-") as folder:
        prepared = prepare_steps(args.file.resolve(), args.chunk_size, Path(folder))
        print(f"prepare, {prepared['rows']:,} rows, {len(prepared['chunks'])} chunk(s) of "
              f"up to {args.chunk_size:,}: {json.dumps(prepared['seconds'])}")
        for chunk in prepared["chunks"][:2]:
            out = subprocess.run([sys.executable, "-m", "bench.vector_profile", "x",
                                  "--load-chunk", chunk], cwd=ROOT, capture_output=True,
                                 text=True, check=True).stdout
            print(f"load, {Path(chunk).name} (a fresh process): {out.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
