"""The raster bench's input files, made once with numpy and rasterio from a fixed seed and
cached under .local/bench/raster/ (a file of the same name is reused): uncompressed,
striped GeoTIFFs in UTM 33N, as cameras and older tools write them.

    photo  3 bands of uint8, 8000 x 5000 (120 MB): a smooth scene in correlated colours
           with texture at several scales and sensor noise, so that compression behaves
           as on an aerial photo (DEFLATE with a predictor keeps about three quarters of it)
    dem    1 band of float32, 6000 x 6000 (144 MB): terrain from 180 to 1450 m, broad
           relief with finer ridges and centimetre noise

Made a strip of rows at a time (memory: a strip, not the file)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

SEED = 15
# Bumped when the generators change, so a cached file of the old shape is not reused.
VERSION = 1
STRIP = 500  # rows made at a time


def _waves(rng: np.random.Generator, count: int, low: float, high: float
           ) -> list[tuple[float, float, float, float, float]]:
    """count separable waves (frequency in y and x in cycles over the raster, phases,
    amplitude falling with frequency)."""
    out = []
    for _ in range(count):
        fy, fx = rng.uniform(low, high, 2)
        py, px = rng.uniform(0, 2 * np.pi, 2)
        out.append((fy, fx, py, px, 1.0 / np.sqrt((fy + fx) / 2)))
    return out


def _field(waves: list, rows: np.ndarray, height: int, width: int) -> np.ndarray:
    """The sum of the waves over the given rows, every column (float32)."""
    x = np.arange(width, dtype=np.float64) / width * 2 * np.pi
    y = rows.astype(np.float64) / height * 2 * np.pi
    out = np.zeros((len(rows), width), np.float32)
    for fy, fx, py, px, amp in waves:
        out += np.outer(amp * np.sin(y * fy + py), np.cos(x * fx + px)).astype(np.float32)
    return out


def _photo_strip(rng: np.random.Generator, shared: list, own: list[list],
                 rows: np.ndarray, height: int, width: int) -> np.ndarray:
    base = _field(shared, rows, height, width)
    bands = []
    for tint, waves in zip((0.9, 0.75, 0.6), own):
        band = 128 + 45 * base * tint + 25 * _field(waves, rows, height, width)
        band += rng.normal(0, 4, band.shape).astype(np.float32)
        bands.append(np.clip(band, 0, 255))
    return np.stack(bands).astype(np.uint8)


def _dem_strip(rng: np.random.Generator, waves: list, rows: np.ndarray, height: int,
               width: int) -> np.ndarray:
    surface = _field(waves, rows, height, width)
    surface = 815 + 190 * surface  # about 180 to 1450 m
    surface += rng.normal(0, 0.05, surface.shape).astype(np.float32)
    return surface[np.newaxis].astype(np.float32)


def _write(path: Path, height: int, width: int, count: int, dtype: str, pixel: float,
           strip: Callable[[np.ndarray], np.ndarray], **profile: object) -> None:
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count,
                       dtype=dtype, crs="EPSG:32633",
                       transform=from_origin(500_000.0, 5_600_000.0, pixel, pixel),
                       **profile) as out:
        for top in range(0, height, STRIP):
            rows = np.arange(top, min(top + STRIP, height))
            out.write(strip(rows), window=Window(0, top, width, len(rows)))


def photo(path: Path, width: int = 8000, height: int = 5000) -> None:
    rng = np.random.default_rng(SEED)
    shared = _waves(rng, 3, 0.5, 3) + _waves(rng, 6, 8, 40) + _waves(rng, 6, 60, 300)
    own = [_waves(rng, 3, 1, 6) + _waves(rng, 4, 100, 600) for _ in range(3)]
    _write(path, height, width, 3, "uint8", 0.5,
           lambda rows: _photo_strip(rng, shared, own, rows, height, width),
           photometric="RGB")


def dem(path: Path, width: int = 6000, height: int = 6000) -> None:
    rng = np.random.default_rng(SEED + 1)
    waves = _waves(rng, 4, 0.5, 3) + _waves(rng, 8, 5, 30) + _waves(rng, 8, 40, 200)
    _write(path, height, width, 1, "float32", 10.0,
           lambda rows: _dem_strip(rng, waves, rows, height, width))


KINDS = {"photo": photo, "dem": dem}


def cached(folder: Path, kind: str) -> tuple[Path, float]:
    """The GeoTIFF of kind, made if missing; (path, seconds spent making it, 0 when
    cached)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}-v{VERSION}.tif"
    if path.exists():
        return path, 0.0
    started = time.perf_counter()
    partial = path.with_suffix(".partial.tif")
    partial.unlink(missing_ok=True)
    KINDS[kind](partial)
    partial.rename(path)
    return path, time.perf_counter() - started
