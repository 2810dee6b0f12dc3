"""ingest_vector on files as other producers write them (made byte by byte or as text in
tests/e2e/vector_producer_files.py; CI has no GDAL command line tools): Shapefiles with M
values, MultiPatch, a .dbf in Windows-1252 without a .cpg, coordinates that are not
numbers, a KML whose folders have different ExtendedData, a GeoJSON text sequence,
GeoJSON properties mixing types, GeoParquet with a bbox covering column."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
from shapely.geometry import box

from tests.e2e import vector_files as vf
from tests.e2e import vector_producer_files as pf
from tests.e2e.test_ingest_vector import geometry_column, host, ingest, query  # noqa: F401
from tests.e2e.test_ingest_vector_bad_files import fails_at_once


def upload_shapefile(storage, stem: str, files: dict[str, bytes]) -> str:
    for ext, data in files.items():
        vf.upload(storage, f"{stem}.{ext}", data)
    return f"{stem}.shp"


def balanced(r: dict) -> bool:
    return r["rows_read"] == r["rows_loaded"] + sum(r["rows_dropped"].values())


def test_shapefiles_with_m_values_load_in_2d(host, blob_storage):
    """PolyLineM, PointM (XYM: the M used to be kept, and COPY refused it for a 2D
    column) and PointZ with M (pyogrio's warning about M failed the task, retried)."""
    cases = {"lines_m": (pf.POLYLINE_M, [[(0, 0, 1), (1, 1, 2)], [(1, 1, 2), (2, 0, 3)]],
                         "LineString", [0, 0, 2, 1]),
             "points_m": (pf.POINT_M, [[(0, 0, 5)], [(1, 1, 6)]], "Point", [0, 0, 1, 1]),
             "points_zm": (pf.POINT_Z, [[(0, 0, 1, 5)], [(1, 1, 2, 6)]], "Point",
                           [0, 0, 1, 1])}
    for table, (shape_type, shapes, kind, bbox) in cases.items():
        files = pf.shapefile(shape_type, shapes, ["name"], [["a"], ["b"]])
        r = ingest(host, upload_shapefile(blob_storage, table, files), table)
        assert (r["rows_read"], r["rows_loaded"], r["rows_dropped"]) == (2, 2, {}), table
        assert (r["geometry_type"], r["bbox"]) == (kind, bbox)
        assert geometry_column(table) == (kind.upper(), 4326)
        dims = query(f"SELECT DISTINCT ST_Zmflag(geom) AS flag FROM geo.{table}")
        assert dims == [{"flag": 0}]  # neither Z nor M


def test_dbf_in_windows_1252_without_cpg_and_multipatch(host, blob_storage):
    """A .dbf without .cpg holding accented names in Windows-1252 (GDAL hands its bytes
    on undecoded: COPY refused them as UTF-8); a MultiPatch's faces (TINs) are
    polygons (they were dropped as unreadable)."""
    files = pf.shapefile(pf.POINT, [[(2.4, 48.6)], [(4.4, 45.4)]], ["name", "commune"],
                         [["Zoé", "Évry-Courcouronnes"], ["Müller", "Saint-Étienne"]],
                         encoding="cp1252", cpg=None)
    vf.upload(blob_storage, "communes.zip", vf.zipped(
        {f"export/communes.{ext}": data for ext, data in files.items()}))
    r = ingest(host, "communes.zip", "communes")
    assert (r["rows_loaded"], r["rows_dropped"]) == (2, {})
    rows = query("SELECT name, commune FROM geo.communes ORDER BY id")
    assert [(row["name"], row["commune"]) for row in rows] == [
        ("Zoé", "Évry-Courcouronnes"), ("Müller", "Saint-Étienne")]
    patch = pf.multipatch([[(0, 0, 0), (1, 0, 0), (0, 1, 5), (1, 1, 5)],
                           [(2, 2, 0), (3, 2, 0), (2, 3, 1)]])
    r = ingest(host, upload_shapefile(blob_storage, "building", patch), "building")
    assert (r["rows_read"], r["rows_loaded"], r["rows_dropped"]) == (2, 2, {})
    assert (r["geometry_type"], r["bbox"]) == ("MultiPolygon", [0, 0, 3, 3])
    areas = [row["a"] for row in query("SELECT ST_Area(geom) AS a FROM geo.building"
                                       " ORDER BY id")]
    assert areas == [1.0, 0.5]


def test_rows_with_coordinates_that_are_not_numbers_are_dropped(host, blob_storage):
    """A point with an infinite coordinate made make_valid raise, and the whole file
    failed as corrupt; NaN in a polygon failed the task on numpy's warning."""
    inf, nan = float("inf"), float("nan")
    points = [pf.point_wkb(1, 2), pf.point_wkb(inf, 2), pf.point_wkb(nan, 7),
              pf.point_wkb(3, -inf), pf.point_wkb(5, 6)]
    vf.upload(blob_storage, "pts.parquet", pf.geoparquet(points, ["Point"], a=list(range(5))))
    r = ingest(host, "pts.parquet", "pts")
    assert r["rows_dropped"] == {"non_finite_coordinates": 3} and r["rows_loaded"] == 2
    assert balanced(r) and r["bbox"] == [1, 2, 5, 6]
    assert [row["a"] for row in query("SELECT a FROM geo.pts ORDER BY id")] == [0, 4]
    rings = [[(0, 0), (1, 0), (1, 1), (0, 0)], [(0, 0), (inf, 0), (1, 1), (0, 0)],
             [(0, 0), (nan, 0), (1, 1), (0, 0)]]
    vf.upload(blob_storage, "polys.parquet", pf.geoparquet(
        [pf.polygon_wkb(ring) for ring in rings], ["Polygon"], a=[0, 1, 2]))
    r = ingest(host, "polys.parquet", "polys")
    assert (r["rows_loaded"], r["rows_dropped"]) == (1, {"non_finite_coordinates": 2})


KML = """<?xml version="1.0" encoding="UTF-8"?>
<kml xmlns="http://www.opengis.net/kml/2.2"><Document><name>My Places</name>
<Style id="s"><IconStyle><Icon><href>files/icon.png</href></Icon></IconStyle></Style>
<Schema name="site" id="site"><SimpleField type="string" name="owner"/>
<SimpleField type="int" name="area_ha"/></Schema>
<Folder><name>Trip</name>
<Placemark><name>Camp</name><styleUrl>#s</styleUrl><ExtendedData>
<SchemaData schemaUrl="#site"><SimpleData name="owner">Zoé</SimpleData>
<SimpleData name="area_ha">12</SimpleData></SchemaData></ExtendedData>
<Point><coordinates>6.1,45.9,1200</coordinates></Point></Placemark>
<Placemark><name>Summit</name><ExtendedData><Data name="height"><value>4808</value>
</Data></ExtendedData><Point><coordinates>6.8652,45.8326,4808</coordinates></Point>
</Placemark></Folder>
<Folder><name>Later</name><Placemark><name>Lake</name>
<Point><coordinates>6.2,46.0,0</coordinates></Point></Placemark></Folder>
</Document></kml>"""


def test_kml_folders_with_different_extended_data_and_a_kmz(host, blob_storage):
    """Google Earth's folders each have the columns of their placemarks' ExtendedData:
    the file failed ('different columns'); now the columns of all, nulls where none."""
    vf.upload(blob_storage, "places.kmz", vf.zipped(
        {"doc.kml": KML.encode(), "files/icon.png": b"\x89PNG\r\n\x1a\n"}))
    r = ingest(host, "places.kmz", "places")
    assert (r["rows_read"], r["rows_loaded"], r["geometry_type"]) == (3, 3, "Point")
    rows = query("SELECT name, owner, area_ha, height, ST_NDims(geom) AS d"
                 " FROM geo.places ORDER BY id")
    assert [(x["name"], x["owner"], x["area_ha"], x["height"]) for x in rows] == [
        ("Camp", "Zoé", 12, None), ("Summit", None, None, "4808"),
        ("Lake", None, None, None)]
    assert {x["d"] for x in rows} == {2}


def test_geojson_sequence_mixed_properties_and_parquet_covering(host, blob_storage):
    """An RFC 8142 GeoJSON text sequence (records start with RS) was refused as 'not
    GeoJSON'; properties mixing types (GDAL's JSON fields) were text holding GDAL's JSON
    and unquoted strings, now jsonb; GeoParquet's bbox covering column was loaded as a
    jsonb column of its own."""
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [i, i]},
                 "properties": {"code": [1, "A12", 3.5][i], "obj": [{"k": 1}, None,
                                                                    {"k": [2]}][i]}}
                for i in range(3)]
    text = "".join("\x1e" + json.dumps(f) + "\n" for f in features)
    vf.upload(blob_storage, "seq.geojson", text.encode())
    r = ingest(host, "seq.geojson", "seq")
    assert (r["rows_loaded"], r["rows_dropped"]) == (3, {})
    types = {c["name"]: c["type"] for c in r["columns"]}
    assert types == {"code": "jsonb", "obj": "jsonb"}
    rows = query("SELECT code, obj FROM geo.seq ORDER BY id")
    assert [(x["code"], x["obj"]) for x in rows] == [(1, {"k": 1}), ("A12", None),
                                                      (3.5, {"k": [2]})]
    frame = gpd.GeoDataFrame({"v": np.arange(30)},
                             geometry=[box(i, i, i + 1, i + 1) for i in range(30)],
                             crs="EPSG:4326")
    buffer = io.BytesIO()
    frame.to_parquet(buffer, row_group_size=8, write_covering_bbox=True)
    vf.upload(blob_storage, "covered.parquet", buffer.getvalue())
    r = ingest(host, "covered.parquet", "covered")
    assert (r["rows_loaded"], r["bbox"]) == (30, [0, 0, 30, 30])
    assert [c["name"] for c in r["columns"]] == ["v"]


def test_a_geopackage_attribute_table_named_fails_saying_so(host, blob_storage):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mixed.gpkg"
        vf.points(3).to_file(path, layer="wells", engine="pyogrio")
        pyogrio.write_dataframe(pd.DataFrame({"code": [1, 2]}), path, layer="codes",
                                append=True)
        vf.upload(blob_storage, "layers.gpkg", path.read_bytes())
    error = fails_at_once(host, blob_storage, "layers.gpkg",
                          converter_params={"layer_name": "codes"})
    assert "'codes' is a table without geometries" in error and "wells" in error
    assert ingest(host, "layers.gpkg", "wells")["rows_loaded"] == 3  # the default
