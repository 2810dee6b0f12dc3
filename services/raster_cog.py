"""process_raster's COG step: one tier of a raster made into a Cloud Optimized GeoTIFF with
rio-cogeo, through temporary files (GDAL's block cache bounded), validated with rio-cogeo's
validator before it counts.

Tiers:
    visualization  JPEG (YCbCr) for 3-band 8-bit data (a 4th alpha band becomes a mask),
                   quality jpeg_quality: small, lossy, for display
    analysis       DEFLATE with a predictor suited to the data type (2 for integers, 3 for
                   floats): lossless, fast to read
    archive        ZSTD (level 9; higher levels cost many times the time for about 2%)
                   with the same predictor: lossless, the smallest

Every tier: 512-pixel blocks, overviews down to one block, nodata and masks kept."""

from __future__ import annotations

import shutil
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from exceptions import PermanentError
from services.raster_types import overview_levels
from services.raster_warp import (alpha_labelled, gcp_crs_without_gcps, gdal_cog,
                                  mask_only, placement, plain_copy, warped_copy)

TIERS = ("visualization", "analysis", "archive")
BLOCK = 512
GDAL_CACHE_MB = 256
RESAMPLING = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode",
              "gauss", "rms")


class CogError(PermanentError):
    """The COG could not be made or is not valid (never retried)."""


def _alpha_band(dataset: Any) -> Optional[int]:
    from rasterio.enums import ColorInterp

    for index, interp in enumerate(dataset.colorinterp, start=1):
        if interp == ColorInterp.alpha:
            return index
    return None


def tier_fits(tier: str, bands: int, dtype: str, has_alpha: bool = False) -> bool:
    """Whether a tier suits data of these bands and type (JPEG: 8-bit RGB only)."""
    if tier == "visualization":
        return dtype == "uint8" and (bands == 3 or (bands == 4 and has_alpha))
    return tier in TIERS


def fitting_tiers(bands: int, dtype: str, has_alpha: bool = False) -> list[str]:
    return [t for t in TIERS if tier_fits(t, bands, dtype, has_alpha)]


def predictor_for(dtype: str) -> int:
    return 3 if np.dtype(dtype).kind == "f" else 2


def tier_profile(tier: str, dtype: str, jpeg_quality: int) -> dict[str, Any]:
    base = {"driver": "GTiff", "interleave": "pixel", "tiled": True,
            "blockxsize": BLOCK, "blockysize": BLOCK}
    if tier == "visualization":
        return {**base, "compress": "JPEG", "photometric": "YCbCr",
                "jpeg_quality": int(jpeg_quality)}  # GDAL's name (QUALITY is ignored)
    if tier == "analysis":
        return {**base, "compress": "DEFLATE", "predictor": predictor_for(dtype),
                "zlevel": 6}
    if tier == "archive":
        return {**base, "compress": "ZSTD", "predictor": predictor_for(dtype),
                "zstd_level": 9}
    raise ValueError(f"unknown tier {tier!r}")


