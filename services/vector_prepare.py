"""ingest_vector's stage 1 (one task): claim the target table, download the file, read it
in batches, clean the geometries, map the columns, and write chunks of about 50 MB of
GeoParquet to the temp container (rows numbered from 1, so a chunk loaded again gets the
same keys); then create the job's staging table. Memory holds one chunk, not the file.
A file that makes one chunk is not uploaded: it is COPYed into the staging table batch by
batch while it is read (services/vector_stream.py), or, when that cannot be, after."""

from __future__ import annotations

import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from config import get_settings
from exceptions import PermanentError
from infrastructure.blob_storage import get_blob_storage
from infrastructure.vector_staging import GEOMETRY, VectorStaging
from services.vector_cleaning import GeometryCleaner
from services.vector_chunks import MAX_CHUNK, ChunkWriter
from services.vector_columns import Column, convert, plan_columns
from services.vector_load import load_table
from services.vector_reader import open_reader
from services.vector_sources import VectorFileError, fetch, remove
from services.vector_stream import OneChunkStream

READ_BATCH = 65_536
# A file that may make one chunk is streamed into its table as it is read: smaller batches
# keep less of the COPY for after the last one (docs/performance.md, "Vector ingest")
STREAM_BATCH = 16_384


def resolve_crs(info_crs: Optional[str], params: dict[str, Any], label: str,
                lat_lon: bool) -> Any:
    """The file's CRS: its own, or source_crs for a file without one (a CSV of latitude
    and longitude columns is in geographic degrees: EPSG:4326). A source_crs that
    contradicts the file's own is an error; none at all is an error (never guessed)."""
    from pyproj import CRS

    given = CRS.from_user_input(params["source_crs"]) if params.get("source_crs") else None
    own = CRS.from_user_input(info_crs) if info_crs else None
    if own is not None and given is not None and not _same_crs(own, given):
        raise PermanentError(
            f"source_crs {params['source_crs']} contradicts {label}'s own CRS "
            f"({own.to_string()}): leave source_crs out, or fix the file's CRS")
    crs = own or given
    if crs is None and lat_lon:
        crs = CRS.from_epsg(4326)
    if crs is None:
        raise PermanentError(
            f"{label} has no coordinate reference system: give source_crs (for example "
            "EPSG:4326); the engine never guesses one")
    return crs


def _same_crs(a: Any, b: Any) -> bool:
    if a.equals(b, ignore_axis_order=True):
        return True
    code_a, code_b = a.to_epsg(min_confidence=70), b.to_epsg(min_confidence=70)
    return code_a is not None and code_a == code_b


def _transformer(source: Any, target: Any) -> Any:
    from pyproj import Transformer

    if source.equals(target, ignore_axis_order=True):
        return None
    return Transformer.from_crs(source, target, always_xy=True)


