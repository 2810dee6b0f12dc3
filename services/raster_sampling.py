"""What the raster jobs read of a raster's pixels: a decimated view of the WHOLE raster
(at most SAMPLE_SIDE pixels on a side; GDAL takes it from the overviews when the file has
them), never a corner window, and each band's statistics over it.

Anything rasterio or GDAL cannot open or read (not a raster, truncated, corrupt) is a
RasterFileError naming the file and GDAL's own words."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np

from services.raster_sources import RasterFileError

SAMPLE_SIDE = 1024  # the sample's longer side, at most
SAMPLE_BYTES = 128 * 1024 * 1024  # and its size in memory, at most
MAX_DISTINCT = 100_000  # distinct values counted up to this many


def gdal_message(exc: BaseException, path: str, label: str) -> str:
    """rasterio's message and the GDAL errors behind it, once each, with the local path
    replaced by the file's name in storage."""
    parts: list[str] = []
    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).strip()
        if text and "See previous exception" not in text and \
                not any(text in p for p in parts):
            parts.append(text)
        current = current.__cause__ or current.__context__
    message = ": ".join(parts) or type(exc).__name__
    return message.replace(str(path), label)


def _rasterio_errors() -> tuple[type, ...]:
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import RasterioError

    return (RasterioError, CPLE_BaseError)


@contextmanager
def reading(path: str, label: str, doing: str) -> Iterator[None]:
    """rasterio's and GDAL's errors inside as a RasterFileError: label, what was being
    done, and why."""
    try:
        yield
    except _rasterio_errors() as exc:
        raise RasterFileError(
            f"{label} {doing}: {gdal_message(exc, path, label)}; the file is not a raster "
            "GDAL reads, or it is truncated or corrupt") from None


def open_raster(path: str, label: str) -> Any:
    import rasterio

    with reading(path, label, "cannot be opened as a raster"):
        return rasterio.open(path)


@dataclass
class Sample:
    data: np.ndarray  # (bands, rows, cols), the dataset's dtype
    step: float  # source pixels per sample pixel along each axis
    from_overview: bool


def sample_shape(width: int, height: int, bands: int, itemsize: int) -> tuple[int, int]:
    scale = max(width / SAMPLE_SIDE, height / SAMPLE_SIDE, 1.0)
    per_pixel = max(bands, 1) * itemsize
    if width * height / scale ** 2 * per_pixel > SAMPLE_BYTES:
        scale = math.sqrt(width * height * per_pixel / SAMPLE_BYTES)
    return max(1, round(height / scale)), max(1, round(width / scale))


def read_sample(ds: Any, path: str, label: str) -> Sample:
    """The decimated whole-raster view (nearest neighbour: values as stored, nodata kept),
    and the last block of the first band read as stored, so a truncated file fails here
    rather than in a later stage."""
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    itemsize = max(np.dtype(d).itemsize for d in ds.dtypes)
    rows, cols = sample_shape(ds.width, ds.height, ds.count, itemsize)
    with reading(path, label, "cannot be read"):
        data = ds.read(out_shape=(ds.count, rows, cols), resampling=Resampling.nearest)
        block_rows, block_cols = ds.block_shapes[0]
        last_row = (ds.height - 1) // block_rows * block_rows
        last_col = (ds.width - 1) // block_cols * block_cols
        ds.read(1, window=Window(last_col, last_row, min(block_cols, ds.width - last_col),
                                 min(block_rows, ds.height - last_row)))
    step = max(ds.width / cols, ds.height / rows)
    overviews = ds.overviews(1) if ds.count else []
    return Sample(data, step, bool(overviews) and step >= min(overviews))


@dataclass
class BandStats:
    valid: int  # sampled pixels that are not nodata (nor NaN)
    total: int
    nodata_count: int
    nan_count: int
    minimum: Optional[float]
    maximum: Optional[float]
    mean: Optional[float]
    distinct: int  # up to MAX_DISTINCT
    integers: bool  # every valid value is a whole number
    smoothness: Optional[float]  # mean step between neighbours / the value range
    jump: Optional[float]  # median step where neighbours differ / the value range
    alpha_like: bool  # only "transparent" (0) and "opaque" (the type's max, or 255)

    def as_dict(self) -> dict[str, Any]:
        def num(v: Optional[float]) -> Any:
            if v is None or not math.isfinite(v):
                return None
            return int(v) if float(v).is_integer() and abs(v) < 2 ** 53 else round(v, 6)

        return {"min": num(self.minimum), "max": num(self.maximum), "mean": num(self.mean),
                "distinct_values": self.distinct,
                "nodata_fraction": round(self.nodata_count / max(self.total, 1), 6),
                "nan_fraction": round(self.nan_count / max(self.total, 1), 6)}


def _neighbour_steps(band: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """|difference| between each pair of valid neighbours, across and down."""
    values = band.astype(np.float64)
    across = np.abs(values[:, 1:] - values[:, :-1])[valid[:, 1:] & valid[:, :-1]]
    down = np.abs(values[1:, :] - values[:-1, :])[valid[1:, :] & valid[:-1, :]]
    return np.concatenate([across, down])


def band_stats(band: np.ndarray, nodata: Optional[float]) -> BandStats:
    floating = np.issubdtype(band.dtype, np.floating)
    nan = np.isnan(band) if floating else np.zeros(band.shape, bool)
    if nodata is None:
        is_nodata = np.zeros(band.shape, bool)
    elif isinstance(nodata, float) and math.isnan(nodata):
        is_nodata = nan
    else:
        is_nodata = band == np.asarray(nodata).astype(band.dtype) if _fits(nodata, band.dtype) \
            else np.zeros(band.shape, bool)
    valid = ~is_nodata & ~nan
    if floating:
        valid &= np.isfinite(band)
    values = band[valid]
    total = int(band.size)
    nodata_count = int(is_nodata.sum())
    nan_count = int(nan.sum()) if not (nodata is not None and isinstance(nodata, float)
                                       and math.isnan(nodata)) else 0
    if values.size == 0:
        return BandStats(0, total, nodata_count, nan_count, None, None, None, 0, True,
                         None, None, False)
    lo, hi = float(values.min()), float(values.max())
    uniques = np.unique(values)
    integers = bool(np.all(np.mod(uniques, 1) == 0)) if floating else True
    smooth = jump = None
    span = hi - lo
    steps = _neighbour_steps(band, valid)
    if span > 0 and steps.size:
        smooth = float(steps.mean() / span)
        moved = steps[steps > 0]
        jump = float(np.median(moved) / span) if moved.size else 0.0
    top = float(np.iinfo(band.dtype).max) if np.issubdtype(band.dtype, np.integer) else 1.0
    opaque = (values == top) | (values == 255)
    alpha_like = bool(np.mean(opaque | (values == 0)) >= 0.95 and np.mean(opaque) >= 0.2)
    return BandStats(int(values.size), total, nodata_count, nan_count, lo, hi,
                     float(values.mean(dtype=np.float64)), min(int(uniques.size), MAX_DISTINCT),
                     integers, smooth, jump, alpha_like)


def _fits(value: float, dtype: np.dtype) -> bool:
    """value is representable in dtype (a nodata of -9999 cannot be in a uint8 band)."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(value).is_integer() and info.min <= value <= info.max
    if np.issubdtype(dtype, np.floating):
        return not math.isfinite(value) or abs(value) <= np.finfo(dtype).max
    return True


def nodata_fits(value: float, dtype: str) -> bool:
    return _fits(value, np.dtype(dtype))
