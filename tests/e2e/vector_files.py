"""Vector files the ingest_vector tests make (geopandas and pyogrio write every format the
job reads), uploaded to the test's Azurite."""

from __future__ import annotations

import io
import struct
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Optional

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box

from config import get_settings


def bronze() -> str:
    return get_settings().bronze_vectors_container


def upload(storage: Any, name: str, data: bytes, container: Optional[str] = None) -> str:
    storage.upload_from(container or bronze(), name, io.BytesIO(data), length=len(data))
    return name


def written(frame: gpd.GeoDataFrame, suffix: str, **kwargs: Any) -> bytes:
    """The frame written by geopandas (pyogrio) as the format of suffix."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        if suffix == ".parquet":
            frame.to_parquet(path)
        elif suffix == ".kml":
            frame.to_file(path, engine="pyogrio", driver="KML", **kwargs)
        else:
            frame.to_file(path, engine="pyogrio", **kwargs)
        return path.read_bytes()


def shapefile_parts(frame: gpd.GeoDataFrame, stem: str = "data") -> dict[str, bytes]:
    """A Shapefile's files by extension (shp, shx, dbf, prj, cpg)."""
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'crs' was not provided")  # meant, for some
        frame.to_file(Path(folder) / f"{stem}.shp", engine="pyogrio")
        return {p.suffix.lstrip("."): p.read_bytes() for p in Path(folder).iterdir()}


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def points(n: int = 10, crs: Optional[str] = "EPSG:4326") -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"name": [f"p{i}" for i in range(n)], "value": np.arange(n, dtype="int64") * 10,
         "ratio": np.linspace(0, 1, n)},
        geometry=[Point(10 + i * 0.01, 50 + i * 0.01) for i in range(n)], crs=crs)


def polygons_mixed() -> gpd.GeoDataFrame:
    """Polygons and multipolygons, one invalid (a bow tie), one null, one empty."""
    bowtie = Polygon([(0, 0), (2, 2), (2, 0), (0, 2), (0, 0)])
    geoms = [box(0, 0, 1, 1), MultiPolygon([box(2, 2, 3, 3), box(4, 4, 5, 5)]), bowtie,
             None, Polygon()]
    return gpd.GeoDataFrame({"kind": ["a", "b", "bowtie", "null", "empty"]},
                            geometry=geoms, crs="EPSG:4326")


def lines() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"road": ["A1", "B2"]},
                            geometry=[LineString([(0, 0), (1, 1)]),
                                      LineString([(1, 1), (2, 0), (3, 1)])], crs="EPSG:4326")


def csv_points(n: int = 5) -> bytes:
    frame = pd.DataFrame({"site": [f"s{i}" for i in range(n)],
                          "Latitude": [50 + i for i in range(n)],
                          "Longitude": [10 + i for i in range(n)]})
    return frame.to_csv(index=False).encode()


def _circular_string(points: list[tuple[float, float]]) -> bytes:
    return struct.pack("<BII", 1, 8, len(points)) + b"".join(
        struct.pack("<dd", *p) for p in points)


def curved_geopackage(crs: str = "EPSG:4326") -> bytes:
    """A GeoPackage of one CurvePolygon (a circle of radius 1 around (1, 0), as two arcs)
    and one Polygon, written from WKB with pyogrio's raw writer (geopandas cannot make
    curves)."""
    import pyogrio.raw

    ring = [(0, 0), (1, 1), (2, 0), (1, -1), (0, 0)]
    curve_polygon = struct.pack("<BII", 1, 10, 1) + _circular_string(ring)
    square = struct.pack("<BIII", 1, 3, 1, 5) + b"".join(
        struct.pack("<dd", *p) for p in [(5, 5), (6, 5), (6, 6), (5, 6), (5, 5)])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "curves.gpkg"
        pyogrio.raw.write(str(path), geometry=np.array([curve_polygon, square], dtype=object),
                          field_data=[np.array(["circle", "square"], dtype=object)],
                          fields=["shape"], geometry_type="Unknown", crs=crs,
                          driver="GPKG", layer="curves")
        return path.read_bytes()


def kml_folders(folders: dict[str, list[str]]) -> bytes:
    """A KML document of folders of placemarks: {folder: [KML geometry element, ...]}."""
    body = "".join(
        f"<Folder><name>{name}</name>" + "".join(
            f"<Placemark><name>{name}-{i}</name>{geometry}</Placemark>"
            for i, geometry in enumerate(geometries)) + "</Folder>"
        for name, geometries in folders.items())
    return ('<?xml version="1.0" encoding="UTF-8"?><kml xmlns="http://www.opengis.net/'
            f'kml/2.2"><Document><name>doc</name>{body}</Document></kml>').encode()


def kml_point(x: float, y: float) -> str:
    return f"<Point><coordinates>{x},{y},0</coordinates></Point>"