def prepare(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    from pyproj import CRS

    job_id = context["job_id"]
    settings = get_settings()
    schema, table = params["schema"], params["table_name"]
    staging = VectorStaging()
    staging.claim(job_id, schema, table)
    blobs = get_blob_storage()
    temp = settings.silver_temp_container
    blobs.create_container(temp)
    folder = Path(tempfile.mkdtemp(prefix="ingest-vector-"))
    timings = {"download": 0.0, "read": 0.0, "clean": 0.0, "write": 0.0}
    writer: Optional[ChunkWriter] = None
    stream: Optional[OneChunkStream] = None
    try:
        started = time.monotonic()
        info_blob = blobs.get_properties(params["container_name"], params["blob_name"])
        source = fetch(blobs, params["container_name"], params["blob_name"],
                       params["file_extension"], params["converter_params"], folder)
        timings["download"] = time.monotonic() - started
        try:
            reader = open_reader(source, params["converter_params"])
            info = reader.info()
            lat_lon = "lat_name" in params["converter_params"]
            crs = resolve_crs(info.crs, params, source.label, lat_lon)
            target = CRS.from_user_input(params["target_crs"])
            srid = int(target.to_epsg())
            geometry = params.get("geometry_params") or {}
            cleaner = GeometryCleaner(_transformer(crs, target), geometry.get("simplify"),
                                      geometry.get("quantize"), source.label)
            writer = ChunkWriter(job_id, temp, folder, params.get("chunk_size"), {
                "version": "1.1.0", "primary_column": GEOMETRY,
                "columns": {GEOMETRY: {"encoding": "WKB", "geometry_types": [],
                                       "crs": target.to_json_dict()}}})
            stream = OneChunkStream(job_id, info.features, srid)
            read = _read_file(reader, info, params, cleaner, writer, stream,
                              lambda found: _run_facts(params, info_blob, found), timings)
            single = writer.finish()
        except (VectorFileError, PermanentError):
            raise
        except Exception as exc:  # what GDAL, pyarrow or GEOS say of a broken file
            if not _is_file_error(exc):
                raise
            raise VectorFileError(
                f"{source.label} cannot be read as {params['file_extension']}: "
                f"{type(exc).__name__}: {str(exc).strip()[:500]} (the file may be "
                "corrupt or truncated)") from None
        geometry_type, promote = cleaner.layer_type()
        if read.rows == 0 or not writer.chunks:
            raise PermanentError(
                f"{source.label} has no features to load ({read.rows} read, "
                f"{sum(cleaner.dropped.values())} dropped: "
                f"{dict(cleaner.dropped) or 'none'})")
        columns = read.columns or []
        found = layer_facts(cleaner, geometry_type, promote, srid)
        clock = time.monotonic()
        if stream.commit(single, geometry_type, found):  # streamed while read: loaded
            timings["load"] = stream.waited
        else:
            staging.create_staging(job_id, _pg_columns(columns), geometry_type, srid,
                                   {**_run_facts(params, info_blob, read), **found})
            if single is not None:  # the whole file is one chunk: loaded here
                load_table(job_id, 0, single, promote)
                timings["load"] = time.monotonic() - clock
        timings["write"] = writer.seconds
        return {
            "rows_read": read.rows,
            "rows_dropped": dict(cleaner.dropped),
            "rows_repaired": cleaner.repaired,
            "chunks": writer.chunks,
            "chunk_size": writer.chunk_rows,
            "geometry_type": geometry_type,
            "geometry_types_found": sorted(cleaner.types),
            "promote_to_multi": promote,
            "srid": srid,
            "source_crs": crs.to_string(),
            "layer": info.layer,
            "columns": [{"name": c.name, "type": c.pg_type, "source": c.source}
                        for c in columns],
            "columns_renamed": read.renamed,
            "bbox_target_crs": [float(v) for v in cleaner.bounds]
            if cleaner.bounds is not None else None,
            "seconds": {k: round(v, 3) for k, v in timings.items()},
        }
    finally:
        if stream is not None:
            stream.abort()  # a stream still open here failed: rolled back
        if writer is not None:
            writer.close()
        remove(folder)


@dataclass
class _Read:
    """What the pass over the file found: its columns (planned from the first batch),
    the names that changed, the columns to index, and the rows read."""
    columns: Optional[list[Column]] = None
    renamed: dict[str, str] = field(default_factory=dict)
    attributes: list[str] = field(default_factory=list)
    rows: int = 0


def _read_file(reader: Any, info: Any, params: dict[str, Any], cleaner: GeometryCleaner,
               writer: ChunkWriter, stream: OneChunkStream,
               run_facts: Callable[["_Read"], dict[str, Any]],
               timings: dict[str, float]) -> _Read:
    """Read the file a batch at a time, clean it, and hand the kept rows to the chunk
    writer and the stream."""
    found = _Read()
    most = STREAM_BATCH if 0 <= info.features < MAX_CHUNK else READ_BATCH
    batch_size = min(params.get("chunk_size") or most, most)
    clock = time.monotonic()
    for batch in reader.batches(batch_size):
        timings["read"] += time.monotonic() - clock
        clock = time.monotonic()
        found.rows += len(batch.column)
        if found.columns is None:
            found.columns, found.renamed = plan_columns(batch.attributes.schema,
                                                        info.json_fields)
            found.attributes = index_columns(params["indexes"]["attributes"],
                                             found.columns)
        kept = _kept_rows(batch, cleaner, found.columns)
        timings["clean"] += time.monotonic() - clock
        writer.add(kept)
        stream.feed(kept, cleaner.layer_type(), writer.chunk_rows, bool(writer.chunks),
                    _pg_columns(found.columns), lambda: run_facts(found))
        clock = time.monotonic()
    return found


def _kept_rows(batch: Any, cleaner: GeometryCleaner, columns: list[Column]) -> pa.Table:
    """The batch's rows the cleaning kept: the converted attributes and geom's WKB."""
    keep, geoms = cleaner.clean_batch(batch)
    mask = pa.array(keep)
    kept = convert(batch.attributes.filter(mask), columns)
    wkb = cleaned_wkb(batch, geoms, cleaner.changed).filter(mask)
    return kept.append_column(GEOMETRY, wkb) if kept.num_columns \
        else pa.table({GEOMETRY: wkb})


def _run_facts(params: dict[str, Any], info_blob: Any, read: _Read) -> dict[str, Any]:
    """What prepare stores with the run for publish: the source and the indexes asked."""
    return {"source_last_modified": info_blob.last_modified.astimezone(
                timezone.utc).isoformat().replace("+00:00", "Z"),
            "source": f"{params['container_name']}/{params['blob_name']}",
            "attribute_indexes": read.attributes}


def _pg_columns(columns: Optional[list[Column]]) -> list[tuple[str, str]]:
    return [(c.name, c.pg_type) for c in columns or []]


def layer_facts(cleaner: GeometryCleaner, geometry_type: str, promote: bool,
                srid: int) -> dict[str, Any]:
    """What publish's catalogue needs to know of the loaded rows besides their count:
    their geometry types as PostGIS names them (all multi when promoted) and their
    extent in the table's SRID."""
    types = {geometry_type} if promote else \
        {"LineString" if t == "LinearRing" else t for t in cleaner.types}
    return {"geometry_types": sorted(t.upper() for t in types), "srid": srid,
            "bounds": [float(v) for v in cleaner.bounds]
            if cleaner.bounds is not None else None}


def cleaned_wkb(batch: Any, geoms: np.ndarray, changed: np.ndarray) -> pa.Array:
    """The batch's WKB: as read where cleaning changed nothing (no round trip through
    GEOS's writer), written anew where it did."""
    changed = changed | batch.extended
    if not changed.any():
        return batch.column
    fresh = np.full(len(geoms), None, dtype=object)
    fresh[changed] = shapely.to_wkb(geoms[changed])
    if changed.all():
        return pa.array(fresh, pa.binary())
    return pc.if_else(pa.array(changed), pa.array(fresh, pa.binary()), batch.column)


def index_columns(asked: list[str], columns: list[Column]) -> list[str]:
    """indexes.attributes as the table's column names (a source column's name works too);
    an unknown one fails before anything is loaded."""
    by_name = {c.name: c.name for c in columns}
    by_source = {c.source: c.name for c in columns}
    out, unknown = [], []
    for name in asked:
        found = by_name.get(name) or by_source.get(name) or by_name.get(name.lower())
        (out if found else unknown).append(found or name)
    if unknown:
        raise PermanentError(
            f"indexes.attributes names {', '.join(unknown)}: not columns of the file (its "
            f"columns: {', '.join(c.name for c in columns) or 'none'})")
    return sorted(set(out))


def _is_file_error(exc: BaseException) -> bool:
    """An error a broken or unexpected file raises (never a storage or database one)."""
    import pyogrio.errors

    return isinstance(exc, (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError,
                            pyogrio.errors.FieldError, pyogrio.errors.GeometryError,
                            pyogrio.errors.FeatureError, pyogrio.errors.CRSError,
                            pa.ArrowException, shapely.errors.GEOSException,
                            zipfile.BadZipFile, UnicodeDecodeError)
                      ) and not _is_infrastructure(exc)


def _is_infrastructure(exc: BaseException) -> bool:
    from exceptions import TransientError

    return isinstance(exc, TransientError) or type(exc).__module__.startswith(
        ("azure", "psycopg", "urllib3", "requests"))
