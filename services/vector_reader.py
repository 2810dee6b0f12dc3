"""ingest_vector's reader: a vector file as a stream of batches (attributes as an Arrow
table, geometries as WKB), never the whole file in memory.

GDAL's formats are read with pyogrio's Arrow stream. Curved geometries (CircularString,
CurvePolygon, MultiSurface...) pass through GDAL's Arrow stream as they are, and GEOS
cannot read them: a batch holding any is read again through pyogrio's other reader, which
has GDAL linearize them, before shapely sees them. GeoParquet is read by row groups with
pyarrow (pyogrio's GDAL has no Parquet driver)."""

from __future__ import annotations

import contextlib
import json
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import numpy as np
import pyarrow as pa

from services.vector_producers import dbf_encoding, surface_as_multipolygon
from services.vector_sources import SourceFile, VectorFileError

# ISO WKB type codes (modulo 1000, the Z/M offsets) GEOS cannot read: the curves and the
# surfaces; GDAL linearizes the curves (surfaces: services/vector_producers.py).
NON_LINEAR = frozenset(range(8, 18))
WKB_COLUMN_NAMES = ("wkb_geometry", "geometry", "geom", "the_geom")


@dataclass
class Batch:
    attributes: pa.Table
    column: pa.Array  # the geometries' WKB as Arrow binary
    _wkb: Optional[np.ndarray] = None

    @property
    def wkb(self) -> np.ndarray:
        """The same WKB as an object array of bytes or None (made when first asked: a
        batch of plain points is cleaned without it)."""
        if self._wkb is None:
            self._wkb = _as_objects(self.column)
        return self._wkb

    @property
    def extended(self) -> np.ndarray:
        """Which values are EWKB (an SRID or Z/M flag in the type): never kept as read."""
        return (_wkb_codes(self.column) & 0xE0000000) != 0


@dataclass
class LayerInfo:
    crs: Optional[str]
    layer: Optional[str]
    features: int = -1
    json_fields: set[str] = field(default_factory=set)


def _wkb_codes(column: pa.Array) -> np.ndarray:
    """The geometry type code of each WKB value (0 for nulls)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    column = column.cast(pa.binary()) if pa.types.is_large_binary(column.type) else column
    n = len(column)
    codes = np.zeros(n, dtype=np.uint32)
    if n == 0:
        return codes
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset:
                                                                 column.offset + n + 1]
    data = np.frombuffer(column.buffers()[2], dtype=np.uint8) if column.buffers()[2] \
        else np.zeros(0, np.uint8)
    valid = np.asarray(column.is_valid()) & (offsets[1:] - offsets[:-1] >= 5)
    starts = offsets[:-1][valid]
    little = data[starts] == 1
    raw = np.stack([data[starts + i] for i in range(1, 5)], axis=1).astype(np.uint32)
    le = raw[:, 0] | raw[:, 1] << 8 | raw[:, 2] << 16 | raw[:, 3] << 24
    be = raw[:, 3] | raw[:, 2] << 8 | raw[:, 1] << 16 | raw[:, 0] << 24
    codes[valid] = np.where(little, le, be)
    return codes


def has_curves(column: pa.Array) -> bool:
    codes = _wkb_codes(column) & 0x0FFFFFFF  # EWKB flags off
    return bool(np.isin(codes % 1000, list(NON_LINEAR)).any())


# pyogrio warns when it opens a layer of XYM geometries ('Measured (M) geometry types are
# not supported'): the M is dropped by the cleaning (as Z is), nothing to warn about.
M_WARNING = r"Measured \(M\) geometry types are not supported"


@contextlib.contextmanager
def _m_quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", M_WARNING, UserWarning)
        yield


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A layer's batch with the columns of all the layers (nulls where it has none)."""
    arrays = []
    for item in schema:
        if item.name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, item.type))
            continue
        column = table.column(item.name)
        arrays.append(column if column.type == item.type else column.cast(item.type))
    return pa.table(arrays, names=schema.names)


def _binary(column: Any) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if isinstance(column, pa.ExtensionArray):
        column = column.storage
    return column if column.type == pa.binary() else column.cast(pa.binary())


def _as_objects(column: Any) -> np.ndarray:
    return np.array(column.to_pylist(), dtype=object)


