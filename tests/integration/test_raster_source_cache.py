"""process_raster's source kept on the instance between its stages
(services/raster_source_cache.py), against a real Azurite: downloaded once for the
validate and COG stages, a replaced blob downloaded again, never removed while a task
reads it, released by the STAC stage, bounded by RASTER_SOURCE_CACHE_MB."""

from __future__ import annotations

import tempfile

import pytest

from config import get_settings, reset_settings
from jobs import ALL_JOBS
from services import raster_source_cache as cache
from services import service_raster as raster
from tests.e2e.test_process_raster import tiff, upload


class Counting:
    """The real storage, counting whole-blob downloads."""

    def __init__(self, storage):
        self.storage, self.downloads = storage, 0

    def __getattr__(self, name):
        return getattr(self.storage, name)

    def download_file(self, *args, **kwargs):
        self.downloads += 1
        return self.storage.download_file(*args, **kwargs)


@pytest.fixture
def counting(blob_storage, monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    spy = Counting(blob_storage)
    monkeypatch.setattr(raster, "get_blob_storage", lambda: spy)
    return spy


def source_files() -> list[str]:
    return sorted(p.name for p, _ in cache._entries())


def test_the_job_downloads_its_source_once_and_its_last_stage_removes_it(
        counting, geo_database):
    upload(counting, get_settings().bronze_rasters_container, "rgb.tif", tiff(3, "uint8"))
    job = ALL_JOBS["process_raster"]
    params = job.validate_job_parameters({"blob_name": "rgb.tif", "output_tier": "all"})
    validated = raster.process_raster_validate(params, {"job_id": "j" * 64})
    assert validated["tiers"] == ["visualization", "analysis", "archive"]
    assert counting.downloads == 1 and len(source_files()) == 1
    cogs = []
    for task in job.create_tasks_for_stage(2, params, "j" * 64,
                                           [{"result": validated}]):
        cogs.append(raster.process_raster_cog(task["parameters"], {"job_id": "j" * 64}))
    assert counting.downloads == 1  # the three COG tasks read the validated copy
    assert [c["tier"] for c in cogs] == ["visualization", "analysis", "archive"]
    stac = job.create_tasks_for_stage(3, params, "j" * 64, [{"result": c} for c in cogs])
    raster.process_raster_stac(stac[0]["parameters"], {"job_id": "j" * 64})
    assert source_files() == []


def test_a_replaced_blob_is_read_again_and_an_invalid_one_leaves_nothing(
        counting, geo_database):
    container = get_settings().bronze_rasters_container
    upload(counting, container, "dem.tif", tiff(1, "float32", size=300))
    params = ALL_JOBS["process_raster"].validate_job_parameters({"blob_name": "dem.tif"})
    raster.process_raster_validate(params, {"job_id": "j" * 64})
    first = source_files()
    upload(counting, container, "dem.tif", tiff(1, "float32", size=320))
    raster.process_raster_validate(params, {"job_id": "j" * 64})
    assert counting.downloads == 2 and len(source_files()) == 2 and first[0] in \
        source_files()
    upload(counting, container, "dem.tif", tiff(1, "float64", crs=None, size=300))
    with pytest.raises(Exception, match="not valid"):
        raster.process_raster_validate(params, {"job_id": "j" * 64})
    assert source_files() == []  # no COG stage follows a failed validation: all released


def test_a_source_in_use_is_never_removed(counting, tmp_path):
    container = get_settings().bronze_rasters_container
    upload(counting, container, "a.tif", tiff(1, "uint8", size=200))
    with cache.raster_source(counting, container, "a.tif", tmp_path / "w") as path:
        assert cache.release_source(counting, container, "a.tif") == 0
        assert path.is_file()
    assert cache.release_source(counting, container, "a.tif") == 1
    assert not path.exists()


def test_the_cache_stays_under_its_setting_and_zero_turns_it_off(counting, tmp_path,
                                                                 monkeypatch):
    container = get_settings().bronze_rasters_container
    upload(counting, container, "a.tif", tiff(1, "uint8", size=400))
    upload(counting, container, "b.tif", tiff(1, "uint8", size=400))
    size = counting.get_properties(container, "a.tif").size
    monkeypatch.setenv("RASTER_SOURCE_CACHE_MB", str(1.5 * size / 1024 / 1024))
    reset_settings()
    with cache.raster_source(counting, container, "a.tif", tmp_path / "w"):
        pass
    with cache.raster_source(counting, container, "b.tif", tmp_path / "w"):
        pass
    assert [n.rsplit("-", 1)[1] for n in source_files()] == ["b.tif"]  # a made room
    monkeypatch.setenv("RASTER_SOURCE_CACHE_MB", "0")
    reset_settings()
    with cache.raster_source(counting, container, "a.tif", tmp_path / "w") as path:
        assert path.parent == tmp_path / "w"  # a download of the task's own
    assert counting.downloads == 3


def test_entries_removed_by_another_task_meanwhile_are_skipped(counting, tmp_path,
                                                               monkeypatch):
    container = get_settings().bronze_rasters_container
    upload(counting, container, "a.tif", tiff(1, "uint8", size=200))
    upload(counting, container, "b.tif", tiff(1, "uint8", size=200))
    with cache.raster_source(counting, container, "a.tif", tmp_path / "w") as path:
        pass
    listed = cache._entries

    def racing_entries():  # another task releases a.tif right after the listing
        found = listed()
        path.unlink(missing_ok=True)
        return found

    monkeypatch.setattr(cache, "_entries", racing_entries)
    monkeypatch.setattr(cache, "KEEP_SECONDS", -1)  # everything is stale: evict all
    with cache.raster_source(counting, container, "b.tif", tmp_path / "w") as other:
        assert other.is_file()


def test_a_source_is_kept_only_where_the_disk_has_room_for_the_work_on_it(
        counting, tmp_path, monkeypatch):
    container = get_settings().bronze_rasters_container
    upload(counting, container, "a.tif", tiff(1, "uint8", size=300))
    size = counting.get_properties(container, "a.tif").size
    # the disk holds the source and once its size more, not the two a COG task needs
    monkeypatch.setattr(cache, "_free_bytes", lambda: 2 * size)
    with cache.raster_source(counting, container, "a.tif", tmp_path / "w") as path:
        assert path.parent == tmp_path / "w" and path.is_file()
    assert source_files() == []
    monkeypatch.setattr(cache, "_free_bytes", lambda: 3 * size)
    with cache.raster_source(counting, container, "a.tif", tmp_path / "w") as path:
        assert path.parent != tmp_path / "w"
    assert len(source_files()) == 1
