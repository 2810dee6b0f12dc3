"""process_raster's preparation of rasters rio-cogeo cannot tile as they are, and the COG
writer for rasters whose transparency is a mask:

- a raster placed by ground control points only (no geotransform), or with a rotated or
  sheared geotransform, or reprojected to target_crs, is warped first into a north-up
  temporary GeoTIFF (warped_copy): tiles and tile servers need a north-up grid. The warp's
  empty edges are marked: by the source's nodata when it has one, else by its alpha band,
  else by an internal mask (never left as zeros that read as data);
- a raster whose transparency is a mask (no nodata, no alpha band) is written with GDAL's
  own COG driver (gdal_cog): rio-cogeo keeps such a mask only for 8- and 16-bit data of 1
  or 3 bands and silently drops it otherwise (a float DEM's mask became "all valid")."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

BLOCK = 512


def placement(ds: Any) -> Optional[str]:
    """Why the raster must be warped before tiling: "gcps" (placed by ground control
    points only), "rotated" (a rotated or sheared geotransform), or None."""
    t = ds.transform
    if t.is_identity and ds.gcps[0]:
        return "gcps"
    if t.b or t.d:
        return "rotated"
    return None


def has_alpha(ds: Any) -> bool:
    from rasterio.enums import ColorInterp

    return ColorInterp.alpha in ds.colorinterp


def mask_only(ds: Any) -> bool:
    """The raster's transparency is a per-dataset mask: no nodata, no alpha band."""
    from rasterio.enums import MaskFlags

    return ds.nodata is None and not has_alpha(ds) and any(
        MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags
        for flags in ds.mask_flag_enums)


def warped_copy(src: Any, path: Path, crs: Any, resampling: str) -> Path:
    """src warped to a north-up grid in crs (its GCPs' when it has only those), written
    to path as a tiled GeoTIFF with src's tags, band descriptions, colours and nodata;
    its empty edges marked by nodata, the alpha band, or an internal mask."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    options: dict[str, Any] = {"crs": crs, "resampling": Resampling[resampling]}
    if src.transform.is_identity and src.gcps[0]:
        options["src_crs"] = src.gcps[1] or src.crs
    add_mask = src.nodata is None and not has_alpha(src)
    options["add_alpha"] = add_mask
    grid = clipped_grid(src, crs)
    if grid is not None:
        options.update(transform=grid[0], width=grid[1], height=grid[2])
    with WarpedVRT(src, **options) as vrt:
        count = src.count
        profile = {"driver": "GTiff", "width": vrt.width, "height": vrt.height,
                   "count": count, "dtype": src.dtypes[0], "crs": vrt.crs,
                   "transform": vrt.transform, "nodata": src.nodata, "tiled": True,
                   "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "DEFLATE",
                   "zlevel": 1, "bigtiff": "IF_SAFER", "interleave": "pixel"}
        with _created(path, profile) as out:
            out.colorinterp = src.colorinterp
            out.update_tags(**src.tags())
            for i in range(1, count + 1):
                if src.descriptions[i - 1]:
                    out.set_band_description(i, src.descriptions[i - 1])
                out.update_tags(i, **src.tags(i))
            try:
                out.write_colormap(1, src.colormap(1))
            except ValueError:
                pass
            for _, window in out.block_windows(1):
                out.write(vrt.read(list(range(1, count + 1)), window=window), window=window)
                if add_mask:
                    alpha = vrt.read(count + 1, window=window)
                    out.write_mask(np.where(alpha > 0, 255, 0).astype("uint8"),
                                   window=window)
    return path


def clipped_grid(src: Any, crs: Any) -> Optional[tuple[Any, int, int]]:
    """For a raster in degrees reaching latitudes its target projection blows up at (a
    world raster to Web Mercator: its poles lie 240,000 km from the equator), the grid of
    its part within the latitudes the target CRS is meant for; else None (GDAL's own grid,
    which for such a raster had pixels 600 km wide). A side is cut only when its part
    beyond the CRS's area projects longer than the whole area does."""
    import math

    from pyproj import CRS, Transformer
    from rasterio.warp import calculate_default_transform

    if placement(src) or src.crs is None or not src.crs.is_geographic:
        return None
    target = CRS.from_user_input(crs.to_wkt())
    code = target.to_epsg(min_confidence=70)
    area = (CRS.from_epsg(code) if code else target).area_of_use  # the registry's
    if target.is_geographic or area is None:
        return None
    b = src.bounds
    lon = min(max((b.left + b.right) / 2, area.west), area.east)
    to_target = Transformer.from_crs(CRS.from_wkt(src.crs.to_wkt()), target,
                                     always_xy=True)

    def point(lat: float) -> tuple[float, float]:
        return to_target.transform(lon, lat)

    def apart(a: float, b: float) -> float:  # metres between two latitudes, projected
        (x1, y1), (x2, y2) = point(a), point(b)
        d = math.hypot(x2 - x1, y2 - y1)
        return d if math.isfinite(d) else math.inf

    span = apart(area.south, area.north)  # the area's own height, projected
    south, north = b.bottom, b.top
    if north > area.north and apart(area.north, north) > span:
        north = area.north
    if south < area.south and apart(area.south, south) > span:
        south = area.south
    if (south, north) == (b.bottom, b.top) or south >= north:
        return None
    rows = max(1, round((north - south) / abs(src.res[1])))
    return calculate_default_transform(src.crs, crs, src.width, rows, b.left, south,
                                       b.right, north)


