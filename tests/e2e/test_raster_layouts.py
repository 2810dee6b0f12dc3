"""process_raster and validate_raster_job on rasters laid out as real producers write
them, made here with rasterio: placed by ground control points only (SAR scenes, scanned
maps), a rotated geotransform, a float DEM whose empty area is an internal mask (no
nodata), a long thin strip. Each COG is north-up, keeps the mask, passes rio-cogeo's
validator without warnings, and its STAC item has the right bbox and datetime."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.transform import Affine, from_origin
from rio_cogeo.cogeo import cog_validate

from infrastructure.stac_repository import StacRepository
from local_host import LocalHost
from services.raster_cog import make_cog
from services.raster_validation import validate_raster
from tests.e2e import raster_files as rf
from tests.e2e.host_calls import run
from tests.e2e.test_process_raster import cog_bytes

# UTM 33N, 10 m pixels from (500000, 5600000): about 15.0-15.19°E, 50.45-50.56°N
CORNERS = [(0, 0, 500_000, 5_600_000), (800, 0, 508_000, 5_600_300),
           (0, 600, 500_200, 5_594_000), (800, 600, 508_200, 5_594_300)]


def gcp_tiff(path: Path) -> Path:
    """A DEM placed by four ground control points in UTM 33N, no geotransform."""
    gcps = [GroundControlPoint(row=r, col=c, x=x, y=y) for c, r, x, y in CORNERS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NotGeoreferencedWarning while writing
        with rasterio.open(path, "w", driver="GTiff", width=800, height=600, count=1,
                           dtype="float32") as out:
            out.write(rf.elevation(600, 800)[np.newaxis])
            out.gcps = (gcps, rasterio.crs.CRS.from_epsg(32633))
    return path


def rotated_tiff(path: Path) -> Path:
    """A DEM with a geotransform rotated by 30°, and a TIFF DateTime tag."""
    transform = Affine(8.66, 5.0, 500_000, 5.0, -8.66, 5_600_000)
    path.write_bytes(rf.geotiff(rf.elevation(600, 800), transform=transform))
    with rasterio.open(path, "r+") as out:
        out.update_tags(TIFFTAG_DATETIME="2022:01:02 03:04:05")
    return path


def masked_dem(path: Path) -> Path:
    """A float32 DEM whose empty corner is an internal mask, with no nodata value."""
    data = rf.elevation(600, 800)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", driver="GTiff", width=800, height=600, count=1,
                           dtype="float32", crs=rf.UTM, transform=rf.utm_transform(),
                           tiled=True) as out:
            out.write(data[np.newaxis])
            mask = np.full((600, 800), 255, np.uint8)
            mask[300:, 400:] = 0
            out.write_mask(mask)
    return path


def cog_facts(path: Path) -> dict:
    valid, errors, warns = cog_validate(str(path), quiet=True)
    with rasterio.open(path) as cog:
        mask = cog.dataset_mask()
        return {"valid": valid, "errors": errors, "warnings": warns, "count": cog.count,
                "transform": cog.transform, "crs": cog.crs, "nodata": cog.nodata,
                "empty": float(np.mean(mask == 0)), "overviews": cog.overviews(1),
                "datetime": cog.tags().get("TIFFTAG_DATETIME")}


def test_gcp_only_raster_is_placed_by_its_gcps(tmp_path):
    """The GCPs' CRS is the raster's (not 'no CRS: give source_crs'), its bounds are
    where the GCPs put it, and it is valid: process_raster warps it."""
    path = gcp_tiff(tmp_path / "scene.tif")
    r = validate_raster(str(path), "bronze-rasters/scene.tif", {})
    assert r["valid"] is True, r["findings"]
    assert r["metadata"]["crs"] == "EPSG:32633" and r["metadata"]["crs_source"] == "gcps"
    assert "gcps_only" in {f["code"] for f in r["findings"] if f["severity"] == "warning"}
    west, south, east, north = r["metadata"]["bounds_wgs84"]
    assert 14.99 < west < 15.01 and 15.1 < east < 15.13
    assert 50.49 < south < 50.51 and 50.55 < north < 50.57
    made = make_cog(path, tmp_path / "cog.tif", "analysis", {})
    facts = cog_facts(tmp_path / "cog.tif")
    assert facts["valid"], facts["errors"]
    assert facts["count"] == 1  # no alpha band added
    assert facts["transform"].b == facts["transform"].d == 0 and facts["transform"].e < 0
    assert made["crs"] == "EPSG:32633"
    assert 0 < facts["empty"] < 0.2  # the warp's empty edges are masked, not zeros


def test_rotated_raster_becomes_north_up_with_its_corners_masked(tmp_path):
    path = rotated_tiff(tmp_path / "rotated.tif")
    make_cog(path, tmp_path / "cog.tif", "archive", {})
    facts = cog_facts(tmp_path / "cog.tif")
    assert facts["valid"], facts["errors"]
    assert facts["transform"].b == facts["transform"].d == 0
    assert 0.3 < facts["empty"] < 0.7 and facts["count"] == 1
    assert facts["datetime"] == "2022:01:02 03:04:05"


@pytest.mark.parametrize("tier", ["analysis", "archive"])
def test_a_float_dems_internal_mask_is_kept(tmp_path, tier):
    """rio-cogeo dropped a mask of float data (the COG said every pixel valid)."""
    path = masked_dem(tmp_path / "dem.tif")
    made = make_cog(path, tmp_path / "cog.tif", tier, {})
    facts = cog_facts(tmp_path / "cog.tif")
    assert facts["valid"] and not facts["warnings"], facts
    assert facts["empty"] == pytest.approx(0.25, abs=0.01) and facts["nodata"] is None
    assert made["compression"] == {"analysis": "DEFLATE", "archive": "ZSTD"}[tier]
    with rasterio.open(tmp_path / "cog.tif") as cog:
        structure = cog.tags(ns="IMAGE_STRUCTURE")
        assert structure.get("PREDICTOR") == "3" and cog.block_shapes[0] == (512, 512)
        small = cog.read_masks(1, out_shape=(150, 200))  # from the overview's mask
        assert small[100:, 150:].max() == 0 and small[:50, :50].min() == 255


def test_long_thin_strip_gets_overviews(tmp_path):
    """A 1300 x 3 strip: overviews down to one block along its long side, so rio-cogeo's
    validator has nothing to warn about."""
    path = tmp_path / "strip.tif"
    path.write_bytes(rf.geotiff(rf.elevation(3, 1300)))
    make_cog(path, tmp_path / "cog.tif", "analysis", {})
    facts = cog_facts(tmp_path / "cog.tif")
    assert facts["valid"] and not facts["warnings"], facts
    assert facts["overviews"] == [2, 4]


@pytest.fixture
def host(database, blob_storage, geo_database):
    with LocalHost(port=0, close_database=False, banner=False) as running:
        yield running


def test_process_raster_on_gcp_and_rotated_rasters(host, blob_storage, tmp_path):
    rf.upload(blob_storage, "sar/scene one.tif",
              gcp_tiff(tmp_path / "scene.tif").read_bytes())
    rf.upload(blob_storage, "rotated.tif", rotated_tiff(tmp_path / "r.tif").read_bytes())
    job = run(host, "process_raster", {"blob_name": "sar/scene one.tif",
                                       "item_id": "scene-one"}, timeout=180)
    assert job["status"] == "completed", job["error_details"]
    cog = job["result_data"]["cogs"][0]
    (tmp_path / "c1.tif").write_bytes(cog_bytes(blob_storage, cog["blob"]))
    facts = cog_facts(tmp_path / "c1.tif")
    assert facts["valid"] and facts["count"] == 1 and facts["transform"].b == 0
    item = StacRepository().get_item("system-rasters", "scene-one")
    west, south, east, north = item["bbox"]
    assert 14.99 < west < 15.01 and 15.1 < east < 15.13
    assert 50.49 < south < 50.51 and 50.55 < north < 50.57
    job = run(host, "process_raster", {"blob_name": "rotated.tif"}, timeout=180)
    assert job["status"] == "completed", job["error_details"]
    (tmp_path / "c2.tif").write_bytes(cog_bytes(blob_storage, "rotated/rotated_cog_analysis.tif"))
    assert cog_facts(tmp_path / "c2.tif")["transform"].d == 0
    item = StacRepository().get_item("system-rasters", "rotated")
    assert item["properties"]["datetime"] == "2022-01-02T03:04:05Z"


def item_of(tmp_path: Path, data: bytes) -> dict:
    from datetime import datetime, timezone

    from services.raster_stac import raster_item

    path = tmp_path / "r.tif"
    path.write_bytes(data)
    return raster_item(path, "r", "system-rasters", "http://storage/r.tif",
                       datetime(2026, 1, 1, tzinfo=timezone.utc))


def longitudes(geometry: dict) -> list[float]:
    rings = geometry["coordinates"] if geometry["type"] == "Polygon" else \
        [ring for polygon in geometry["coordinates"] for ring in polygon]
    return [point[0] for ring in rings for point in ring]


def test_a_raster_across_the_antimeridian(tmp_path):
    """A UTM zone 60 South scene over 180°: its item's bbox runs from its west edge east
    across 180° (rio-stac's said -180 to 180), and validation does not call it outside
    its zone (it compared -178° with the zone's 174° to 180°)."""
    data = rf.geotiff(rf.elevation(200, 200), crs="EPSG:32760",
                      transform=from_origin(700_000, 5_600_000, 1000, 1000))
    item = item_of(tmp_path, data)
    west, south, east, north = item["bbox"]
    assert 179 < west < 180 and -179 < east < -178 and -42 < south < north < -39
    assert all(-180 <= x <= 180 for x in longitudes(item["geometry"]))
    r = validate_raster(str(tmp_path / "r.tif"), "bronze-rasters/r.tif", {})
    assert not [f for f in r["findings"] if f["severity"] != "info"], r["findings"]


@pytest.mark.parametrize("west,width,bbox", [
    (170.0, 20.0, [170.0, -20.0, -170.0, -10.0]),  # 170°E to 190°E: across 180°
    (200.0, 20.0, [-160.0, -20.0, -140.0, -10.0]),  # all past 180°
    (0.0, 360.0, [-180.0, -20.0, 180.0, -10.0]),  # the whole world, 0 to 360
])
def test_longitudes_0_to_360_are_catalogued_in_minus_180_to_180(tmp_path, west, width,
                                                                  bbox):
    data = rf.geotiff(rf.elevation(100, 200), crs=rf.GEOGRAPHIC,
                      transform=from_origin(west, -10, width / 200, 0.1))
    item = item_of(tmp_path, data)
    assert item["bbox"] == pytest.approx(bbox)
    assert all(-180 <= x <= 180 for x in longitudes(item["geometry"]))


def test_a_world_raster_to_web_mercator_is_cut_at_its_latitudes(tmp_path):
    """A world raster in degrees reprojected to EPSG:3857 became 66 x 802 pixels 600 km
    wide reaching 242,000 km north (Mercator's poles); now the part within 85.06°, a
    square world, as a tile server wants it. One near the equator is not cut."""
    path = tmp_path / "world.tif"
    path.write_bytes(rf.geotiff(rf.elevation(360, 720), crs=rf.GEOGRAPHIC,
                                transform=from_origin(-180, 90, 0.5, 0.5)))
    made = make_cog(path, tmp_path / "cog.tif", "analysis", {"target_crs": "EPSG:3857"})
    assert made["crs"] == "EPSG:3857"
    with rasterio.open(tmp_path / "cog.tif") as cog:
        left, bottom, right, top = cog.bounds
        assert 0.8 < cog.width / cog.height < 1.25 and cog.width > 300
        assert abs(top) < 20.1e6 and abs(bottom) < 20.1e6 and right - left > 39e6
    path.write_bytes(rf.geotiff(rf.elevation(300, 200), crs=rf.GEOGRAPHIC,
                                transform=from_origin(10, 5, 0.05, 0.05)))
    make_cog(path, tmp_path / "utm.tif", "analysis", {"target_crs": "EPSG:32633"})
    with rasterio.open(tmp_path / "utm.tif") as cog:
        assert cog.bounds.bottom < -1.1e6  # 10°S: south of UTM 33N's area, kept


@pytest.mark.parametrize("tag,expected", [
    ("2021:03:04 05:06:07", "2021-03-04T05:06:07Z"),  # TIFF's own form
    ("2021-03-04T05:06:07Z", "2021-03-04T05:06:07Z"),  # ISO 8601, as many tools write
    ("2021-03-04T07:06:07+02:00", "2021-03-04T05:06:07Z"),
    ("2021:03:04 05:06:07.5", "2021-03-04T05:06:07.500000Z"),
    ("0000:00:00 00:00:00", None),  # unset: the blob's last-modified time instead
])
def test_the_items_datetime_comes_from_the_tiff_datetime_tag(tmp_path, tag, expected):
    path = tmp_path / "r.tif"
    path.write_bytes(rf.geotiff(rf.elevation(50, 60)))
    with rasterio.open(path, "r+") as out:
        out.update_tags(TIFFTAG_DATETIME=tag)
    item = item_of(tmp_path, path.read_bytes())
    source = item["properties"]["geojobs:datetime_source"]
    if expected is None:
        assert source == "source_last_modified"
        assert item["properties"]["datetime"] == "2026-01-01T00:00:00Z"
    else:
        assert source == "tiff_datetime" and item["properties"]["datetime"] == expected


def test_stac_catalog_container_finds_tiff_and_tif_by_default():
    """GeoTIFFs come named .tif and .tiff (either case): the default filter took only
    .tif, so a delivery of .tiff files was catalogued as empty."""
    from datetime import datetime, timezone

    from jobs.stac_catalog_container import StacCatalogContainerJob
    from services.blob_filter import BlobFilter

    params = StacCatalogContainerJob.validate_job_parameters({"container_name": "scenes"})
    flt = BlobFilter.from_params(params["filter"])
    now = datetime.now(timezone.utc)
    assert [n for n in ("a.tif", "b.TIFF", "c/d e.tiff", "f.TIF", "g.txt", "h.tif.aux.xml")
            if flt.matches(n, 10, now)] == ["a.tif", "b.TIFF", "c/d e.tiff", "f.TIF"]


def test_a_jpeg_2000_scene_becomes_a_cog(tmp_path):
    """JPEG 2000 (Sentinel-2's format) reports a GCP CRS without GCPs; rio-cogeo fitted
    a geotransform to none ('Cannot invert geotransform') on every retry."""
    path = tmp_path / "T33UVR_B04.jp2"
    data = rf.photo(300, 400)
    with rasterio.open(path, "w", driver="JP2OpenJPEG", width=400, height=300, count=3,
                       dtype="uint8", crs=rf.UTM, transform=rf.utm_transform()) as out:
        out.write(data)
    with rasterio.open(path) as check:
        assert check.gcps[1] is not None and not check.gcps[0]  # the driver's quirk
    assert validate_raster(str(path), "bronze-rasters/T33UVR_B04.jp2", {})["valid"]
    for tier in ("visualization", "analysis"):
        made = make_cog(path, tmp_path / f"{tier}.tif", tier, {})
        facts = cog_facts(tmp_path / f"{tier}.tif")
        assert facts["valid"] and facts["count"] == 3 and made["crs"] == "EPSG:32633"
        assert facts["transform"] == rf.utm_transform()


def test_gdal_failing_on_the_file_fails_the_cog_task_at_once(tmp_path, monkeypatch):
    """A conversion GDAL refuses fails the same way on every retry: it is a CogError (a
    PermanentError) naming the blob; a disk error is not, and stays retried."""
    import rio_cogeo.cogeo
    from rasterio._err import CPLE_AppDefinedError, CPLE_FileIOError

    from exceptions import PermanentError

    path = tmp_path / "dem.tif"
    path.write_bytes(rf.geotiff(rf.elevation(50, 60)))
    params = {"container_name": "bronze-rasters", "blob_name": "2024/dem one.tif"}

    def refuses(*args, **kwargs):
        raise CPLE_AppDefinedError(1, 1, "Cannot invert geotransform")

    monkeypatch.setattr(rio_cogeo.cogeo, "cog_translate", refuses)
    with pytest.raises(PermanentError, match="bronze-rasters/2024/dem one.tif: the "
                                             "analysis COG could not be made: Cannot"):
        make_cog(path, tmp_path / "cog.tif", "analysis", params)

    def disk_full(*args, **kwargs):
        raise CPLE_FileIOError(3, 3, "Write error: No space left on device")

    monkeypatch.setattr(rio_cogeo.cogeo, "cog_translate", disk_full)
    with pytest.raises(CPLE_FileIOError):
        make_cog(path, tmp_path / "cog.tif", "analysis", params)


@pytest.mark.parametrize("tier", ["visualization", "analysis"])
def test_an_unlabelled_alpha_band_keeps_the_photo_transparent(tmp_path, tier):
    """A 4-band uint8 photo whose 4th band holds only 0 and 255 but is labelled
    'undefined' (as many tools write a 4th band) is detected rgba; its COG
    showed the transparent collar opaque. Now the collar stays transparent."""
    path = tmp_path / "ortho.tif"
    path.write_bytes(rf.geotiff(rf.photo_with_alpha(), photometric="rgb",
                                alpha="unspecified"))
    with rasterio.open(path) as src:
        assert src.colorinterp[3].name == "undefined"
    r = validate_raster(str(path), "bronze-rasters/ortho.tif", {})
    assert r["raster_type"]["detected"] == "rgba"
    make_cog(path, tmp_path / "cog.tif", tier, {"alpha_band": 4})
    facts = cog_facts(tmp_path / "cog.tif")
    assert facts["valid"], facts["errors"]
    assert facts["count"] == (3 if tier == "visualization" else 4)
    assert facts["empty"] == pytest.approx(1 - 0.9 * 0.875, abs=0.01)