class OgrReader:
    """A GDAL-readable file (CSV, GeoJSON, GeoPackage, KML, Shapefile)."""

    def __init__(self, source: SourceFile, layer: Optional[str], open_options: dict,
                 more_layers: tuple[str, ...] = ()):
        self.source = source
        self.layer = layer
        self.options = open_options
        # A KML's folders are layers of one schema: all of them are read, in order.
        self.layers = (layer, *more_layers)

    def info(self) -> LayerInfo:
        import pyogrio

        with _m_quiet():
            meta = pyogrio.read_info(str(self.source.path), layer=self.layer,
                                     **self.options)
        json_fields = {name for name, sub in zip(meta["fields"], meta["ogr_subtypes"])
                       if sub == "OFSTJSON"}
        return LayerInfo(meta["crs"], self.layer, int(meta.get("features") or -1),
                         json_fields)

    def batches(self, size: int) -> Iterator[Batch]:
        schema = self._union_schema() if len(self.layers) > 1 else None
        for layer in self.layers:
            for batch in self._layer_batches(layer, size):
                if schema is not None:
                    batch.attributes = _conform(batch.attributes, schema)
                yield batch

    def _union_schema(self) -> pa.Schema:
        """The columns of all the layers read together (a KML's folders: each has the
        columns of its own placemarks' ExtendedData), in order of first appearance; a
        column whose type differs between layers is text."""
        import pyogrio

        fields: dict[str, pa.DataType] = {}
        for layer in self.layers:
            with _m_quiet(), pyogrio.open_arrow(
                    str(self.source.path), layer=layer, batch_size=1, use_pyarrow=True,
                    **self.options) as (meta, reader):
                names = reader.schema.names
                geometry = meta.get("geometry_name") or "wkb_geometry"
                geometry = geometry if geometry in names else next(
                    (n for n in WKB_COLUMN_NAMES if n in names), None)
                for item in reader.schema:
                    if item.name == geometry:
                        continue
                    known = fields.setdefault(item.name, item.type)
                    if known != item.type:
                        fields[item.name] = pa.string()
        return pa.schema(list(fields.items()))

    def _layer_batches(self, layer: Optional[str], size: int) -> Iterator[Batch]:
        import pyogrio

        offset = 0
        with contextlib.ExitStack() as stack:
            with _m_quiet():  # the warning comes as the layer is opened
                meta, reader = stack.enter_context(pyogrio.open_arrow(
                    str(self.source.path), layer=layer, batch_size=size,
                    use_pyarrow=True, **self.options))
            geometry = meta.get("geometry_name") or "wkb_geometry"
            for record_batch in reader:
                table = pa.Table.from_batches([record_batch])
                names = table.column_names
                geo_name = geometry if geometry in names else next(
                    (n for n in WKB_COLUMN_NAMES if n in names), None)
                if geo_name is None:
                    raise VectorFileError(f"{self.source.label} has no geometry column")
                column = table.column(geo_name)
                column = _binary(column)
                wkb = None
                if has_curves(column):
                    wkb = self._linearized(layer, offset, table.num_rows)
                    column = pa.array(list(wkb), pa.binary())
                offset += table.num_rows
                yield Batch(table.drop_columns([geo_name]), column, wkb)

    def _linearized(self, layer: Optional[str], offset: int, count: int) -> np.ndarray:
        """The batch's geometries read again by GDAL's feature reader, which linearizes
        curves (OGRSetNonLinearGeometriesEnabledFlag off)."""
        import pyogrio.raw

        with _m_quiet():
            _, _, geometry, _ = pyogrio.raw.read(
                str(self.source.path), layer=layer, columns=[], skip_features=offset,
                max_features=count, force_2d=True, **self.options)
        if len(geometry) != count:
            raise VectorFileError(f"{self.source.label}: the features changed while read")
        return np.array([surface_as_multipolygon(g) for g in geometry], dtype=object)


class ParquetReader:
    """GeoParquet, by row groups (the 'geo' metadata's primary column, WKB encoded)."""

    def __init__(self, source: SourceFile):
        import pyarrow.parquet as pq

        self.source = source
        self.file = pq.ParquetFile(str(source.path))
        raw = (self.file.schema_arrow.metadata or {}).get(b"geo")
        if raw is None:
            raise VectorFileError(
                f"{source.label} is a Parquet file without GeoParquet's 'geo' metadata: "
                "its geometry column is unknown (write it with geopandas' to_parquet)")
        self.geo = json.loads(raw)
        self.column = self.geo.get("primary_column", "geometry")
        spec = (self.geo.get("columns") or {}).get(self.column) or {}
        if spec.get("encoding", "WKB").upper() != "WKB":
            raise VectorFileError(
                f"{source.label}'s geometry column {self.column} is encoded as "
                f"{spec.get('encoding')}; only WKB GeoParquet is read")
        self.spec = spec

    def info(self) -> LayerInfo:
        if "crs" not in self.spec:
            crs: Optional[str] = "OGC:CRS84"  # GeoParquet: no crs key means OGC:CRS84
        elif self.spec["crs"] is None:
            crs = None  # explicitly unknown
        else:
            crs = json.dumps(self.spec["crs"]) if isinstance(self.spec["crs"], dict) \
                else str(self.spec["crs"])
        return LayerInfo(crs, None, self.file.metadata.num_rows)

    def batches(self, size: int) -> Iterator[Batch]:
        # GeoParquet 1.1's covering columns (a bbox struct beside the geometry, written by
        # geopandas' write_covering_bbox, GDAL, DuckDB...) describe it: not data to load.
        covering = {path[0] for path in ((self.spec.get("covering") or {}).get("bbox")
                                         or {}).values() if path}
        columns = [n for n in self.file.schema_arrow.names
                   if n not in covering or n == self.column]
        for record_batch in self.file.iter_batches(batch_size=size, columns=columns):
            table = pa.Table.from_batches([record_batch])
            if self.column not in table.column_names:
                raise VectorFileError(
                    f"{self.source.label} has no column {self.column} (its GeoParquet "
                    "primary_column)")
            column = _binary(table.column(self.column))
            yield Batch(table.drop_columns([self.column]), column)


