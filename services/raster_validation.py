"""Raster validation (validate_raster_job's task, and process_raster's first stage): open
a local raster with rasterio, check its georeferencing (a CRS present or given, and not
contradicted; bounds plausible), its bands, data types and nodata, its bit depth over a
decimated view of the whole raster, detect what it holds, and recommend COG settings.

    validate_raster(path, label, params) -> {"valid", "findings", "metadata",
                                             "raster_type", "recommended", ...}

A raster that opens is reported on, however bad (`valid` false, its findings saying why
and what to do); one that rasterio cannot open or read raises RasterFileError (a
PermanentError naming the file and GDAL's message)."""

from __future__ import annotations

import math
import warnings
from typing import Any, Optional

from services.raster_checks import check_bit_depth, check_nodata, fmt
from services.raster_sampling import band_stats, open_raster, read_sample
from services.raster_sources import RasterFileError
from services.raster_types import Features, contradiction, detect, recommend

__all__ = ["validate_raster", "RasterFileError"]

SEVERITIES = ("error", "warning", "info")
DEGREES = (-180.0, -90.0, 360.0, 90.0)  # longitudes up to 360 are a known convention
TOLERANCE = 1e-6


class Findings(list):
    def add(self, severity: str, code: str, message: str) -> None:
        self.append({"severity": severity, "code": code, "message": message})

    def count(self, severity: str) -> int:  # type: ignore[override]
        return sum(f["severity"] == severity for f in self)


def same_crs(a: Any, b: Any) -> bool:
    if a.equals(b, ignore_axis_order=True):
        return True
    code_a, code_b = a.to_epsg(min_confidence=70), b.to_epsg(min_confidence=70)
    return code_a is not None and code_a == code_b


def crs_name(crs: Any) -> str:
    epsg = crs.to_epsg(min_confidence=70)
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def resolve_crs(ds: Any, params: dict[str, Any], label: str, found: Findings
                ) -> tuple[Any, Optional[str]]:
    """(the pyproj CRS to use or None, where it came from: file, source_crs or None)."""
    from pyproj import CRS

    given = params.get("source_crs")
    given_crs = CRS.from_user_input(given) if given else None
    crs = ds.crs or (ds.gcps[1] if ds.transform.is_identity else None)  # or the GCPs'
    own = CRS.from_wkt(crs.to_wkt()) if crs else None
    if own is not None and given_crs is not None:
        if not same_crs(own, given_crs):
            found.add("error", "crs_contradicts",
                      f"source_crs {given} contradicts {label}'s own CRS ({crs_name(own)}): "
                      "leave source_crs out, or fix the file's CRS (gdal_edit.py -a_srs)")
        else:
            found.add("info", "crs_given_matches",
                      f"source_crs {given} is the raster's own CRS; it is not needed")
        return own, "file"
    if own is not None:
        return own, "file" if ds.crs else "gcps"
    if given_crs is not None:
        found.add("info", "crs_from_source_crs",
                  f"{label} has no CRS; source_crs {given} is used (write it into the file "
                  f"with gdal_edit.py -a_srs {given} to make the file complete)")
        return given_crs, "source_crs"
    found.add("error", "crs_missing",
              f"{label} has no coordinate reference system: give source_crs (for example "
              "EPSG:32633), or set it in the file (gdal_edit.py -a_srs EPSG:<code>); the "
              "engine never guesses one")
    return None, None


def check_georeferencing(ds: Any, crs: Any, source: Optional[str], bounds: list[float],
                         found: Findings) -> Optional[list[float]]:
    """Findings about the transform and bounds; returns the bounds in EPSG:4326 or None."""
    t = ds.transform
    if t.is_identity and ds.gcps[0]:
        found.add("warning", "gcps_only",
                  f"the raster is placed by {len(ds.gcps[0])} ground control points, not "
                  "a geotransform: tiles need a north-up grid, so process_raster warps it "
                  "to one first (or warp it yourself: gdalwarp)")
    elif t.is_identity:
        found.add("error", "not_georeferenced",
                  "the raster has no geotransform (only pixel coordinates): it cannot "
                  "be placed on a map; georeference it first")
        return None
    elif t.b or t.d:
        found.add("warning", "rotated",
                  "the geotransform is rotated or sheared: tiles need a north-up grid, so "
                  "process_raster warps it to one first (or warp it yourself: gdalwarp)")
    if crs is None:
        return None
    if crs.is_geographic:
        west, south, east, north = DEGREES
        inside = (west - TOLERANCE <= bounds[0] and bounds[2] <= east + TOLERANCE
                  and south - TOLERANCE <= bounds[1] and bounds[3] <= north + TOLERANCE)
        if not inside:
            given = " (from source_crs)" if source == "source_crs" else ""
            found.add("error", "bounds_implausible",
                      f"bounds {[round(b, 6) for b in bounds]} are not degrees (longitude "
                      f"-180 to 180, latitude -90 to 90), yet the CRS {crs_name(crs)}"
                      f"{given} is geographic: the coordinates look projected, so the CRS "
                      "is wrong; give or set the raster's real CRS")
            return None
        if bounds[2] > 180 + TOLERANCE:
            found.add("warning", "longitudes_0_360",
                      "longitudes run past 180 (the 0 to 360 convention): most map tools "
                      "expect -180 to 180; shift it (gdalwarp --config CENTER_LONG 0)")
    return wgs84_bounds(crs, bounds, found)


