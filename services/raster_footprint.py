"""A raster item's bbox and geometry as STAC wants them in EPSG:4326, where rio-stac's are
wrong for rasters at the antimeridian:

- a raster crossing it (a UTM zone 60 scene over 180°) comes from rio-stac as a
  MultiPolygon split there, fine, but with a bbox of -180 to 180: every longitude. STAC's
  bbox for it runs from its west edge east across 180° (west > east);
- a raster in longitudes 0 to 360 (climate and ocean models) comes with longitudes past
  180 in its bbox and geometry, which no STAC client reads: the part past 180° is moved
  to -180..., split at the antimeridian, and a whole-world raster's bbox is -180 to 180."""

from __future__ import annotations

from typing import Any

EPS = 1e-9


def _parts(geometry: Any) -> list[Any]:
    return list(geometry.geoms) if hasattr(geometry, "geoms") else [geometry]


def _polygonal(parts: list[Any]) -> Any:
    from shapely.geometry import MultiPolygon, Polygon

    polygons = [p for part in parts for p in _parts(part)
                if isinstance(p, Polygon) and not p.is_empty]
    return polygons[0] if len(polygons) == 1 else MultiPolygon(polygons)


def antimeridian_footprint(bbox: list[float], geometry: dict[str, Any]
                           ) -> tuple[list[float], dict[str, Any]]:
    """(bbox, geometry) with longitudes in -180..180, a bbox crossing the antimeridian
    written west > east."""
    from shapely.affinity import translate
    from shapely.geometry import box, mapping, shape

    west, south, east, north = bbox
    shape_ = shape(geometry)
    if east > 180 + EPS:  # 0 to 360 longitudes
        moved = _polygonal([shape_.intersection(box(-180, -90, 180, 90)),
                            translate(shape_.intersection(box(180, -90, 540, 90)),
                                      xoff=-360)])
        if east - west >= 360 - EPS:
            new_west, new_east = -180.0, 180.0
        else:
            new_west = west - 360 if west >= 180 else west
            new_east = east - 360
        return [new_west, south, new_east, north], mapping(moved)
    if west <= -180 + EPS and east >= 180 - EPS and shape_.geom_type == "MultiPolygon":
        parts = _parts(shape_)
        eastern = [p for p in parts if p.bounds[2] >= 180 - EPS]
        western = [p for p in parts if p.bounds[0] <= -180 + EPS]
        if eastern and western and not set(map(id, eastern)) & set(map(id, western)):
            return [min(p.bounds[0] for p in eastern), south,
                    max(p.bounds[2] for p in western), north], geometry
    return bbox, geometry
