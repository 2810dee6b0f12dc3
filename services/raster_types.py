"""What a raster holds, from its bands and its sampled pixels: rgb, rgba, dem, categorical,
multispectral or nir (or unknown), with a confidence; whether a type a user gave is one the
data contradicts; and the COG settings each type should be written with."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from services.raster_sampling import BandStats

TYPES = ("rgb", "rgba", "dem", "categorical", "multispectral", "nir")
NIR_WORDS = ("nir", "near infrared", "near-infrared", "infrared", "b08", "b8")
SMOOTH = 0.05  # mean neighbour step under 5% of the value range: a continuous surface
FEW_CLASSES = 12  # this few distinct whole values are classes, whatever else
MAX_CLASSES = 256  # more distinct values than this are not classes


@dataclass
class Features:
    bands: int
    dtype: str
    colorinterp: list[str]
    descriptions: list[str]
    colormap: bool
    stats: list[BandStats] = field(default_factory=list)

    @property
    def floating(self) -> bool:
        return np.issubdtype(np.dtype(self.dtype), np.floating)

    def alpha_last(self) -> bool:
        return bool(self.stats) and self.stats[-1].alpha_like

    def named_nir(self) -> bool:
        return any(any(w == d or w in d.split() or (len(w) > 3 and w in d)
                       for w in NIR_WORDS) for d in self.descriptions)


def _single_band(f: Features) -> tuple[str, float, str]:
    b = f.stats[0] if f.stats else None
    if f.colormap:
        return "categorical", 0.95, "band 1 has a colour table (a palette of classes)"
    if b is None or b.valid == 0:
        return "unknown", 0.0, "no valid pixel was sampled"
    smooth = b.smoothness is not None and b.smoothness < SMOOTH
    if b.integers and b.distinct <= FEW_CLASSES:
        return "categorical", 0.9, f"{b.distinct} distinct whole values"
    if b.integers and b.distinct <= MAX_CLASSES and (b.jump or 0) >= 0.15:
        return "categorical", 0.8, (f"{b.distinct} distinct whole values that jump between "
                                    "neighbours (classes, not a surface)")
    if f.floating:
        return ("dem", 0.9, "one band of floating-point values varying smoothly") if smooth \
            else ("dem", 0.6, "one band of floating-point values")
    if f.dtype in ("int16", "int32", "uint16", "uint32", "int64", "uint64"):
        return ("dem", 0.85, f"one band of {f.dtype} values varying smoothly") if smooth \
            else ("dem", 0.55, f"one band of {f.dtype} values")
    if smooth:
        return "dem", 0.5, f"one band of {f.dtype} values varying smoothly"
    return "unknown", 0.3, f"one band of {f.dtype} values (a greyscale image?)"


def detect(f: Features) -> tuple[str, float, str]:
    """(type, confidence 0..1, why) from the bands and their sampled statistics."""
    n = f.bands
    if n == 0:
        return "unknown", 0.0, "the raster has no bands"
    if n == 1:
        return _single_band(f)
    if n == 2:
        return "unknown", 0.3, ("two bands: a greyscale image with alpha?" if f.alpha_last()
                                else "two bands")
    if n == 3:
        if f.dtype == "uint8":
            rgb = f.colorinterp[:3] == ["red", "green", "blue"]
            return "rgb", 0.95 if rgb else 0.85, "three bands of 8-bit colour"
        if f.dtype == "uint16" and not f.named_nir():
            return "rgb", 0.6, "three bands of 16-bit values (red, green, blue?)"
        return "multispectral", 0.5, f"three bands of {f.dtype} values"
    if n == 4:
        if f.named_nir():
            return "nir", 0.95, "four bands, one described as near-infrared"
        if f.alpha_last():
            labelled = f.colorinterp[3] == "alpha"
            return "rgba", 0.95 if labelled else 0.85, (
                "three colour bands and an alpha band (band 4 holds only transparent and "
                "opaque values)")
        if f.colorinterp[3] == "alpha":
            return "nir", 0.7, ("four bands; band 4 is labelled alpha but holds a range of "
                                "values, as near-infrared does")
        return "nir", 0.75, ("four bands, the 4th not an alpha mask: red, green, blue and "
                             "near-infrared")
    return "multispectral", 0.9, f"{n} bands"


def contradiction(given: str, f: Features) -> Optional[str]:
    """Why the data contradicts the type a user gave, or None."""
    n = f.bands
    b = f.stats[0] if f.stats else None
    if given == "rgb":
        if not (n == 3 or (n == 4 and f.alpha_last())):
            return f"rgb needs 3 bands (red, green, blue); this raster has {n}"
        if f.floating:
            return f"rgb holds 8- or 16-bit colours; this raster's bands are {f.dtype}"
    elif given == "rgba":
        if n != 4:
            return f"rgba needs 4 bands (red, green, blue, alpha); this raster has {n}"
        if not f.alpha_last():
            return ("rgba needs an alpha band, but band 4 holds a range of values, not "
                    "only transparent (0) and opaque (the maximum)")
    elif given == "dem":
        if n != 1:
            return f"dem needs 1 band of elevations; this raster has {n}"
        if f.colormap:
            return "band 1 has a colour table: it holds classes, not elevations"
        if b is not None and b.integers and 0 < b.distinct <= FEW_CLASSES and \
                (b.jump or 0) >= 0.15:
            return (f"band 1 holds only {b.distinct} distinct values that jump between "
                    "neighbours: classes, not elevations")
    elif given == "categorical":
        if n != 1:
            return f"categorical needs 1 band of classes; this raster has {n}"
        if b is not None and not b.integers:
            return "band 1 holds fractional values: classes are whole numbers"
        if b is not None and b.distinct > MAX_CLASSES:
            return (f"band 1 holds {b.distinct:,} distinct values (more than "
                    f"{MAX_CLASSES}): a continuous surface, not classes")
    elif given == "multispectral":
        if n < 2:
            return f"multispectral needs several bands; this raster has {n}"
    elif given == "nir":
        if n < 4:
            return (f"nir needs red, green, blue and near-infrared bands (4 or more); this "
                    f"raster has {n}")
        if n == 4 and f.alpha_last() and not f.named_nir():
            return "band 4 is an alpha mask (only transparent and opaque), not near-infrared"
    return None


def overview_levels(width: int, height: int, blocksize: int = 512) -> int:
    longest = max(width, height)
    return max(0, math.ceil(math.log2(longest / blocksize))) if longest > blocksize else 0


def predictor_for(dtype: str) -> int:
    return 3 if np.issubdtype(np.dtype(dtype), np.floating) else 2


def recommend(raster_type: str, dtype: str, width: int, height: int) -> dict[str, Any]:
    """The COG settings for this type: the tier, rio-cogeo's profile (compression),
    predictor (1 none, 2 horizontal, 3 floating point), overview resampling, block size."""
    common = {"driver": "COG", "blocksize": 512,
              "overview_levels": overview_levels(width, height)}
    lossless = {"tier": "analysis", "compression": "DEFLATE", "profile": "deflate",
                "predictor": predictor_for(dtype)}
    if raster_type in ("rgb", "rgba") and dtype == "uint8":
        return {**common, "tier": "visualization", "compression": "JPEG",
                "profile": "jpeg", "predictor": None, "quality": 85,
                "overview_resampling": "cubic", "add_mask": raster_type == "rgba",
                "reason": "8-bit colour imagery: JPEG (YCbCr) is small and fast to serve"
                + ("; the alpha band becomes the COG's internal mask"
                   if raster_type == "rgba" else "")}
    if raster_type in ("rgb", "rgba"):
        return {**common, **lossless, "tier": "visualization",
                "overview_resampling": "cubic", "add_mask": raster_type == "rgba",
                "reason": f"{dtype} colour imagery: JPEG holds only 8 bits, so lossless "
                          "DEFLATE"}
    if raster_type == "dem":
        return {**common, **lossless, "overview_resampling": "average",
                "reason": "elevations: lossless, with the predictor for their type, "
                          "overviews averaged"}
    if raster_type == "categorical":
        return {**common, **lossless, "predictor": 1, "overview_resampling": "mode",
                "reason": "classes: lossless, overviews by the most frequent class (never "
                          "an average, which would invent classes)"}
    if raster_type in ("multispectral", "nir"):
        return {**common, **lossless, "overview_resampling": "average",
                "reason": "measurements in several bands: lossless, overviews averaged"}
    return {**common, **lossless, "overview_resampling": "nearest",
            "reason": "unknown content: lossless, overviews by nearest neighbour"}