def lon_overlap(west: float, east: float, area_west: float, area_east: float,
                margin: float) -> bool:
    """Whether two longitude ranges meet (within margin degrees); either may cross the
    antimeridian (west > east, as GDAL gives a UTM zone 60 raster's bounds)."""
    east += 360 if east < west else 0
    area_east += 360 if area_east < area_west else 0
    return any(west + k <= area_east + margin and east + k >= area_west - margin
               for k in (-360, 0, 360))


def placed_bounds(ds: Any, crs: Any) -> list[float]:
    """The raster's bounds in its CRS: from its geotransform, or for a raster placed by
    ground control points only, from the grid a warp of them makes."""
    if ds.transform.is_identity and ds.gcps[0] and crs is not None:
        from rasterio.crs import CRS as RioCRS
        from rasterio.transform import array_bounds
        from rasterio.warp import calculate_default_transform

        rio_crs = RioCRS.from_wkt(crs.to_wkt())
        try:
            transform, width, height = calculate_default_transform(
                rio_crs, rio_crs, ds.width, ds.height, gcps=ds.gcps[0])
            return list(array_bounds(height, width, transform))
        except Exception:  # GCPs GDAL cannot fit: the pixel bounds, reported as such
            pass
    b = ds.bounds
    return [min(b.left, b.right), min(b.bottom, b.top),
            max(b.left, b.right), max(b.bottom, b.top)]


def wgs84_bounds(crs: Any, bounds: list[float], found: Findings) -> Optional[list[float]]:
    from rasterio.crs import CRS as RioCRS
    from rasterio.warp import transform_bounds

    try:
        out = list(transform_bounds(RioCRS.from_wkt(crs.to_wkt()), "EPSG:4326", *bounds,
                                    densify_pts=21))
    except Exception as exc:  # PROJ cannot transform them: the CRS does not fit
        found.add("warning", "bounds_not_transformable",
                  f"the bounds cannot be transformed to longitude and latitude ({exc}): "
                  "check the CRS")
        return None
    if not all(math.isfinite(v) for v in out):
        found.add("warning", "bounds_not_transformable",
                  "the bounds do not transform to finite longitudes and latitudes: check "
                  "the CRS")
        return None
    from pyproj import CRS

    code = crs.to_epsg(min_confidence=70)
    area = (CRS.from_epsg(code) if code else crs).area_of_use  # the registry's, when known
    if area is not None and not crs.is_geographic:
        margin = 5.0
        if not lon_overlap(out[0], out[2], area.west, area.east, margin) or \
                out[3] < area.south - margin or out[1] > area.north + margin:
            found.add("warning", "outside_crs_area",
                      f"the raster lies at {[round(v, 4) for v in out]} (longitude, "
                      f"latitude), outside the area {crs_name(crs)} is meant for "
                      f"({area.name}): check the CRS")
    return [round(v, 9) for v in out]


def layout(ds: Any) -> dict[str, Any]:
    rows, cols = ds.block_shapes[0] if ds.count else (0, 0)
    return {"block_size": [rows, cols],
            "is_tiled": bool(ds.profile.get("tiled", cols < ds.width and rows > 1)),
            "overviews": ds.overviews(1) if ds.count else []}


def json_number(value: Optional[float]) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return fmt(value) if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return int(value) if float(value).is_integer() and abs(value) < 2 ** 53 else value


