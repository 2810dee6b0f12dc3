"""ingest_vector against ogr2ogr (issue 14, point 7), in one run on this machine:

- a GeoPackage of --vector-points points and one of --vector-polygons polygons (made once,
  cached under .local/bench/vector/, bench/vector_files.py);
- an Azurite and a local PostGIS server of the bench's own (.local/bench/vector/), fresh,
  with the server's defaults (fsync on); the geospatial migrations applied to its
  database bench_vector, which logs statements of LOG_MIN_DURATION_MS or more;
- per file: ingest_vector submitted over HTTP to a fresh `python -m local_host serve`
  (batch mode) and waited for, then `ogr2ogr -f PostgreSQL` loading the same file into the
  same server (another table of the same schema); the points once more with
  chunk_size=--vector-small-chunk, to show the host's memory follows the chunk, not the
  file.

Each run: wall time and rows/s; the host's (or ogr2ogr's) peak memory; CPU seconds of the
host, Azurite, ogr2ogr and the PostGIS server; the job's time split from its tasks' own
timings (prepare: download, read, clean, write; load: transfer, load; publish: publish,
catalogue) and its stages' wall times from the tasks' timestamps; the server's COPY,
CREATE INDEX and ANALYZE durations from its log."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Optional

from .cpu import postmaster_of
from .server import BenchServer
from .storage_runs import _storage
from .vector_files import cached
from .vector_measure import LOG_MIN_DURATION_MS, ServerLog, ogr2ogr_run

DATABASE = "bench_vector"
SCHEMA = "geo"
BRONZE = "bronze-vectors"
ENDED = ("completed", "failed", "completed_with_errors")


def _pg_dsn(port: int) -> str:
    return f"PG:host=127.0.0.1 port={port} user=postgres dbname={DATABASE}"


class GeoServer:
    """The bench's PostGIS server and its database, fresh; None-safe to close."""

    def __init__(self, folder: Path):
        from infrastructure.local_postgis import LocalPostgis

        self.folder = folder
        if folder.exists():  # a server a killed bench left running there goes first
            try:
                LocalPostgis(folder).stop_server("immediate")
            except Exception as exc:  # noqa: BLE001 - the start below says what is wrong
                print(f"  warning: could not stop the server left in {folder}: {exc}")
        shutil.rmtree(folder, ignore_errors=True)
        (folder.parent / f".{folder.name}.lock").unlink(missing_ok=True)
        self.server = LocalPostgis(folder, port=0)
        self.postmaster: Optional[int] = None

    def start(self) -> "GeoServer":
        import psycopg

        from infrastructure.geo_migrations import apply_geo_migrations

        self.server.start()
        with psycopg.connect(self.server.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
            conn.execute(f'ALTER DATABASE "{DATABASE}" SET log_min_duration_statement'
                         f" = {LOG_MIN_DURATION_MS}")
        apply_geo_migrations(self.url)
        with self.connect() as conn:
            self.postmaster = postmaster_of(conn)
        return self

    @property
    def url(self) -> str:
        return self.server.url(DATABASE)

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def info(self) -> dict[str, Any]:
        with self.connect() as conn:
            row = conn.execute(
                "SELECT version(), postgis_full_version(), current_setting('fsync'),"
                " current_setting('synchronous_commit'), current_setting('shared_buffers'),"
                " current_setting('maintenance_work_mem'), current_setting('max_wal_size')"
            ).fetchone()
        keys = ("version", "postgis", "fsync", "synchronous_commit", "shared_buffers",
                "maintenance_work_mem", "max_wal_size")
        return dict(zip(keys, [str(v).split(" USE_")[0] for v in row]))

    def quiet(self, drop: tuple[str, ...] = ()) -> None:
        """Drop the tables named, then CHECKPOINT: each run starts with no dirty pages
        of the one before."""
        with self.connect() as conn:
            for table in drop:
                conn.execute(f'DROP TABLE IF EXISTS "{SCHEMA}"."{table}"')
            conn.execute("CHECKPOINT")

    def count(self, table: str) -> Optional[int]:
        with self.connect() as conn:
            row = conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{table}",)).fetchone()
            if row[0] is None:
                return None
            return conn.execute(f'SELECT count(*) FROM "{SCHEMA}"."{table}"').fetchone()[0]

    def close(self) -> None:
        try:
            self.server.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
            (self.folder.parent / f".{self.folder.name}.lock").unlink(missing_ok=True)


def _seconds(a: Any, b: Any) -> Optional[float]:
    return None if a is None or b is None else (b - a).total_seconds()


def split(tasks: list[dict], wall: float) -> dict[str, Any]:
    """The job's time by part, from its tasks' own timings (seconds summed over tasks)
    and its stages' wall times (first claim to last completion, from the tasks' rows)."""
    by_stage: dict[int, list[dict]] = {}
    for task in tasks:
        by_stage.setdefault(task["stage"], []).append(task)
    seconds = [{k: float(v) for k, v in ((t["result_data"] or {}).get("seconds") or {}
                                         ).items()} for t in tasks]
    stage_of = [t["stage"] for t in tasks]

    def total(stage: int, key: str) -> float:
        return round(sum(s.get(key, 0.0) for s, st in zip(seconds, stage_of)
                         if st == stage), 3)

    walls, windows = {}, {}
    for stage, name in ((1, "prepare"), (2, "load"), (3, "publish")):
        rows = by_stage.get(stage, [])
        starts = [t["started_at"] for t in rows if t["started_at"] is not None]
        ends = [t["updated_at"] for t in rows]
        walls[name] = round(_seconds(min(starts), max(ends)), 3) if starts and ends \
            else None
        windows[name] = (min(starts).timestamp(), max(ends).timestamp()) \
            if starts and ends else None
    parts = {"download": total(1, "download"), "read": total(1, "read"),
             "clean": total(1, "clean"), "chunk_write": total(1, "write"),
             "chunk_download": total(2, "transfer"),
             # a file of one chunk is loaded by prepare itself (no load task)
             "load": round(total(2, "load") + total(1, "load"), 3),
             "index": total(3, "publish"), "catalogue": total(3, "catalogue")}
    parts["transfer"] = round(parts["chunk_write"] + parts["chunk_download"], 3)
    prepare_other = (walls["prepare"] or 0) - sum(
        parts[k] for k in ("download", "read", "clean", "chunk_write")) - total(1, "load")
    return {"parts": parts, "stage_walls": walls, "stage_windows": windows,
            "prepare_other": round(prepare_other, 3),
            "between_stages": round(wall - sum(v or 0 for v in walls.values()), 3),
            "load_tasks": len(by_stage.get(2, [])),
            "task_seconds": [{"stage": st, **s} for s, st in zip(seconds, stage_of)],
            "load_task_seconds": [round(s.get("transfer", 0) + s.get("load", 0), 3)
                                  for s, st in zip(seconds, stage_of) if st == 2]}


def ingest_run(server: BenchServer, geo: GeoServer, connection_string: str, blob: str,
               table: str, chunk_size: Optional[int], azurite_pid: Optional[int],
               concurrency: int, handlers: Optional[int], workdir: Path, timeout: float,
               tag: str) -> dict[str, Any]:
    """ingest_vector of one blob on a fresh host: submit over HTTP, poll the job's row.
    `concurrency` batch invocations at once (LOCAL_TASK_CONCURRENCY), each running up to
    `handlers` tasks at once (TASK_BATCH_CONCURRENCY; None: the default, 16)."""
    server.truncate()
    geo.quiet(drop=(table,))
    params: dict[str, Any] = {"blob_name": blob, "table_name": table,
                              "if_exists": "replace"}
    if chunk_size:
        params["chunk_size"] = chunk_size
    env = {"STORAGE_CONNECTION_STRING": connection_string, "GEO_DATABASE_URL": geo.url,
           "DB_POOL_MAX_SIZE": "40"}
    if handlers:
        env["TASK_BATCH_CONCURRENCY"] = str(handlers)
    log = ServerLog(geo.server.log_path)
    from .job_measure import job_on_fresh_host  # (job_measure imports this module)

    run = job_on_fresh_host(server, "ingest_vector", params, env=env,
                            pids={"azurite": azurite_pid} if azurite_pid else {},
                            postmaster=geo.postmaster, workdir=workdir, timeout=timeout,
                            tag=tag, concurrency=concurrency)
    seconds, tasks, job_id, memory = run["seconds"], run["tasks"], run["job_id"], run["sampler"]
    result = run["result"]
    rows = result.get("rows_loaded") or 0
    parts = split(tasks, seconds)
    out = {"tool": "ingest_vector", "tag": tag, "job_id": job_id, "status": run["status"],
           "error": run["error"], "seconds": seconds, "rows": rows,
           "rows_in_table": geo.count(table),
           "rows_per_second": rows / seconds if seconds else None,
           "chunks": result.get("chunks"), "chunk_size": chunk_size,
           "chunk_rows": ((tasks[0]["result_data"] or {}).get("chunk_size")
                          if tasks else None),
           "host_idle_mb": run["host_idle_mb"],
           **run["memory"], "cpu": run["cpu"], "split": parts,
           "stage_peak_mb": {name: memory.peak_between(*window) if window else None
                             for name, window in parts.pop("stage_windows").items()},
           "server_statements": log.summary(), "task_concurrency": concurrency,
           "batch_handlers": handlers}
    geo.quiet(drop=(table,))
    return out


def ogr_run(geo: GeoServer, source: Path, layer: str, table: str, timeout: float
            ) -> dict[str, Any]:
    geo.quiet(drop=(table,))
    out = ogr2ogr_run(source, layer, _pg_dsn(geo.server.port), SCHEMA, table,
                      geo.postmaster, geo.server.log_path, timeout)
    if "seconds" in out:
        out["rows_in_table"] = out["rows"] = geo.count(table)
        out["rows_per_second"] = (out["rows"] or 0) / out["seconds"]
    geo.quiet(drop=(table,))
    return out


def _ingest(out: dict, server: BenchServer, geo: GeoServer, connection_string: str,
            pid: Optional[int], path: Path, kind: str, n: int, chunk: Optional[int],
            handlers: Optional[int], concurrency: int, workdir: Path, timeout: float,
            tag: str, attempt: int) -> None:
    print(f"  ingest_vector {tag} ...", flush=True)
    run = ingest_run(server, geo, connection_string, path.name, f"{kind}_job", chunk, pid,
                     1 if handlers else concurrency, handlers, workdir / "runs", timeout,
                     tag)
    run.update(file=kind, features=n, attempt=attempt)
    out["runs"].append(run)
    print(f"    {run['status']}: {run['seconds']:.1f} s, {run['rows_per_second'] or 0:,.0f}"
          f" rows/s, host peak {run['peak_mb']:.0f} MB", flush=True)


def _ogr(out: dict, geo: GeoServer, path: Path, kind: str, n: int, timeout: float,
         attempt: int) -> None:
    print(f"  ogr2ogr {kind} ...", flush=True)
    run = ogr_run(geo, path, kind, f"{kind}_ogr", timeout)
    run.update(file=kind, features=n, tag=f"{kind}-ogr2ogr", attempt=attempt)
    out["runs"].append(run)
    print(f"    {run.get('error') or ''}{run.get('seconds', 0):.1f} s, "
          f"{run.get('rows_per_second') or 0:,.0f} rows/s, peak "
          f"{run.get('peak_mb') or 0:.0f} MB", flush=True)


def vector_runs(server: BenchServer, *, points: int, polygons: int, small_chunk: int,
                bounded_handlers: int, workdir: Path, timeout: float, repeat: int = 1,
                concurrency: int = 8) -> dict[str, Any]:
    """Every run above, `repeat` times (interleaved); `concurrency` is the host's
    LOCAL_TASK_CONCURRENCY (8, the local host's default); the small-chunk run is repeated
    with one invocation of `bounded_handlers` handlers (0: not)."""
    from infrastructure.local_postgis import LocalPostgisError, find_binaries
    from local_host.azurite import Azurite

    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"files": {}, "runs": [], "repeat": repeat}
    try:
        find_binaries(None)
    except LocalPostgisError as exc:
        out["error"] = f"PostGIS is missing: {exc.reason}; {exc.hint}"
        print(f"  skipped: {out['error']}", flush=True)
        return out
    cases = [(kind, n) for kind, n in (("points", points), ("polygons", polygons)) if n]
    for kind, n in cases:
        print(f"  {kind}: {n:,} features ...", flush=True)
        path, made = cached(workdir, kind, n)
        out["files"][kind] = {"path": str(path), "features": n,
                              "bytes": path.stat().st_size, "made_seconds": round(made, 1)}
    location = workdir / "azurite"
    shutil.rmtree(location, ignore_errors=True)
    geo = GeoServer(workdir / "postgis")
    try:
        geo.start()
        out["postgis"] = geo.info()
        with Azurite(port=0, location=location) as azurite:
            storage = _storage(azurite.connection_string)
            storage.create_container(BRONZE)
            storage.create_container("silver-temp")
            for kind, _ in cases:
                path = Path(out["files"][kind]["path"])
                started = time.perf_counter()
                storage.upload_file(BRONZE, path.name, path)
                out["files"][kind]["upload_seconds"] = round(time.perf_counter() - started,
                                                             2)
            pid = azurite.proc.pid if azurite.proc is not None else None
            for kind, n in cases:
                path = Path(out["files"][kind]["path"])
                runs = [(None, None, f"{kind}")]
                if kind == "points" and small_chunk:
                    runs.append((small_chunk, None, f"{kind}-chunk{small_chunk}"))
                    if bounded_handlers:
                        runs.append((small_chunk, bounded_handlers,
                                     f"{kind}-chunk{small_chunk}-{bounded_handlers}handlers"))
                for attempt in range(repeat):  # interleaved, so drift hits every run
                    for chunk, handlers, tag in runs:
                        _ingest(out, server, geo, azurite.connection_string, pid, path,
                                kind, n, chunk, handlers, concurrency, workdir, timeout,
                                tag, attempt)
                        if chunk is None:
                            _ogr(out, geo, path, kind, n, timeout, attempt)
    finally:
        geo.close()
        shutil.rmtree(location, ignore_errors=True)
    return out
