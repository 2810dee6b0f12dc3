"""Local blob storage as a user meets it: `python -m local_host upload` (and the same code
in-process), and Azurite started and stopped by its owner (serve, upload), reused when one
already runs, refused clearly when something else holds its port."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from config import get_settings
from infrastructure.blob_storage import BlobStorage
from local_host.azurite import Azurite, AzuriteError, connection_string, probe
from local_host.storage import zone_containers
from local_host.upload import UploadError, check_container_name, plan_uploads, upload_paths

ROOT = Path(__file__).resolve().parents[2]


def make_tree(base: Path) -> Path:
    """data/a.txt, data/rasters/2024/tile 1.tif, data/rasters/2024/deeper/x.json"""
    data = base / "data"
    (data / "rasters" / "2024" / "deeper").mkdir(parents=True)
    (data / "a.txt").write_bytes(b"alpha")
    (data / "rasters" / "2024" / "tile 1.tif").write_bytes(b"\x49\x49\x2a\x00" * 100)
    (data / "rasters" / "2024" / "deeper" / "x.json").write_bytes(b'{"x": 1}')
    return data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def storage_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no storage configured unless given."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("STORAGE_CONNECTION_STRING", "STORAGE_ACCOUNT_URL", "AZURITE_PORT",
                        "AZURITE_LOCATION")}
    env.update(extra)
    return env


def run_upload(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "local_host", "upload", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def azurite_processes(location: Path) -> list[int]:
    """Pids of node processes running Azurite with this data folder."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"azurite" in a for a in args) and str(location).encode() in args:
            pids.append(int(entry.name))
    return pids


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# -- the upload command -------------------------------------------------------------------
def test_upload_command_keeps_relative_paths_and_creates_the_container(blob_storage,
                                                                        tmp_path):
    # Given a nested folder and a file elsewhere, and storage the user pointed at
    data = make_tree(tmp_path)
    extra = tmp_path / "elsewhere" / "notes.md"
    extra.parent.mkdir()
    extra.write_bytes(b"# notes")
    container = f"uploads-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    assert not blob_storage.container_exists(container)

    # When the user uploads both
    result = run_upload(container, str(data), str(extra), env=dict(os.environ))

    # Then every file is a blob named by its path relative to the folder given
    assert result.returncode == 0, result.stderr
    blobs = {b.name: b for b in blob_storage.list_blobs(container)}
    assert sorted(blobs) == ["a.txt", "notes.md", "rasters/2024/deeper/x.json",
                             "rasters/2024/tile 1.tif"]
    assert blob_storage.read_range(container, "rasters/2024/tile 1.tif", 0, 400) == \
        b"\x49\x49\x2a\x00" * 100
    assert blobs["rasters/2024/tile 1.tif"].content_type == "image/tiff"
    # And the output says what was uploaded
    assert f"created container {container}" in result.stdout
    assert "  rasters/2024/deeper/x.json (8 bytes)" in result.stdout
    assert f"uploaded 4 file(s), 420 bytes, to container {container}" in result.stdout

    # And uploading again replaces the blobs, the container already there
    (data / "a.txt").write_bytes(b"beta")
    again = run_upload(container, str(data / "a.txt"), env=dict(os.environ))
    assert again.returncode == 0, again.stderr
    assert "created container" not in again.stdout
    assert blob_storage.read_range(container, "a.txt", 0, 100) == b"beta"


def test_upload_in_process(blob_storage, tmp_path):
    data = make_tree(tmp_path)
    container = get_settings().bronze_misc_container
    out = io.StringIO()
    uploads = upload_paths(container, [data / "rasters"], out=out)
    assert [u.blob for u in uploads] == ["2024/tile 1.tif", "2024/deeper/x.json"]
    assert sorted(b.name for b in blob_storage.list_blobs(container)) == \
        ["2024/deeper/x.json", "2024/tile 1.tif"]
    assert "uploaded 2 file(s), 408 bytes" in out.getvalue()


def test_upload_refuses_bad_container_names_before_starting_anything(tmp_path):
    file = tmp_path / "a.txt"
    file.write_bytes(b"x")
    for bad in ("ab", "a" * 64, "Bronze", "a--b", "-ab", "ab-", "a_b", "bronze.rasters", ""):
        with pytest.raises(UploadError, match="not a valid container name"):
            check_container_name(bad)
    for good in ("abc", "a-b-c", "a" * 63, "1ab", "bronze-rasters", "silver-stac-assets"):
        check_container_name(good)

    # As a user: a clear message, exit 1, and no Azurite started (nothing on the port)
    port = free_port()
    result = run_upload("Bad_Name", str(file),
                        env=storage_env(AZURITE_PORT=str(port),
                                        AZURITE_LOCATION=str(tmp_path / "az")))
    assert result.returncode == 1
    assert "'Bad_Name' is not a valid container name: 3 to 63 characters" in result.stderr
    assert not (tmp_path / "az").exists() and probe(port) is None


