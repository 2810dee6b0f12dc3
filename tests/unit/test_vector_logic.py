"""ingest_vector's pure parts: column names and types, WKB type codes and curve
detection, single-to-multi WKB, geometry cleaning and the layer's type."""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa
import pytest
import shapely
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box

from services.vector_load import hex_wkb, multi_wkb as _multi
from services.vector_cleaning import GeometryCleaner
from services.vector_columns import convert, launder, plan_columns
from services.vector_reader import has_curves
from services.vector_sources import VectorFileError


@pytest.mark.parametrize("name,expected", [
    ("Name", "name"), ("Name With Spaces", "name_with_spaces"), ("2nd", "_2nd"),
    ("id", "src_id"), ("GEOM", "src_geom"), ("naïve", "naïve"), ("a-b#c", "a_b_c"),
    ("", "column"), ("x" * 80, "x" * 63),
])
def test_launder(name, expected):
    assert launder(name) == expected


def test_clashing_names_are_numbered_and_reported():
    schema = pa.schema([("Name", pa.string()), ("name", pa.string()), ("ID", pa.int64())])
    columns, renamed = plan_columns(schema, set())
    assert [c.name for c in columns] == ["name", "name_2", "src_id"]
    assert renamed == {"Name": "name", "name": "name_2", "ID": "src_id"}


def test_types_and_values():
    table = pa.table({
        "i8": pa.array([1, None], pa.int8()), "i64": pa.array([2**62, 1], pa.int64()),
        "u64": pa.array([2**64 - 1, 0], pa.uint64()), "f": pa.array([1.5, float("nan")]),
        "ts": pa.array([0, 1], pa.timestamp("ms", tz="+02:00")),
        "naive": pa.array([0, 1], pa.timestamp("ms")),
        "tags": pa.array([["a", "b"], None], pa.list_(pa.string())),
        "props": pa.array([{"k": 1}, {"k": None}], pa.struct([("k", pa.int64())])),
        "raw": pa.array([b"\x01\xff", None], pa.binary()),
        "doc": pa.array(['{"a": 1}', None]),
    })
    columns, _ = plan_columns(table.schema, {"doc"})
    types = {c.name: c.pg_type for c in columns}
    assert types == {"i8": "smallint", "i64": "bigint", "u64": "numeric(20)",
                     "f": "double precision", "ts": "timestamptz", "naive": "timestamp",
                     "tags": "jsonb", "props": "jsonb", "raw": "bytea", "doc": "jsonb"}
    out = convert(table, columns)
    assert out.column("f").to_pylist() == [1.5, None]
    assert out.column("u64").to_pylist() == [str(2**64 - 1), "0"]
    assert out.column("tags").to_pylist() == ['["a", "b"]', None]
    assert out.column("props").to_pylist() == ['{"k": 1}', '{"k": null}']
    assert out.column("raw").to_pylist() == ["\\x01ff", None]
    assert out.column("i64").to_pylist() == [2**62, 1]


def test_wkb_curve_detection_and_multi_wrapping():
    circular = struct.pack("<BII", 1, 8, 3) + struct.pack("<6d", 0, 0, 1, 1, 2, 0)
    linear = shapely.to_wkb(LineString([(0, 0), (1, 1)]))
    big_endian = shapely.to_wkb(Point(1, 2), byte_order=0)
    assert has_curves(pa.array([linear, None, circular], pa.binary()))
    assert not has_curves(pa.array([linear, None, big_endian], pa.binary()))
    polygon = shapely.to_wkb(box(0, 0, 1, 1))
    wrapped = shapely.from_wkb(_multi(polygon))
    assert wrapped.geom_type == "MultiPolygon" and wrapped.equals(box(0, 0, 1, 1))
    multi = shapely.to_wkb(MultiPolygon([box(0, 0, 1, 1)]))
    assert _multi(multi) == multi
    assert shapely.from_wkb(_multi(big_endian)).geom_type == "MultiPoint"


def test_cleaning_counts_repairs_and_promotes():
    bowtie = Polygon([(0, 0), (2, 2), (2, 0), (0, 2), (0, 0)])
    wkb = np.array([shapely.to_wkb(box(0, 0, 1, 1)), None, shapely.to_wkb(Polygon()),
                    shapely.to_wkb(bowtie), b"not wkb",
                    shapely.to_wkb(shapely.force_3d(box(5, 5, 6, 6)))], dtype=object)
    cleaner = GeometryCleaner()
    keep, geoms = cleaner.clean(wkb)
    assert keep.tolist() == [True, False, False, True, False, True]
    assert dict(cleaner.dropped) == {"null_geometry": 1, "empty_geometry": 1,
                                     "unreadable_geometry": 1}
    assert cleaner.repaired == 1
    assert geoms[3].geom_type == "MultiPolygon" and geoms[3].is_valid
    assert not shapely.has_z(geoms[5])
    assert cleaner.layer_type() == ("MultiPolygon", True)