def validate_raster(path: str, label: str, params: dict[str, Any]) -> dict[str, Any]:
    """The validation report of the raster at path (label: how the user knows it, e.g.
    container/blob); params: source_crs, raster_type, strict_mode."""
    from rasterio.enums import ColorInterp, MaskFlags

    found = Findings()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NotGeoreferencedWarning: reported as a finding
        ds = open_raster(path, label)
        with ds:
            if ds.count == 0:
                raise RasterFileError(
                    f"{label} holds no raster bands"
                    + (f" (it has subdatasets: {', '.join(ds.subdatasets[:5])})"
                       if ds.subdatasets else ""))
            crs, crs_source = resolve_crs(ds, params, label, found)
            bounds = placed_bounds(ds, crs)
            bounds_wgs84 = check_georeferencing(ds, crs, crs_source, bounds, found)
            dtypes = list(ds.dtypes)
            dtype = dtypes[0]
            sample = read_sample(ds, path, label)
            nodatavals = list(ds.nodatavals)
            stats = [band_stats(sample.data[i], nodatavals[i]) for i in range(ds.count)]
            interp = [c.name for c in ds.colorinterp]
            descriptions = [(d or "").strip().lower() for d in ds.descriptions]
            try:
                colormap = bool(ds.colormap(1))
            except ValueError:
                colormap = False
            has_mask = ColorInterp.alpha in ds.colorinterp or any(
                MaskFlags.per_dataset in flags for flags in ds.mask_flag_enums)
            size = (ds.width, ds.height)
            meta = {"crs": crs_name(crs) if crs is not None else None,
                    "crs_source": crs_source,
                    "epsg": crs.to_epsg(min_confidence=70) if crs is not None else None,
                    "bounds": bounds, "bounds_wgs84": bounds_wgs84,
                    "width": ds.width, "height": ds.height, "bands": ds.count,
                    "dtype": dtype, "dtypes": dtypes,
                    "nodata": json_number(ds.nodata), "nodata_present": False,
                    **layout(ds), "resolution": [abs(ds.res[0]), abs(ds.res[1])],
                    "driver": ds.driver,
                    "compression": ds.compression.name if ds.compression else None,
                    "colorinterp": interp,
                    "descriptions": [d or None for d in ds.descriptions],
                    "colormap": colormap}
    found.add("info", "bands", f"{meta['bands']} band(s) of {dtype} "
              f"({', '.join(interp)}), {size[0]:,} x {size[1]:,} pixels")
    if len(set(dtypes)) > 1:
        found.add("warning", "mixed_dtypes",
                  f"the bands have different data types ({', '.join(dtypes)}): a GeoTIFF "
                  "holds one; convert them to one type")
    if dtype.startswith("complex"):
        found.add("error", "complex_dtype",
                  f"{dtype} bands (complex numbers) cannot be served as map tiles: convert "
                  "to amplitude or phase first")
    nodata = check_nodata(found.add, sample, stats, nodatavals, dtype, has_mask)
    meta["nodata_present"] = nodata["present"]
    first_nodata = next((v for v in nodatavals if v is not None), None)
    smaller = None if dtype.startswith("complex") else \
        check_bit_depth(found.add, sample, stats, dtype, first_nodata)
    features = Features(meta["bands"], dtype, interp, descriptions,
                        colormap, stats)
    detected, confidence, why = detect(features)
    given = params.get("raster_type") or "auto"
    used = detected
    if given != "auto":
        problem = contradiction(given, features)
        if problem:
            found.add("error", "raster_type_contradicted",
                      f"raster_type {given} contradicts the data: {problem}; the data looks "
                      f"{detected} ({confidence:.0%} confident). Leave raster_type auto, or "
                      "check the file")
        else:
            used = given
            if detected not in (given, "unknown"):
                found.add("info", "raster_type_differs",
                          f"raster_type {given} is used as given; the data looks {detected} "
                          f"({confidence:.0%} confident: {why})")
    found.add("info", "raster_type",
              f"the raster looks {detected} ({confidence:.0%} confident): {why}")
    if used == "unknown":
        found.add("info", "raster_type_unknown",
                  "what the raster holds could not be told: give raster_type for settings "
                  "made for it (generic lossless settings are recommended)")
    recommended = recommend(used, dtype, *size)
    recommended["raster_type"] = used
    if smaller:
        recommended["dtype"] = smaller
    if nodata["suggested"] is not None:
        recommended["nodata"] = nodata["suggested"]
    lay = "tiled" if meta["is_tiled"] else "stored in strips"
    found.add("info", "layout",
              f"{lay} (blocks {meta['block_size'][0]} x {meta['block_size'][1]}), "
              f"{len(meta['overviews'])} overview level(s), compression "
              f"{meta['compression'] or 'none'}")
    strict = bool(params.get("strict_mode"))
    errors, warns = found.count("error"), found.count("warning")
    ordered = sorted(found, key=lambda f: SEVERITIES.index(f["severity"]))
    return {"valid": errors == 0 and not (strict and warns),
            "strict_mode": strict,
            "summary": {"errors": errors, "warnings": warns, "info": found.count("info")},
            "findings": ordered,
            "metadata": meta,
            "raster_type": {"detected": detected, "confidence": round(confidence, 2),
                            "given": None if given == "auto" else given, "used": used,
                            "reason": why},
            "recommended": recommended,
            "sample": {"rows": int(sample.data.shape[1]), "cols": int(sample.data.shape[2]),
                       "step": round(sample.step, 3), "from_overview": sample.from_overview,
                       "bands": [s.as_dict() for s in stats[:32]]}}