def gcp_crs_without_gcps(ds: Any) -> bool:
    """JPEG 2000 (Sentinel-2's format) reports a CRS for ground control points it does
    not have: rio-cogeo then fits a geotransform to no points and fails ("Cannot invert
    geotransform"), every retry alike."""
    return not ds.gcps[0] and ds.gcps[1] is not None and not ds.transform.is_identity


def plain_copy(src: Any, path: Path) -> Path:
    """src copied as it is into a tiled GeoTIFF at path (GDAL's CreateCopy: its bands,
    tags, nodata and mask), without the GCP CRS of no GCPs."""
    from rasterio.shutil import copy

    copy(src, str(path), driver="GTiff", TILED="YES", BLOCKXSIZE=BLOCK, BLOCKYSIZE=BLOCK,
         COMPRESS="DEFLATE", ZLEVEL=1, BIGTIFF="IF_SAFER")
    return path


def alpha_labelled(source: Path, band: int, path: Path) -> Path:
    """A VRT at path of source (no pixels copied) whose band `band` is labelled alpha: a
    4th band the data shows to be transparency but the file calls 'undefined' was read as
    colour, so the visualization COG showed its transparent collar opaque."""
    import xml.etree.ElementTree as ET

    from rasterio.shutil import copy

    copy(str(source), str(path), driver="VRT")
    tree = ET.parse(path)
    for element in tree.getroot().iter("VRTRasterBand"):
        if element.get("band") == str(band):
            interp = element.find("ColorInterp")
            if interp is None:
                interp = ET.SubElement(element, "ColorInterp")
            interp.text = "Alpha"
    tree.write(path)
    return path


def _created(path: Path, profile: dict[str, Any]) -> Any:
    import rasterio

    return rasterio.open(path, "w", **profile)


def gdal_cog(source: Path, output: Path, tier: str, dtype: str, overview: str) -> None:
    """source written as a lossless tier's COG (analysis: DEFLATE, archive: ZSTD 9, the
    predictor for the type) by GDAL's COG driver: the mask kept, overviews down to one
    block."""
    from rasterio.shutil import copy

    if tier not in ("analysis", "archive"):
        raise ValueError(f"gdal_cog makes the lossless tiers, not {tier!r}")
    floating = np.dtype(dtype).kind == "f"
    copy(str(source), str(output), driver="COG", BLOCKSIZE=BLOCK, BIGTIFF="IF_SAFER",
         NUM_THREADS="ALL_CPUS", OVERVIEW_RESAMPLING=overview.upper(),
         COMPRESS="DEFLATE" if tier == "analysis" else "ZSTD",
         LEVEL=6 if tier == "analysis" else 9,
         PREDICTOR="FLOATING_POINT" if floating else "STANDARD")
