"""process_raster under a crash (issue 15 point 6): the host is SIGKILLed while a COG task
converts; its lease lapses, the sweeper runs the task again on the restarted host, and the
job completes with one valid COG and one STAC item."""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import pytest
from rio_cogeo.cogeo import cog_validate

from config import get_settings
from infrastructure.stac_repository import StacRepository
from tests.e2e.test_process_raster import tiff, upload

pytestmark = pytest.mark.faults


def test_a_host_killed_mid_conversion_runs_the_task_again(world, blob_storage,
                                                          geo_database):
    upload(blob_storage, get_settings().bronze_rasters_container, "big.tif",
           tiff(3, "uint8", "EPSG:32633", 5000))
    world.hosts(1)
    world.start_sweeper()
    code, body = world.cluster.submit({"blob_name": "big.tif", "output_tier": "archive"},
                                      job_type="process_raster")
    assert code == 201, body
    job_id = body["job_id"]
    world.wait_for("SELECT task_id FROM app.tasks WHERE parent_job_id = %s AND stage = 2"
                   " AND status = 'processing'", (job_id,), timeout=60,
                   what="the COG task running")
    # past the download (75 MB), inside the conversion (several seconds; on a slow
    # machine the kill may land in the download instead: the task runs again either way)
    time.sleep(1.5)
    with world.db.connection() as conn:
        still = conn.execute("SELECT status FROM app.tasks WHERE parent_job_id = %s AND"
                             " stage = 2", (job_id,)).fetchone()["status"]
    assert still == "processing"
    assert world.cluster.kill_all() == 1
    world.cluster.start()
    deadline = time.monotonic() + 120
    status = world.cluster.status(job_id)
    while status["status"] not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
        status = world.cluster.status(job_id)
    assert status["status"] == "completed", status.get("error_details")
    with world.db.connection() as conn:
        task = conn.execute("SELECT retry_count, status FROM app.tasks WHERE"
                            " parent_job_id = %s AND stage = 2", (job_id,)).fetchone()
    assert task["status"] == "completed" and task["retry_count"] >= 1  # it ran again
    silver = get_settings().silver_cogs_container
    assert [b.name for b in blob_storage.list_blobs(silver)] == ["big/big_cog_archive.tif"]
    buffer = io.BytesIO()
    blob_storage.download_to(silver, "big/big_cog_archive.tif", buffer)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cog.tif"
        path.write_bytes(buffer.getvalue())
        valid, errors, _ = cog_validate(str(path), quiet=True)
    assert valid, errors
    assert [i["id"] for i in StacRepository().search(["system-rasters"])] == ["big"]
