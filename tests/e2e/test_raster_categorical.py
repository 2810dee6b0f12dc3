"""Overviews of class rasters (land cover, masks): by the most frequent class, as the
README says, never by the class of one pixel; and a raster_type of categorical that the
user gave (and the data does not contradict) is the one the COG is made for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from services.raster_cog import make_cog
from services.raster_validation import validate_raster
from services.service_raster import _tiers
from tests.e2e import raster_files as rf


def test_class_overviews_take_the_most_frequent_class(tmp_path):
    """Each 2 x 2 cell holds class 1 once and class 2 three times: the overview said 1
    everywhere (nearest: the top-left pixel); by the most frequent class it says 2."""
    path = tmp_path / "classes.tif"
    path.write_bytes(rf.geotiff(np.tile(np.array([[1, 2], [2, 2]], np.uint8), (512, 512))))
    make_cog(path, tmp_path / "cog.tif", "analysis", {"categorical": True})
    with rasterio.open(tmp_path / "cog.tif") as cog:
        assert cog.overviews(1) == [2]
        assert set(np.unique(cog.read(1, out_shape=(512, 512)))) == {2}


def test_a_given_categorical_type_reaches_the_cog_task(tmp_path):
    """60 class ids laid out in smooth bands look like a surface to detection; given
    raster_type categorical (not contradicted: whole values, under 256 of them), the COG
    task is told categorical, as the detected type told it before."""
    y, x = np.mgrid[0:300, 0:400]
    data = (x // 7 + 1).astype(np.uint8)  # 58 classes, neighbours alike
    path = tmp_path / "zones.tif"
    path.write_bytes(rf.geotiff(data))
    report = validate_raster(str(path), "bronze-rasters/zones.tif",
                             {"raster_type": "categorical"})
    assert report["valid"], report["findings"]
    assert report["raster_type"]["detected"] != "categorical"
    assert report["raster_type"]["used"] == "categorical"
    tiers, alpha, kind = _tiers({"output_tier": "all"}, report, "bronze-rasters/zones.tif")
    assert kind == "categorical" and tiers == ["analysis", "archive"] and not alpha
