"""ingest_vector's geometry cleaning, a batch at a time (vectorized with shapely 2):

    unreadable, null and empty geometries are dropped and counted by reason, and so are
    geometries with NaN or infinite coordinates (non_finite_coordinates);
    Z and M are dropped (2D, an XYM geometry's M too);
    invalid ones are repaired with make_valid, keeping the parts of the original's
    dimension (a polygon stays polygonal); one that collapses is dropped;
    reprojected to the target CRS; optionally simplified and snapped to a grid.

The layer's geometry types are collected as it goes: points, lines and polygons cannot
share a column, so a second family fails the file naming the types found; single and
multi types of one family are promoted to the multi type."""

from __future__ import annotations

import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import numpy as np
import pyarrow as pa
import shapely

from services.vector_sources import VectorFileError

FAMILY = {"Point": "point", "MultiPoint": "point", "LineString": "line",
          "LinearRing": "line", "MultiLineString": "line", "Polygon": "polygon",
          "MultiPolygon": "polygon", "GeometryCollection": "collection"}
MULTI = {"point": "MultiPoint", "line": "MultiLineString", "polygon": "MultiPolygon",
         "collection": "GeometryCollection"}
SINGLE = {"point": "Point", "line": "LineString", "polygon": "Polygon",
          "collection": "GeometryCollection"}
TYPE_NAMES = ["Point", "LineString", "LinearRing", "Polygon", "MultiPoint",
              "MultiLineString", "MultiPolygon", "GeometryCollection"]


def _same_dimension(repaired: Any, dimension: int) -> Optional[Any]:
    """The parts of a repaired geometry with the original's dimension, as one geometry
    (None when nothing of it is left)."""
    parts = [p for p in shapely.get_parts(repaired) if not p.is_empty]
    flat = []
    for part in parts:
        if part.geom_type == "GeometryCollection":
            flat.extend(q for q in shapely.get_parts(part) if not q.is_empty)
        else:
            flat.append(part)
    kept = [p for p in flat if shapely.get_dimensions(p) == dimension]
    if not kept:
        return None
    if len(kept) == 1:
        return kept[0]
    if dimension == 2:
        return shapely.union_all(kept)
    if dimension == 1:
        return shapely.multilinestrings(
            [line for p in kept for line in shapely.get_parts(p)])
    return shapely.multipoints([pt for p in kept for pt in shapely.get_parts(p)])


POINT_WKB_BYTES = 21  # byte order, type code 1, x and y as doubles


