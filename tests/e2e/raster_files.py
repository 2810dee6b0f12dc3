"""Rasters the raster job tests make with rasterio (GeoTIFFs in memory, as bytes), each
kind looking like what it is meant to be: a photo (rgb, rgba), an elevation surface (dem),
a land-cover map (categorical), satellite bands (multispectral, nir). Upload them to the
test's Azurite with upload()."""

from __future__ import annotations

import io
from typing import Any, Optional, Sequence

import numpy as np
from rasterio.io import MemoryFile
from rasterio.transform import Affine, from_origin

from config import get_settings

UTM = "EPSG:32633"  # UTM 33N: central Europe, around 15°E
UTM_ORIGIN = (500_000.0, 5_600_000.0)  # about 15°E, 50.5°N
GEOGRAPHIC = "EPSG:4326"


def bronze() -> str:
    return get_settings().bronze_rasters_container


def upload(storage: Any, name: str, data: bytes, container: Optional[str] = None) -> str:
    storage.upload_from(container or bronze(), name, io.BytesIO(data), length=len(data))
    return name


def utm_transform(pixel: float = 10.0) -> Affine:
    return from_origin(*UTM_ORIGIN, pixel, pixel)


def degree_transform(pixel: float = 0.0005, west: float = 14.0, north: float = 51.0
                     ) -> Affine:
    return from_origin(west, north, pixel, pixel)


def geotiff(data: np.ndarray, crs: Optional[str] = UTM, transform: Optional[Affine] = None,
            nodata: Optional[float] = None, colorinterp: Optional[Sequence[str]] = None,
            descriptions: Optional[Sequence[str]] = None,
            colormap: Optional[dict[int, tuple]] = None, **profile: Any) -> bytes:
    """data (bands, rows, cols) or (rows, cols) as a GeoTIFF's bytes. crs None: a file
    without a CRS; transform None: 10 m pixels in UTM, 0.0005° pixels in degrees."""
    if data.ndim == 2:
        data = data[np.newaxis]
    if transform is None:
        transform = degree_transform() if crs == GEOGRAPHIC else utm_transform()
    options = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1],
               "width": data.shape[2], "dtype": data.dtype.name, "transform": transform,
               **({"crs": crs} if crs else {}),
               **({"nodata": nodata} if nodata is not None else {}), **profile}
    with MemoryFile() as memory:
        with memory.open(**options) as ds:
            ds.write(data)
            if colorinterp:
                from rasterio.enums import ColorInterp
                ds.colorinterp = [ColorInterp[name] for name in colorinterp]
            for i, text in enumerate(descriptions or (), start=1):
                ds.set_band_description(i, text)
            if colormap:
                ds.write_colormap(1, colormap)
        return memory.read()


def _field(rows: int, cols: int, seed: int, waves: int = 3) -> np.ndarray:
    """A smooth random surface in 0..1 (a sum of a few broad waves)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    out = np.zeros((rows, cols))
    for _ in range(waves):
        fy, fx = rng.uniform(0.5, 3, 2) * 2 * np.pi
        py, px = rng.uniform(0, 2 * np.pi, 2)
        out += np.sin(y / rows * fy + py) * np.cos(x / cols * fx + px)
    return (out - out.min()) / (np.ptp(out) or 1)


def photo(rows: int = 600, cols: int = 800, seed: int = 1) -> np.ndarray:
    """3 bands of uint8: a smooth scene in correlated colours, with texture."""
    rng = np.random.default_rng(seed)
    base = _field(rows, cols, seed)
    bands = []
    for i, tint in enumerate((0.9, 0.75, 0.6)):
        band = 255 * (0.7 * base * tint + 0.3 * _field(rows, cols, seed + 10 + i))
        band += rng.normal(0, 8, (rows, cols))
        bands.append(np.clip(band, 0, 255))
    return np.stack(bands).astype(np.uint8)


def photo_with_alpha(rows: int = 600, cols: int = 800, seed: int = 1) -> np.ndarray:
    """4 bands of uint8: the photo and an alpha band, transparent along a collar."""
    rgb = photo(rows, cols, seed)
    alpha = np.full((rows, cols), 255, np.uint8)
    alpha[: rows // 10] = 0
    alpha[:, : cols // 8] = 0
    rgb[:, alpha == 0] = 0
    return np.concatenate([rgb, alpha[np.newaxis]])


def elevation(rows: int = 600, cols: int = 800, dtype: str = "float32", seed: int = 2,
              low: float = 180.0, high: float = 1450.0) -> np.ndarray:
    """1 band: a smooth terrain from low to high metres."""
    surface = low + (high - low) * _field(rows, cols, seed, waves=4)
    if np.issubdtype(np.dtype(dtype), np.integer):
        return np.round(surface).astype(dtype)
    return (surface + 0.123).astype(dtype)  # fractional metres, as a DEM has


def land_cover(rows: int = 600, cols: int = 800, classes: Sequence[int] = (1, 2, 3, 5, 8),
               dtype: str = "uint8", seed: int = 3, patch: int = 25) -> np.ndarray:
    """1 band of classes in patches (a land-cover map)."""
    rng = np.random.default_rng(seed)
    coarse = rng.choice(np.asarray(classes), size=(rows // patch + 1, cols // patch + 1))
    return np.kron(coarse, np.ones((patch, patch)))[:rows, :cols].astype(dtype)


def bands_of_reflectance(count: int = 6, rows: int = 400, cols: int = 500,
                         dtype: str = "uint16", seed: int = 4) -> np.ndarray:
    """count bands of surface reflectance (scaled 0..10000 for integers, 0..1 for
    floats), each band its own smooth field with sensor noise."""
    rng = np.random.default_rng(seed)
    bands = []
    for i in range(count):
        value = 0.05 + 0.4 * _field(rows, cols, seed + i) + rng.normal(0, 0.01, (rows, cols))
        bands.append(np.clip(value, 0, 1))
    data = np.stack(bands)
    if np.issubdtype(np.dtype(dtype), np.integer):
        return np.round(data * 10_000).astype(dtype)
    return data.astype(dtype)


def red_green_blue_nir(rows: int = 400, cols: int = 500, dtype: str = "uint16",
                       seed: int = 5) -> np.ndarray:
    """4 bands: red, green, blue and a brighter near-infrared (vegetation)."""
    data = bands_of_reflectance(4, rows, cols, "float64", seed)
    data[3] = np.clip(data[3] * 1.6 + 0.1, 0, 1)
    scale = 255 if dtype == "uint8" else 10_000
    return np.round(data * scale).astype(dtype)


def with_corner(data: np.ndarray, value: float, fraction: float = 0.25) -> np.ndarray:
    """data with its bottom-right corner (fraction of each side) set to value."""
    out = data.copy()
    rows, cols = out.shape[-2:]
    out[..., rows - int(rows * fraction):, cols - int(cols * fraction):] = value
    return out


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def read_back(data: bytes) -> dict[str, Any]:
    """What rasterio reads of a raster's bytes (for checking the makers)."""
    with MemoryFile(data) as memory, memory.open() as ds:
        return {"count": ds.count, "dtype": ds.dtypes[0], "crs": ds.crs,
                "nodata": ds.nodata, "shape": ds.shape}


__all__ = ["UTM", "GEOGRAPHIC", "upload", "geotiff", "photo",
           "photo_with_alpha", "elevation", "land_cover", "bands_of_reflectance",
           "red_green_blue_nir", "with_corner", "truncated", "utm_transform",
           "degree_transform", "read_back", "bronze"]
