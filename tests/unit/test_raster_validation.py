"""Raster validation on rasters made with rasterio (tests/e2e/raster_files.py): the type
each kind is detected as, bit depth, nodata declared and occurring, CRS present, given and
contradicted, implausible geographic bounds, a sample of the whole raster (never a
corner), the recommended COG settings, strict mode, and files that cannot be read."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from exceptions import JobValidationError, PermanentError
from jobs.validate_raster_job import ValidateRasterJob
from services.raster_sources import RasterFileError, check_raster_content, fetch_raster
from services.raster_validation import validate_raster
from tests.e2e import raster_files as rf


def check(tmp_path: Path, data: bytes, name: str = "r.tif", **params) -> dict:
    path = tmp_path / name
    path.write_bytes(data)
    result = validate_raster(str(path), f"bronze-rasters/{name}", params)
    json.dumps(result, allow_nan=False)  # stored as jsonb: no NaN anywhere
    return result


def codes(result: dict, severity: str | None = None) -> set[str]:
    return {f["code"] for f in result["findings"]
            if severity is None or f["severity"] == severity}


TYPED = {
    "rgb": lambda: rf.geotiff(rf.photo()),
    "rgba": lambda: rf.geotiff(rf.photo_with_alpha()),
    "dem_float32": lambda: rf.geotiff(rf.elevation(), nodata=-9999.0),
    "dem_int16": lambda: rf.geotiff(rf.elevation(dtype="int16"), nodata=-32768),
    "categorical": lambda: rf.geotiff(rf.land_cover()),
    "multispectral_uint16": lambda: rf.geotiff(rf.bands_of_reflectance(6)),
    "multispectral_float32": lambda: rf.geotiff(rf.bands_of_reflectance(6, dtype="float32")),
    "nir": lambda: rf.geotiff(rf.red_green_blue_nir()),
    "nir_uint8": lambda: rf.geotiff(rf.red_green_blue_nir(dtype="uint8")),
    "nir_described": lambda: rf.geotiff(rf.red_green_blue_nir(), descriptions=[
        "red", "green", "blue", "near infrared"]),
}


@pytest.mark.parametrize("kind", sorted(TYPED))
def test_each_kind_is_detected_as_its_type(tmp_path, kind):
    r = check(tmp_path, TYPED[kind]())
    expected = kind.split("_")[0]
    assert r["raster_type"]["detected"] == expected, r["raster_type"]
    assert 0.6 <= r["raster_type"]["confidence"] <= 1
    assert r["raster_type"]["given"] is None and r["raster_type"]["used"] == expected
    assert r["valid"] is True, r["findings"]
    assert r["recommended"]["raster_type"] == expected


def test_recommended_settings_follow_the_type(tmp_path):
    rgb = check(tmp_path, TYPED["rgb"]())["recommended"]
    assert (rgb["tier"], rgb["compression"], rgb["overview_resampling"]) == \
        ("visualization", "JPEG", "cubic")
    assert rgb["blocksize"] == 512
    rgba = check(tmp_path, TYPED["rgba"]())["recommended"]
    assert rgba["add_mask"] is True
    dem = check(tmp_path, TYPED["dem_float32"]())["recommended"]
    assert (dem["tier"], dem["compression"], dem["predictor"], dem["overview_resampling"]) \
        == ("analysis", "DEFLATE", 3, "average")
    dem16 = check(tmp_path, TYPED["dem_int16"]())["recommended"]
    assert dem16["predictor"] == 2
    classes = check(tmp_path, TYPED["categorical"]())["recommended"]
    assert (classes["compression"], classes["overview_resampling"]) == ("DEFLATE", "mode")
    big = check(tmp_path, rf.geotiff(rf.elevation(1200, 2100)))["recommended"]
    assert big["overview_levels"] == 3  # 2100 -> 1050 -> 525 -> 263


def test_metadata(tmp_path):
    r = check(tmp_path, rf.geotiff(rf.elevation(300, 400), nodata=-9999.0))
    m = r["metadata"]
    assert (m["crs"], m["crs_source"], m["epsg"]) == ("EPSG:32633", "file", 32633)
    assert m["bounds"] == [500000.0, 5597000.0, 504000.0, 5600000.0]
    assert m["bounds_wgs84"][0] == pytest.approx(15.0) and 50 < m["bounds_wgs84"][1] < 51
    assert (m["width"], m["height"], m["bands"], m["dtype"], m["dtypes"]) == \
        (400, 300, 1, "float32", ["float32"])
    assert (m["nodata"], m["nodata_present"]) == (-9999, False)
    assert m["is_tiled"] is False and m["overviews"] == []
    assert len(m["block_size"]) == 2
    tiled = check(tmp_path, rf.geotiff(rf.elevation(1024, 1024), tiled=True, blockxsize=256,
                                       blockysize=256))["metadata"]
    assert tiled["is_tiled"] is True and tiled["block_size"] == [256, 256]


def test_bit_depth_findings(tmp_path):
    r = check(tmp_path, rf.geotiff(rf.elevation(dtype="float64")))
    assert "bit_depth_64" in codes(r, "warning") and r["recommended"]["dtype"] == "float32"
    whole = rf.elevation(dtype="float32").round()
    r = check(tmp_path, rf.geotiff(whole))
    assert "float_integers" in codes(r, "warning")
    assert r["recommended"]["dtype"] == "uint16"  # 180..1450 m
    small = rf.bands_of_reflectance(6, dtype="uint16") // 100  # 0..100 in uint16
    r = check(tmp_path, rf.geotiff(small.astype("uint16")))
    assert "smaller_type_fits" in codes(r, "info") and r["recommended"]["dtype"] == "uint8"
    r = check(tmp_path, rf.geotiff(rf.land_cover(classes=(10, 20, 30), dtype="float32")))
    assert {"float_integers", "few_values"} <= codes(r)
    assert r["raster_type"]["detected"] == "categorical"
    r = check(tmp_path, rf.geotiff(np.full((50, 60), 7, np.uint8)))
    assert "constant" in codes(r, "warning")


def test_nodata_declared_present_absent_missing_and_nan(tmp_path):
    dem = rf.with_corner(rf.elevation(), -9999)
    r = check(tmp_path, rf.geotiff(dem, nodata=-9999.0))
    assert r["metadata"]["nodata_present"] is True and "nodata_present" in codes(r)
    assert r["sample"]["bands"][0]["nodata_fraction"] == pytest.approx(0.0625, abs=0.01)
    assert r["sample"]["bands"][0]["min"] > 0  # statistics leave nodata out
    r = check(tmp_path, rf.geotiff(rf.elevation(), nodata=-9999.0))
    assert r["metadata"]["nodata_present"] is False and "nodata_unused" in codes(r)
    r = check(tmp_path, rf.geotiff(rf.elevation()))
    assert r["metadata"]["nodata"] is None and "nodata_none" in codes(r)
    collar = rf.elevation()
    collar[:60], collar[:, :80] = 0, 0  # an empty collar, undeclared
    r = check(tmp_path, rf.geotiff(collar))
    assert "nodata_missing" in codes(r, "warning") and r["recommended"]["nodata"] == 0
    nan = rf.with_corner(rf.elevation(), np.nan)
    r = check(tmp_path, rf.geotiff(nan))
    assert "nodata_nan_undeclared" in codes(r, "warning")
    r = check(tmp_path, rf.geotiff(nan, nodata=float("nan")))
    assert r["metadata"]["nodata"] == "nan" and r["metadata"]["nodata_present"] is True
    r = check(tmp_path, rf.geotiff(rf.land_cover(dtype="int16"), nodata=0.5))
    assert "nodata_out_of_range" in codes(r, "error") and r["valid"] is False
    r = check(tmp_path, rf.geotiff(np.full((40, 40), -9999, np.float32), nodata=-9999.0))
    assert "all_nodata" in codes(r, "error")


def test_the_sample_covers_the_whole_raster_not_a_corner(tmp_path):
    # 3000 x 3000: nodata and the only non-zero values lie in the bottom-right corner,
    # which a top-left window (the earlier code's 1000 x 1000 of band 1) never sees.
    dem = rf.with_corner(rf.elevation(3000, 3000), -9999, fraction=0.2)
    r = check(tmp_path, rf.geotiff(dem, nodata=-9999.0))
    assert r["metadata"]["nodata_present"] is True
    assert (r["sample"]["rows"], r["sample"]["cols"]) == (1024, 1024)
    dark = np.zeros((3, 3000, 3000), np.uint8)
    dark[:, 2400:, 2400:] = rf.photo(600, 600)
    r = check(tmp_path, rf.geotiff(dark))
    assert "constant" not in codes(r)
    assert r["sample"]["bands"][0]["max"] > 0 and r["raster_type"]["detected"] == "rgb"
    last = np.zeros((4, 3000, 3000), np.uint16)
    last[3, 2800:, 2800:] = 9000  # band 4's only values, in the corner
    r = check(tmp_path, rf.geotiff(last))
    assert r["sample"]["bands"][3]["max"] == 9000


def test_crs_present_missing_given_and_contradicted(tmp_path):
    data = rf.elevation()
    r = check(tmp_path, rf.geotiff(data, crs=None))
    assert r["valid"] is False and "crs_missing" in codes(r, "error")
    assert r["metadata"]["crs"] is None and r["metadata"]["crs_source"] is None
    assert "source_crs" in next(f["message"] for f in r["findings"]
                                if f["code"] == "crs_missing")
    r = check(tmp_path, rf.geotiff(data, crs=None), source_crs="EPSG:32633")
    assert r["valid"] is True, r["findings"]
    assert (r["metadata"]["crs"], r["metadata"]["crs_source"], r["metadata"]["epsg"]) == \
        ("EPSG:32633", "source_crs", 32633)
    assert r["metadata"]["bounds_wgs84"][0] == pytest.approx(15.0)
    r = check(tmp_path, rf.geotiff(data), source_crs="EPSG:32632")
    assert r["valid"] is False and "crs_contradicts" in codes(r, "error")
    message = next(f["message"] for f in r["findings"] if f["code"] == "crs_contradicts")
    assert "EPSG:32632" in message and "EPSG:32633" in message
    r = check(tmp_path, rf.geotiff(data), source_crs="EPSG:32633")
    assert r["valid"] is True and "crs_given_matches" in codes(r, "info")


def test_geographic_crs_and_implausible_bounds(tmp_path):
    r = check(tmp_path, rf.geotiff(rf.elevation(), crs=rf.GEOGRAPHIC))
    assert r["valid"] is True and r["metadata"]["epsg"] == 4326
    assert r["metadata"]["bounds"] == pytest.approx([14.0, 50.7, 14.4, 51.0])
    assert r["metadata"]["bounds_wgs84"] == pytest.approx(r["metadata"]["bounds"])
    # metres labelled as degrees, in the file and by source_crs
    r = check(tmp_path, rf.geotiff(rf.elevation(), crs=rf.GEOGRAPHIC,
                                   transform=rf.utm_transform()))
    assert r["valid"] is False and "bounds_implausible" in codes(r, "error")
    r = check(tmp_path, rf.geotiff(rf.elevation(), crs=None), source_crs="EPSG:4326")
    assert r["valid"] is False and "bounds_implausible" in codes(r, "error")
    # a projected CRS whose area the raster is far from
    r = check(tmp_path, rf.geotiff(rf.elevation(), crs="EPSG:27700"))  # British grid
    assert "outside_crs_area" in codes(r, "warning")


def test_no_geotransform_is_an_error(tmp_path):
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.transform import Affine

    with pytest.warns(NotGeoreferencedWarning):
        data = rf.geotiff(rf.elevation(), transform=Affine.identity())
    r = check(tmp_path, data)
    assert "not_georeferenced" in codes(r, "error") and r["valid"] is False


@pytest.mark.parametrize("given,kind", [
    ("rgb", "dem_float32"), ("rgba", "nir"), ("rgba", "rgb"), ("dem", "rgb"),
    ("dem", "categorical"), ("categorical", "dem_float32"), ("nir", "rgb"),
    ("nir", "rgba"), ("multispectral", "dem_int16"), ("rgb", "multispectral_float32"),
])
def test_a_given_type_the_data_contradicts_is_an_error(tmp_path, given, kind):
    r = check(tmp_path, TYPED[kind](), raster_type=given)
    assert r["valid"] is False and "raster_type_contradicted" in codes(r, "error")
    assert r["raster_type"]["given"] == given
    assert r["raster_type"]["used"] == r["raster_type"]["detected"]


@pytest.mark.parametrize("given,kind", [
    ("rgb", "rgb"), ("rgba", "rgba"), ("dem", "dem_int16"), ("categorical", "categorical"),
    ("multispectral", "multispectral_uint16"), ("nir", "nir"), ("multispectral", "nir"),
    ("multispectral", "rgb"),
])
def test_a_given_type_the_data_allows_is_used(tmp_path, given, kind):
    r = check(tmp_path, TYPED[kind](), raster_type=given)
    assert r["valid"] is True, r["findings"]
    assert r["raster_type"]["used"] == given == r["recommended"]["raster_type"]


def test_strict_mode_counts_warnings(tmp_path):
    data = rf.geotiff(rf.elevation(dtype="float64"))
    assert check(tmp_path, data)["valid"] is True
    strict = check(tmp_path, data, strict_mode=True)
    assert strict["valid"] is False and strict["summary"]["warnings"] >= 1
    assert strict["findings"][0]["severity"] == "warning"  # errors, warnings, then info


def test_files_rasterio_cannot_read_raise_a_permanent_error(tmp_path):
    with pytest.raises(RasterFileError, match=r"bronze-rasters/r\.tif cannot be opened"):
        check(tmp_path, b"this is not a raster at all\n" * 10)
    whole = rf.geotiff(rf.elevation(1500, 1500))
    with pytest.raises(RasterFileError) as caught:
        check(tmp_path, rf.truncated(whole, 0.4), "cut.tif")
    assert "bronze-rasters/cut.tif cannot be read" in str(caught.value)
    assert str(tmp_path) not in str(caught.value)  # the local path is not shown
    assert issubclass(RasterFileError, PermanentError)


@pytest.mark.parametrize("head,name,says", [
    (b"name,value\na,1\n", "a.tif", "is not a GeoTIFF: its content looks like text"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "a.tiff", "its content looks like a PNG image"),
    (b"PK\x03\x04" + b"\x00" * 50, "a.tif", "looks like a zip archive"),
    (b"", "a.tif", "is empty"),
    (b"<VRTDataset rasterXSize='1'>", "a.vrt", "references other files"),
    (b"just text", "a.img", "is not a raster: its content looks like text"),
])
def test_content_that_cannot_be_a_raster_of_its_name(head, name, says):
    with pytest.raises(RasterFileError, match=says):
        check_raster_content(head, name, f"c/{name}")


def test_content_that_may_be_a_raster():
    assert check_raster_content(b"II*\x00" + b"\x00" * 20, "a.tif", "c/a.tif") == "tiff"
    assert check_raster_content(b"II+\x00" + b"\x00" * 20, "a.TIF", "c/a.TIF") == "bigtiff"
    assert check_raster_content(b"ncols 10\nnrows 10\n", "dem.asc", "c/dem.asc") == "text"


class FakeBlobs:
    def __init__(self, data: bytes):
        self.data = data

    def get_properties(self, container, blob):
        return SimpleNamespace(size=len(self.data), etag="e")

    def download_file(self, container, blob, path):
        Path(path).write_bytes(self.data)
        return len(self.data)


def test_fetch_raster_limits_and_sniffs(tmp_path, monkeypatch):
    from config import reset_settings

    data = rf.geotiff(rf.elevation(100, 100))
    path = fetch_raster(FakeBlobs(data), "c", "dir/dem.tif", tmp_path / "w")
    assert path.name == "dem.tif" and path.read_bytes() == data
    with pytest.raises(RasterFileError, match="looks like text"):
        fetch_raster(FakeBlobs(b"hello,world\n"), "c", "t.tif", tmp_path / "x")
    monkeypatch.setenv("RASTER_MAX_FILE_MB", "0.01")
    reset_settings()
    try:
        with pytest.raises(RasterFileError, match=r"c/dem\.tif is 0\.0 MB, more than "
                                                  r"RASTER_MAX_FILE_MB \(0\.01 MB\)"):
            fetch_raster(FakeBlobs(data), "c", "dem.tif", tmp_path / "y")
    finally:
        monkeypatch.delenv("RASTER_MAX_FILE_MB")
        reset_settings()


def test_parameters():
    v = ValidateRasterJob.validate_job_parameters
    out = v({"blob_name": "dem/a.tif"})
    assert out == {"blob_name": "dem/a.tif", "container_name": "bronze-rasters",
                   "raster_type": "auto", "strict_mode": False}
    assert v({"blob_name": "a.tif", "raster_type": "DEM"})["raster_type"] == "dem"
    for bad, parameter in [({"blob_name": "a.tif", "source_crs": "EPSG:99999999"},
                            "source_crs"),
                           ({"blob_name": "a.tif", "raster_type": "hyperspectral"},
                            "raster_type"),
                           ({"blob_name": "a.tif", "container_name": "Bad_Name"},
                            "container_name"),
                           ({"blob_name": "a.tif", "strict_mode": "yes"}, "strict_mode"),
                           ({}, "blob_name")]:
        with pytest.raises(JobValidationError) as caught:
            v(bad)
        assert caught.value.parameter == parameter, caught.value
