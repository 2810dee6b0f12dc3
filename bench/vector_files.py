"""The vector bench's input files, made once with geopandas and pyogrio and cached under
.local/bench/vector/ (a file of the same name is reused): a GeoPackage of points and one
of polygons, EPSG:4326, with an integer, a float and a text column, from a fixed seed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

SEED = 14
# Bumped when the generators change, so a cached file of the old shape is not reused.
VERSION = 1


def _attributes(rng: np.random.Generator, n: int) -> dict[str, Any]:
    kinds = np.array(["well", "spring", "borehole", "gauge", "station", "sample point"])
    return {"code": np.arange(1, n + 1, dtype="int64") * 7,
            "value": rng.normal(100.0, 25.0, n),
            "label": kinds[rng.integers(0, len(kinds), n)]
            + "-" + np.char.mod("%06d", rng.integers(0, 1_000_000, n)).astype(object)}


def points(n: int) -> Any:
    """n points scattered over a 10 x 10 degree box (central Europe)."""
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng(SEED)
    x = rng.uniform(5.0, 15.0, n)
    y = rng.uniform(45.0, 55.0, n)
    return gpd.GeoDataFrame(_attributes(rng, n), geometry=shapely.points(x, y),
                            crs="EPSG:4326")


def polygons(n: int, min_vertices: int = 10, max_vertices: int = 30) -> Any:
    """n small star-shaped polygons of min_vertices to max_vertices vertices each, about
    1 km across, all valid."""
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng(SEED + 1)
    counts = rng.integers(min_vertices, max_vertices + 1, n)
    total = int(counts.sum())
    ring = np.repeat(np.arange(n), counts)
    # angles stratified: vertex k of a ring of c in [k, k + 1) * 2 pi / c, so in order
    # and never more than pi apart (the centre stays inside: a simple polygon)
    firsts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    k = np.arange(total) - firsts[ring]
    angles = (k + rng.uniform(0, 1, total)) / counts[ring] * 2 * np.pi
    radius = rng.uniform(0.003, 0.006, total)
    cx = rng.uniform(5.0, 15.0, n)
    cy = rng.uniform(45.0, 55.0, n)
    x = cx[ring] + radius * np.cos(angles)
    y = cy[ring] + radius * np.sin(angles)
    # close each ring: its first vertex again at its end
    xs = np.insert(x, np.cumsum(counts), x[firsts])
    ys = np.insert(y, np.cumsum(counts), y[firsts])
    ring_of = np.repeat(np.arange(n), counts + 1)
    rings = shapely.linearrings(np.column_stack([xs, ys]), indices=ring_of)
    return gpd.GeoDataFrame(_attributes(rng, n), geometry=shapely.polygons(rings),
                            crs="EPSG:4326")


KINDS = {"points": points, "polygons": polygons}


def cached(folder: Path, kind: str, n: int) -> tuple[Path, float]:
    """The GeoPackage of n features of kind, made if missing; (path, seconds spent making
    it, 0 when cached)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}-{n}-v{VERSION}.gpkg"
    if path.exists():
        return path, 0.0
    started = time.perf_counter()
    frame = KINDS[kind](n)
    partial = path.with_suffix(".partial.gpkg")
    partial.unlink(missing_ok=True)
    frame.to_file(partial, layer=kind, driver="GPKG", engine="pyogrio", use_arrow=True)
    partial.rename(path)
    return path, time.perf_counter() - started