def test_upload_refuses_missing_paths_and_clashing_names(tmp_path):
    data = make_tree(tmp_path)
    with pytest.raises(UploadError, match="no-such: no such file or folder"):
        plan_uploads([data, tmp_path / "no-such"])
    with pytest.raises(UploadError, match="would both be blob 'a.txt'"):
        plan_uploads([data, data / "a.txt"])


# -- Azurite's lifecycle ------------------------------------------------------------------
def test_upload_starts_azurite_for_its_duration_when_none_runs(tmp_path):
    data = make_tree(tmp_path)
    port, location = free_port(), tmp_path / "azurite"
    result = run_upload("bronze-misc", str(data),
                        env=storage_env(AZURITE_PORT=str(port),
                                        AZURITE_LOCATION=str(location)))
    assert result.returncode == 0, result.stderr
    assert "uploaded 3 file(s)" in result.stdout
    # Stopped with its owner: nothing left on the port or running on the data folder
    assert probe(port) is None
    assert azurite_processes(location) == []
    # And the data stayed in the folder: the next Azurite there serves it
    with Azurite(port=0, location=location) as azurite:
        storage = BlobStorage(_service(azurite.connection_string))
        assert len(list(storage.list_blobs("bronze-misc"))) == 3
        storage.service.close()


def _service(conn: str):
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(conn)


def test_a_running_azurite_is_reused_and_left_running(tmp_path):
    data = make_tree(tmp_path)
    with Azurite(port=0, location=tmp_path / "mine") as mine:
        # Another Azurite object on the same port uses it and does not stop it
        with Azurite(port=mine.port, location=tmp_path / "unused") as other:
            assert other.reused and not other.owned
            assert other.connection_string == mine.connection_string
        assert probe(mine.port) == "azurite"
        assert not (tmp_path / "unused").exists()

        # So does the upload command (as with make serve running in another terminal)
        result = run_upload("bronze-rasters", str(data),
                            env=storage_env(AZURITE_PORT=str(mine.port)))
        assert result.returncode == 0, result.stderr
        assert probe(mine.port) == "azurite"
        storage = BlobStorage(_service(mine.connection_string))
        assert len(list(storage.list_blobs("bronze-rasters"))) == 3
        storage.service.close()
    assert probe(mine.port) is None


def test_a_port_held_by_something_else_is_a_clear_error(tmp_path):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        with pytest.raises(AzuriteError, match=f"port {port} on 127.0.0.1 is taken by "
                                               "something that is not Azurite: set "
                                               "AZURITE_PORT"):
            Azurite(port=port, location=tmp_path / "az").start()
        file = tmp_path / "a.txt"
        file.write_bytes(b"x")
        result = run_upload("bronze-misc", str(file),
                            env=storage_env(AZURITE_PORT=str(port)))
        assert result.returncode == 1
        assert f"error: port {port} on 127.0.0.1 is taken" in result.stderr
        assert "AZURITE_PORT" in result.stderr
    finally:
        server.shutdown()
        server.server_close()


def _serve(tmp_path: Path, database_url: str) -> tuple[subprocess.Popen, int, Path]:
    location = tmp_path / "azurite"
    env = storage_env(DATABASE_URL=database_url, QUEUE_BACKEND="embedded",
                      AZURITE_PORT="0", AZURITE_LOCATION=str(location))
    proc = subprocess.Popen([sys.executable, "-m", "local_host", "serve", "--port", "0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    port = None
    for line in proc.stdout:
        found = re.match(r"Blob storage: Azurite on http://127\.0\.0\.1:(\d+)/", line)
        if found:
            port = int(found.group(1))
        if line.startswith("Listening on "):
            break
    assert port, "serve printed no Azurite line"
    return proc, port, location


def test_serve_starts_azurite_with_the_zone_containers_and_stops_it(database_url, tmp_path):
    proc, port, location = _serve(tmp_path, database_url)
    try:
        assert probe(port) == "azurite"
        assert len(azurite_processes(location)) == 1
        storage = BlobStorage(_service(connection_string(port)))
        for container in zone_containers(get_settings()):
            assert storage.container_exists(container), container
        storage.service.close()

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=20) == 0
        assert probe(port) is None
        assert azurite_processes(location) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


def test_azurite_dies_with_a_killed_owner(database_url, tmp_path):
    proc, port, location = _serve(tmp_path, database_url)
    try:
        assert len(azurite_processes(location)) == 1
        proc.kill()  # SIGKILL: no chance to stop it itself
        proc.wait(timeout=10)
        wait_until(lambda: azurite_processes(location) == [], 10.0, "Azurite to exit")
        # its listening socket closes with the last of its processes, a moment later
        wait_until(lambda: probe(port) is None, 10.0, "Azurite's port to close")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