def test_a_polygon_collapsing_to_a_line_is_dropped_not_kept_as_a_line():
    flat = Polygon([(0, 0), (1, 0), (2, 0), (0, 0)])
    cleaner = GeometryCleaner()
    keep, _ = cleaner.clean(np.array([shapely.to_wkb(flat)], dtype=object))
    assert keep.tolist() == [False] and cleaner.dropped == {"invalid_geometry": 1}


def test_points_and_polygons_cannot_share_a_column():
    cleaner = GeometryCleaner(label="f.geojson")
    cleaner.clean(np.array([shapely.to_wkb(Point(0, 0))], dtype=object))
    with pytest.raises(VectorFileError, match="cannot share one column: Point, Polygon"):
        cleaner.clean(np.array([shapely.to_wkb(box(0, 0, 1, 1))], dtype=object))


def test_hex_encoding_matches_python_for_slices_and_nulls():
    values = [b"\x01\x02\xff", None, b"", b"\x00\xab" * 5, b"z"]
    column = pa.array(values, pa.binary())
    for array in (column, column.slice(1), column.slice(2, 2)):
        expected = [None if v is None else v.hex() for v in array.to_pylist()]
        assert hex_wkb(array).to_pylist() == expected
    assert hex_wkb(pa.array(values, pa.large_binary())).to_pylist() == \
        [None if v is None else v.hex() for v in values]
    assert hex_wkb(pa.array([shapely.to_wkb(box(0, 0, 1, 1))]), multi=True).to_pylist() == \
        [_multi(shapely.to_wkb(box(0, 0, 1, 1))).hex()]


def _points_batch(values):
    from services.vector_reader import Batch

    return Batch(pa.table({"n": list(range(len(values)))}), pa.array(values, pa.binary()))


@pytest.mark.parametrize("byte_order", [0, 1])
def test_plain_points_are_cleaned_without_geos_as_geos_would(byte_order):
    # Given 2D points of one byte order, as a whole batch and as a slice of one
    values = [shapely.to_wkb(Point(x, -x / 3), byte_order=byte_order)
              for x in np.linspace(-170, 170, 50)]
    for batch in (_points_batch(values), _points_batch([b"x"] + values)):
        if len(batch.column) > len(values):
            batch = type(batch)(batch.attributes.slice(1), batch.column.slice(1))
        # When cleaned by clean_batch (no GEOS) and by clean (GEOS)
        fast, slow = GeometryCleaner(), GeometryCleaner()
        keep, geoms = fast.clean_batch(batch)
        keep_geos, _ = slow.clean(np.array(values, dtype=object))
        # Then the same rows, types, bounds and nothing changed; GEOS was not asked
        assert keep.tolist() == keep_geos.tolist() == [True] * len(values)
        assert all(g is None for g in geoms) and not fast.changed.any()
        assert fast.types == slow.types == {"Point"}
        assert fast.bounds.tolist() == slow.bounds.tolist()


@pytest.mark.parametrize("odd", [
    None, shapely.to_wkb(Point(1, 2), byte_order=0), shapely.to_wkb(Point(1, 2, 3)),
    shapely.to_wkb(shapely.set_srid(Point(1, 2), 4326), include_srid=True),
    struct.pack("<BIdd", 1, 1, float("nan"), float("nan")),  # POINT EMPTY
    struct.pack("<BIdd", 1, 1, float("inf"), 0.0), shapely.to_wkb(box(0, 0, 1, 1)),
])
def test_a_batch_with_anything_but_plain_points_goes_through_geos(odd):
    from services.vector_cleaning import plain_points

    values = [shapely.to_wkb(Point(0, 0)), odd]
    assert plain_points(pa.array(values, pa.binary())) is None

    def outcome(clean):
        cleaner = GeometryCleaner()
        try:
            keep, _ = clean(cleaner)
        except Exception as exc:  # the same error either way (inf: GEOS refuses it)
            return type(exc).__name__
        return keep.tolist(), dict(cleaner.dropped), cleaner.types, cleaner.changed.tolist()

    assert outcome(lambda c: c.clean_batch(_points_batch(values))) == \
        outcome(lambda c: c.clean(np.array(values, dtype=object)))


def test_reprojected_points_go_through_geos():
    from pyproj import Transformer

    cleaner = GeometryCleaner(Transformer.from_crs(4326, 3857, always_xy=True))
    cleaner.clean_batch(_points_batch([shapely.to_wkb(Point(10, 50))]))
    assert cleaner.changed.all() and cleaner.bounds[0] == pytest.approx(1113194.9, abs=1)


def test_is_valid_split_over_two_threads_answers_as_shapely():
    from services.vector_cleaning import SPLIT_FROM, is_valid

    bowtie = Polygon([(0, 0), (2, 2), (2, 0), (0, 2), (0, 0)])
    geoms = np.array([bowtie if i % 7 == 3 else box(i, 0, i + 1, 1)
                      for i in range(SPLIT_FROM + 11)], dtype=object)
    for part in (geoms, geoms[:SPLIT_FROM - 1], geoms[5:]):
        assert is_valid(part).tolist() == shapely.is_valid(part).tolist()