def make_cog(source: Path, output: Path, tier: str, params: dict[str, Any]) -> dict[str, Any]:
    """Write the tier's COG of source to output; returns what it made (compression,
    overview levels, CRS, size, seconds). A tier the data does not suit, or a COG that
    fails validation, raises CogError."""
    import rasterio
    from rasterio.crs import CRS
    from rio_cogeo.cogeo import cog_translate, cog_validate

    started = time.monotonic()
    # rasterio reads a number as bytes: 256 alone would be a 256-byte cache
    config = {"GDAL_CACHEMAX": GDAL_CACHE_MB * 1024 * 1024, "GDAL_NUM_THREADS": "ALL_CPUS",
              "GDAL_TIFF_INTERNAL_MASK": True, "GDAL_TIFF_OVR_BLOCKSIZE": BLOCK}
    label = f"{params['container_name']}/{params['blob_name']}" \
        if params.get("blob_name") else source.name
    with gdal_failures(label, tier):
        with rasterio.Env(**config):
            if params.get("source_crs"):
                with rasterio.open(source) as probe:
                    needs_crs = probe.crs is None and not probe.gcps[1]
                if needs_crs:  # the CRS written into a copy: the source may be shared
                    copy = output.with_name(f"source-{source.name}")
                    shutil.copyfile(source, copy)
                    source = copy
                    with rasterio.open(source, "r+") as editable:
                        editable.crs = CRS.from_user_input(params["source_crs"])
            with rasterio.open(source) as probe:
                why = placement(probe)
                target = params.get("target_crs")
                if target or why:  # warped first: tiles need a north-up grid
                    crs = CRS.from_user_input(target) if target else (
                        probe.gcps[1] or probe.crs if why == "gcps" else probe.crs)
                    source = warped_copy(probe, output.with_name(f"warped-{output.name}"),
                                         crs, params.get("reproject_resampling") or "nearest")
                elif gcp_crs_without_gcps(probe):
                    source = plain_copy(probe, output.with_name(f"plain-{output.name}"))
            band = params.get("alpha_band")
            with rasterio.open(source) as probe:
                unlabelled = bool(band) and band == probe.count and \
                    _alpha_band(probe) != band
            if unlabelled:  # the data says alpha, the file does not
                source = alpha_labelled(source, band,
                                        output.with_name(f"alpha-{output.stem}.vrt"))
            with rasterio.open(source) as src:
                alpha = params["alpha_band"] if "alpha_band" in params else _alpha_band(src)
                dtype = src.dtypes[0]
                if not tier_fits(tier, src.count, dtype, alpha is not None):
                    raise CogError(
                        f"tier {tier} does not suit this raster ({src.count} band(s) of "
                        f"{dtype}): JPEG needs 3-band 8-bit data; choose analysis or archive")
                profile = tier_profile(tier, dtype, params.get("jpeg_quality", 85))
                add_mask = tier == "visualization"
                indexes = [i for i in range(1, src.count + 1) if i != alpha] \
                    if tier == "visualization" and alpha else None
                overview = params.get("overview_resampling") or (
                    "mode" if params.get("categorical") else "average")  # classes: never invented
                masked = mask_only(src)
                levels = overview_levels(src.width, src.height, BLOCK)
                if masked and tier != "visualization":  # rio-cogeo would drop the mask
                    gdal_cog(source, output, tier, dtype, overview)
                else:
                    with warnings.catch_warnings():
                        warnings.filterwarnings("ignore", "Non-standard compression schema")
                        cog_translate(src, str(output), profile, indexes=indexes,
                                      add_mask=add_mask, overview_resampling=overview,
                                      overview_level=levels, in_memory=False, config=config,
                                      quiet=True, forward_band_tags=True,
                                      forward_ns_tags=True, temporary_compression="DEFLATE")
    converted = time.monotonic()
    valid, errors, _ = cog_validate(str(output), quiet=True)
    if not valid:
        raise CogError(f"the {tier} COG is not valid: {'; '.join(errors)}")
    with rasterio.open(output) as cog:
        overviews = cog.overviews(1)
        crs = cog.crs.to_string() if cog.crs else None
        compression = cog.compression.value if cog.compression else "NONE"
    return {"tier": tier, "compression": compression, "overview_levels": overviews,
            "crs": crs, "size": output.stat().st_size,
            "seconds": {"convert": round(converted - started, 3),
                        "validate": round(time.monotonic() - converted, 3)}}


@contextmanager
def gdal_failures(label: str, tier: str) -> Iterator[None]:
    """GDAL's errors while converting as a CogError naming the file: the same file fails
    the same way on every retry. Those of the disk or memory may pass, and stay
    retried."""
    from rasterio._err import CPLE_BaseError, CPLE_FileIOError, CPLE_OutOfMemoryError
    from rasterio.errors import RasterioError

    try:
        yield
    except (RasterioError, CPLE_BaseError) as exc:
        text = str(exc)
        if isinstance(exc, (CPLE_FileIOError, CPLE_OutOfMemoryError)) or \
                "no space left" in text.lower() or "out of memory" in text.lower():
            raise
        raise CogError(f"{label}: the {tier} COG could not be made: {text}") from None