def _layers(source: SourceFile) -> list[tuple[str, Optional[str]]]:
    import pyogrio

    return [(str(name), gtype) for name, gtype in pyogrio.list_layers(str(source.path))]


def choose_layer(source: SourceFile, wanted: Optional[str]) -> Optional[str]:
    """The layer to read: the named one, else the only one (with geometries)."""
    layers = _layers(source)
    names = [name for name, _ in layers]
    if wanted is not None:
        if wanted not in names:
            raise VectorFileError(
                f"{source.label} has no layer {wanted!r}; its layers: "
                f"{', '.join(names) or 'none'} (converter_params.layer_name)")
        if dict(layers)[wanted] is None and source.fmt == "gpkg":
            spatial = [name for name, gtype in layers if gtype is not None]
            raise VectorFileError(
                f"{source.label}'s layer {wanted!r} is a table without geometries: "
                "nothing to load as features; its layers with geometries: "
                f"{', '.join(spatial) or 'none'} (converter_params.layer_name)")
        return wanted
    spatial = [name for name, gtype in layers if gtype is not None] or names
    if not spatial:
        raise VectorFileError(f"{source.label} has no layers")
    if len(spatial) > 1:
        raise VectorFileError(
            f"{source.label} has {len(spatial)} layers ({', '.join(spatial)}): name the "
            "one to load with converter_params.layer_name")
    return spatial[0]


def csv_options(source: SourceFile, converter: dict[str, Any]) -> dict[str, Any]:
    """GDAL's CSV open options for the named geometry columns; a column not in the file
    fails naming the ones that are."""
    import pyogrio

    options = {"AUTODETECT_TYPE": "YES", "AUTODETECT_SIZE_LIMIT": "0",
               "EMPTY_STRING_AS_NULL": "YES"}
    fields = [str(f) for f in pyogrio.read_info(str(source.path))["fields"]]
    lowered = {f.lower(): f for f in fields}
    wanted = {key: converter[key] for key in ("lat_name", "lon_name", "wkt_column")
              if key in converter}
    for key, column in wanted.items():
        if column.lower() not in lowered:
            raise VectorFileError(
                f"{source.label} has no column {column!r} (converter_params.{key}); its "
                f"columns: {', '.join(fields) or 'none'}")
    if "lat_name" in wanted:
        options.update(X_POSSIBLE_NAMES=lowered[wanted["lon_name"].lower()],
                       Y_POSSIBLE_NAMES=lowered[wanted["lat_name"].lower()],
                       KEEP_GEOM_COLUMNS="YES")
    elif "wkt_column" in wanted:
        options.update(GEOM_POSSIBLE_NAMES=lowered[wanted["wkt_column"].lower()],
                       KEEP_GEOM_COLUMNS="NO")
    elif "wkt" not in lowered:
        raise VectorFileError(
            f"{source.label} is a CSV without geometry: name its coordinate columns with "
            "converter_params.lat_name and lon_name, or its WKT column with "
            f"converter_params.wkt_column (its columns: {', '.join(fields) or 'none'})")
    return options


def open_reader(source: SourceFile, converter: dict[str, Any]) -> Any:
    if source.fmt == "parquet":
        return ParquetReader(source)
    options: dict[str, Any] = {}
    layer = None
    if source.fmt == "shp" and (encoding := dbf_encoding(source.path)):
        options["encoding"] = encoding
    if source.fmt == "csv":
        options = csv_options(source, converter)
    elif source.fmt == "kml" and not converter.get("layer_name"):
        names = [name for name, _ in _layers(source)]
        if not names:
            raise VectorFileError(f"{source.label} has no layers")
        return OgrReader(source, names[0], options, tuple(names[1:]))
    elif source.fmt in ("gpkg", "kml"):
        layer = choose_layer(source, converter.get("layer_name"))
    elif converter.get("layer_name"):
        layer = choose_layer(source, converter["layer_name"])
    return OgrReader(source, layer, options)
