"""The pixel checks of raster validation, over the decimated whole-raster sample: nodata
(declared, occurring, missing where the edges are empty), bit depth (64-bit types, floats
holding whole numbers, a smaller type that holds the values, few distinct values).

Each check adds findings through `add(severity, code, message)` and returns what the
recommendation needs."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np

from services.raster_sampling import BandStats, Sample, nodata_fits

Add = Callable[[str, str, str], None]
EMPTY_CANDIDATES = (0, -9999, -32768, -3.4028234663852886e38, 255, 65535, -1)
INT_TYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32")


def fmt(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def smallest_int_type(lo: float, hi: float) -> Optional[str]:
    for name in INT_TYPES:
        info = np.iinfo(name)
        if info.min <= lo and hi <= info.max:
            return name
    return None


def _pct(part: int, whole: int) -> str:
    share = part / max(whole, 1)
    return f"{share:.1%}" if share >= 0.001 else f"{share:.3%}"


def _edge_share(band: np.ndarray, value: float) -> float:
    """The share of the sample's outermost pixels (its frame) that are value."""
    if band.shape[0] < 3 or band.shape[1] < 3:
        return float(np.mean(band == value))
    frame = np.concatenate([band[0], band[-1], band[1:-1, 0], band[1:-1, -1]])
    return float(np.mean(frame == value))


def check_nodata(add: Add, sample: Optional[Sample], stats: list[BandStats],
                 nodatavals: list[Optional[float]], dtype: str, has_mask: bool
                 ) -> dict[str, Any]:
    """Findings about nodata; returns {"present": bool, "suggested": value or None}."""
    declared = [v for v in nodatavals if v is not None]
    nodata = declared[0] if declared else None
    total = sum(s.total for s in stats)
    out: dict[str, Any] = {"present": False, "suggested": None}
    if len({fmt(v) for v in declared}) > 1:
        add("warning", "nodata_differs",
            f"the bands declare different nodata values ({', '.join(fmt(v) for v in declared)})"
            ": tools read the first band's; declare one value for every band")
    if nodata is not None and not nodata_fits(nodata, dtype):
        add("error", "nodata_out_of_range",
            f"nodata {fmt(nodata)} cannot occur in {dtype} bands, so empty areas are not "
            f"marked: declare a value the type can hold (gdal_edit.py -a_nodata <value>)")
        return out
    count = sum(s.nodata_count for s in stats)
    out["present"] = count > 0
    if stats and all(s.valid == 0 for s in stats):
        what = f"nodata ({fmt(nodata)})" if nodata is not None else "NaN"
        add("error", "all_nodata",
            f"every sampled pixel is {what}: the raster holds no data; check the file")
        return out
    if nodata is not None:
        if count:
            add("info", "nodata_present",
                f"nodata {fmt(nodata)} is declared and occurs: {_pct(count, total)} of the "
                "sampled pixels are nodata")
        else:
            add("info", "nodata_unused",
                f"nodata {fmt(nodata)} is declared but no sampled pixel has it (the raster "
                "appears to have no empty areas)")
        return out
    nans = sum(s.nan_count for s in stats)
    if nans:
        add("warning", "nodata_nan_undeclared",
            f"{_pct(nans, total)} of the sampled pixels are NaN but no nodata value is "
            "declared: declare nodata nan (gdal_edit.py -a_nodata nan) so tools treat them "
            "as empty")
        out["suggested"] = "nan"
        return out
    if has_mask:
        add("info", "nodata_mask",
            "no nodata value is declared; transparency comes from the alpha band or mask")
        return out
    if sample is not None and sample.data.size:
        band = sample.data[0]
        for candidate in EMPTY_CANDIDATES:
            if not nodata_fits(candidate, dtype):
                continue
            share = float(np.mean(band == candidate))
            if share >= 0.005 and _edge_share(band, candidate) >= 0.5:
                add("warning", "nodata_missing",
                    f"no nodata value is declared, but {share:.1%} of the sampled pixels "
                    f"are {fmt(candidate)}, filling the raster's edges: if those are empty "
                    f"areas, declare it (gdal_edit.py -a_nodata {fmt(candidate)}), or they "
                    "are drawn and averaged as data")
                out["suggested"] = candidate
                return out
    add("info", "nodata_none",
        "no nodata value is declared, and none seems needed (no empty edges were found)")
    return out


def check_bit_depth(add: Add, sample: Optional[Sample], stats: list[BandStats],
                    dtype: str, nodata: Optional[float]) -> Optional[str]:
    """Findings about the data type; returns a smaller dtype that holds the values, or
    None."""
    valid = [s for s in stats if s.valid]
    if not valid:
        return None
    lo = min(s.minimum for s in valid)
    hi = max(s.maximum for s in valid)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        lo, hi = min(lo, nodata), max(hi, nodata)
    floating = np.issubdtype(np.dtype(dtype), np.floating)
    integers = all(s.integers for s in valid)
    distinct = max(s.distinct for s in valid)
    suggested: Optional[str] = None
    if floating and integers:
        suggested = smallest_int_type(lo, hi)
        add("warning", "float_integers",
            f"every sampled value of this {dtype} raster is a whole number ({fmt(lo)} to "
            f"{fmt(hi)}): store it as {suggested or 'an integer type'}, which is smaller "
            "and compresses better")
    elif dtype == "float64":
        exact = sample is not None and bool(np.all(
            (sample.data.astype(np.float32).astype(np.float64) == sample.data)
            | np.isnan(sample.data)))
        suggested = "float32"
        add("warning", "bit_depth_64",
            "float64 takes twice the space of float32" + (
                ", and every sampled value is exactly a float32: store float32"
                if exact else ": store float32 unless you need more than about 7 "
                              "significant digits"))
    elif dtype in ("int64", "uint64"):
        suggested = smallest_int_type(lo, hi)
        add("warning", "bit_depth_64",
            f"{dtype} takes 8 bytes a pixel, and its sampled values ({fmt(lo)} to "
            f"{fmt(hi)}) fit {suggested or 'a smaller type'}: many tools do not read 64-bit "
            "integer rasters")
    elif not floating:
        smaller = smallest_int_type(lo, hi)
        if smaller and np.dtype(smaller).itemsize < np.dtype(dtype).itemsize:
            suggested = smaller
            add("info", "smaller_type_fits",
                f"the sampled values ({fmt(lo)} to {fmt(hi)}) fit {smaller}, smaller than "
                f"{dtype}")
    if distinct == 1:
        add("warning", "constant",
            f"every sampled pixel holds the same value ({fmt(lo)}): the raster shows "
            "nothing; check that it is the file you meant")
    elif distinct <= 16:
        add("info", "few_values",
            f"only {distinct} distinct values were sampled in a band: classes or a mask, "
            "not a continuous measurement")
    return suggested