def plain_points(column: pa.Array) -> Optional[np.ndarray]:
    """The (n, 2) coordinates when every value is a 2D point WKB (ISO type code 1, no
    EWKB flags) of one byte order with finite coordinates: nothing GEOS would read, check
    or repair in it, so such a batch is cleaned without GEOS. None otherwise."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_large_binary(column.type):
        column = column.cast(pa.binary())
    n = len(column)
    if n == 0 or column.null_count or column.buffers()[2] is None:
        return None
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[
        column.offset:column.offset + n + 1]
    if not (np.diff(offsets) == POINT_WKB_BYTES).all():
        return None
    data = np.frombuffer(column.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    rows = data.reshape(n, POINT_WKB_BYTES)
    if (rows[:, 0] == 1).all():
        order = "<"
    elif (rows[:, 0] == 0).all():
        order = ">"
    else:
        return None
    codes = np.ascontiguousarray(rows[:, 1:5]).view(f"{order}u4")
    if not (codes == 1).all():
        return None
    xy = np.ascontiguousarray(rows[:, 5:]).view(f"{order}f8")
    return xy if np.isfinite(xy).all() else None


_HALF: Optional[ThreadPoolExecutor] = None
_HALF_LOCK = threading.Lock()
SPLIT_FROM = 8_192  # geometries: fewer are checked on this thread alone


def is_valid(geoms: np.ndarray) -> np.ndarray:
    """shapely.is_valid, half of a large batch on a second thread (GEOS releases the GIL
    while it checks, so a free core halves the time; the answer is the same)."""
    global _HALF
    if len(geoms) < SPLIT_FROM or (os.cpu_count() or 1) < 2:
        return shapely.is_valid(geoms)
    with _HALF_LOCK:
        if _HALF is None:
            _HALF = ThreadPoolExecutor(max_workers=1, thread_name_prefix="is-valid")
    middle = len(geoms) // 2
    other = _HALF.submit(shapely.is_valid, geoms[middle:])
    first = shapely.is_valid(geoms[:middle])
    return np.concatenate([first, other.result()])


class GeometryCleaner:
    def __init__(self, transformer: Any = None, simplify: Optional[dict] = None,
                 quantize: Optional[dict] = None, label: str = "the file"):
        self.transformer = transformer
        self.simplify = simplify
        self.quantize = quantize
        self.label = label
        self.dropped: Counter = Counter()
        self.repaired = 0
        self.types: set[str] = set()
        self.bounds: Optional[np.ndarray] = None
        self.changed = np.zeros(0, dtype=bool)

    def _drop(self, mask: np.ndarray, reason: str, keep: np.ndarray) -> None:
        mask = mask & keep
        count = int(mask.sum())
        if count:
            self.dropped[reason] += count
            keep &= ~mask

    def clean_batch(self, batch: Any) -> tuple[np.ndarray, np.ndarray]:
        """clean() of a reader's batch; a batch of plain 2D points with nothing to
        reproject, simplify or snap is kept whole as it was read, without GEOS."""
        if self.transformer is None and not self.simplify and not self.quantize:
            xy = plain_points(batch.column)
            if xy is not None:
                n = len(xy)
                self.changed = np.zeros(n, dtype=bool)
                self._add({"Point"}, np.concatenate([xy.min(axis=0), xy.max(axis=0)]))
                return np.ones(n, dtype=bool), np.full(n, None, dtype=object)
        return self.clean(batch.wkb)

    def clean(self, wkb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(keep mask, geometries) for a batch's WKB values; the kept ones are clean.
        self.changed then marks the geometries whose WKB the cleaning changed (the others'
        WKB may be kept as it was read)."""
        keep = np.ones(len(wkb), dtype=bool)
        changed = np.zeros(len(wkb), dtype=bool)
        self.changed = changed
        present = np.array([value is not None for value in wkb], dtype=bool)
        self._drop(~present, "null_geometry", keep)
        geoms = np.full(len(wkb), None, dtype=object)
        if present.any():
            with np.errstate(invalid="ignore"):  # NaN coordinates: dropped below
                geoms[present] = shapely.from_wkb(wkb[present], on_invalid="ignore")
        self._drop(present & shapely.is_missing(geoms), "unreadable_geometry", keep)
        self._drop(keep & shapely.is_empty(geoms), "empty_geometry", keep)
        with_z = keep & (shapely.has_z(geoms) | shapely.has_m(geoms))  # XYM too
        if with_z.any():
            geoms[with_z] = shapely.force_2d(geoms[with_z])
            changed |= with_z
        self._repair(geoms, keep, changed)
        if self.transformer is not None or self.simplify or self.quantize:
            changed[:] = True
        if self.transformer is not None and keep.any():
            transform = self.transformer.transform
            geoms[keep] = shapely.transform(
                geoms[keep], lambda xy: np.column_stack(transform(xy[:, 0], xy[:, 1])))
            finite = np.isfinite(shapely.bounds(geoms)).all(axis=1)
            self._drop(keep & ~finite, "outside_target_crs", keep)
        if self.simplify and keep.any():
            geoms[keep] = shapely.simplify(
                geoms[keep], self.simplify["tolerance"],
                preserve_topology=self.simplify.get("preserve_topology", True))
            self._drop(keep & shapely.is_empty(geoms), "empty_after_simplify", keep)
        if self.quantize and keep.any():
            geoms[keep] = shapely.set_precision(geoms[keep], self.quantize["snap_to_grid"])
            self._drop(keep & shapely.is_empty(geoms), "empty_after_snap_to_grid", keep)
        self._collect(geoms[keep])
        return keep, geoms

    def _repair(self, geoms: np.ndarray, keep: np.ndarray, changed: np.ndarray) -> None:
        invalid = keep & ~is_valid(geoms)
        for i in np.flatnonzero(invalid):
            original = geoms[i]
            if not np.isfinite(shapely.get_coordinates(original)).all():
                self.dropped["non_finite_coordinates"] += 1  # GEOS cannot repair them
                keep[i] = False
                continue
            try:
                repaired = shapely.make_valid(original)
                fixed = _same_dimension(repaired, int(shapely.get_dimensions(original)))
            except shapely.errors.GEOSException:
                fixed = None  # GEOS gave up on it: dropped as invalid, never the file
            if fixed is None or fixed.is_empty:
                self.dropped["invalid_geometry"] += 1
                keep[i] = False
            else:
                geoms[i] = fixed
                changed[i] = True
                self.repaired += 1

    def _collect(self, kept: np.ndarray) -> None:
        if len(kept) == 0:
            return
        ids = np.unique(shapely.get_type_id(kept))
        self._add({TYPE_NAMES[i] for i in ids}, shapely.total_bounds(kept))

    def _add(self, types: set[str], bounds: np.ndarray) -> None:
        """A batch's kept geometry types and bounds, added to the layer's."""
        self.types.update(types)
        families = {FAMILY[t] for t in self.types}
        if len(families) > 1:
            raise VectorFileError(
                f"{self.label} mixes geometry types that cannot share one column: "
                f"{', '.join(sorted(self.types))}; split the file by geometry type (one "
                "table per type)")
        if self.bounds is None:
            self.bounds = bounds
        else:
            self.bounds = np.array([min(self.bounds[0], bounds[0]),
                                    min(self.bounds[1], bounds[1]),
                                    max(self.bounds[2], bounds[2]),
                                    max(self.bounds[3], bounds[3])])

    def layer_type(self) -> tuple[str, bool]:
        """The table's geometry type, and whether single geometries must become multi."""
        if not self.types:
            return "Geometry", False
        family = FAMILY[next(iter(self.types))]
        names = {t if t != "LinearRing" else "LineString" for t in self.types}
        if len(names) == 1:
            return names.pop(), False
        return MULTI[family], True
