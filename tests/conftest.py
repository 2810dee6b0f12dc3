"""Shared fixtures: a real PostgreSQL, and real blob storage (Azurite), for every test that
needs one.

The server is the embedded PostgreSQL (pgserver) unless TEST_DATABASE_URL names another
(any database on it; the fixtures create their own). The schema is built once into a
template database; each test gets a fresh copy (CREATE DATABASE ... TEMPLATE), dropped after.

Blob storage:

- `azurite` (session): one Azurite (local_host/azurite.py) for the whole test session, on a
  free port, its data in a fresh .local/test-azurite-<pid>, started on first use and
  stopped (its data removed) at the end. `azurite.connection_string`, `azurite.url`,
  `azurite.port`. A subprocess a test starts (`python -m local_host serve`, a host of the
  fault suite) uses it when given STORAGE_CONNECTION_STRING=azurite.connection_string.
- `blob_storage` (function): points this process at that Azurite for one test:
  STORAGE_CONNECTION_STRING set (monkeypatch, settings reset), STORAGE_ACCOUNT_URL unset,
  and the seven zone containers renamed to fresh, unique, already created containers
  (BRONZE_RASTERS_CONTAINER=bronze-rasters-1a2b3c4d, ...; read them from get_settings()).
  Yields the process's BlobStorage, also installed with set_blob_storage, so code calling
  get_blob_storage() gets it too. Everything is put back after the test.
- `blob_container` (function): the name of a fresh, empty container of this test's own
  (with `blob_storage`).

The geospatial database (PostGIS and pgstac):

- `postgis` (session): one local PostGIS server (infrastructure/local_postgis.py) for the
  whole session, from the machine's PostgreSQL and PostGIS binaries, in a fresh
  .local/test-postgis-<pid> on a free port (as an unprivileged user when root), stopped and
  removed at the end. `postgis.url(dbname)`, `postgis.port`, and `postgis.template`: a
  database with the extensions, schema geo and pgstac installed once (pypgstac's
  migrations). Without PostGIS on the machine, a test using it is skipped with a one-line
  install hint, or fails with that hint when CI=true.
- `geo_database` (function): the URL of a fresh database cloned from that template,
  installed as this process's geospatial database (GEO_DATABASE_URL set, settings and the
  geo pool reset, put back after the test). Subprocesses get it with
  GEO_DATABASE_URL=geo_database.

    def test_catalogues_a_table(geo_database):
        with get_geo_database().connection() as conn:
            conn.execute("SELECT pgstac.get_version()")

    def test_reads_a_raster(blob_storage, engine):
        container = get_settings().bronze_rasters_container
        blob_storage.upload_file(container, "dem/tile.tif", tif_path)
        engine.run("my_job", {"container": container, "blob": "dem/tile.tif"})
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from config import reset_settings  # noqa: E402
from infrastructure.db import Database, set_database  # noqa: E402
from infrastructure.migrations import apply_migrations  # noqa: E402
from infrastructure.queues import set_queue  # noqa: E402
from infrastructure.queues.embedded import EmbeddedQueue  # noqa: E402

ZONE_CONTAINER_SETTINGS = (
    "BRONZE_VECTORS_CONTAINER", "BRONZE_RASTERS_CONTAINER", "BRONZE_MISC_CONTAINER",
    "SILVER_COGS_CONTAINER", "SILVER_VECTORS_CONTAINER", "SILVER_STAC_ASSETS_CONTAINER",
    "SILVER_TEMP_CONTAINER",
)


# Tests of blob storage or the geospatial database: they run on Azurite and the local
# PostGIS server, never on TEST_DATABASE_URL, so the second pass of make test leaves them.
ONCE_FIXTURES = {"azurite", "blob_storage", "blob_container", "postgis", "geo_database"}


def pytest_collection_modifyitems(items):
    """Mark each test by its folder (tests/unit, tests/integration, tests/e2e), and
    `runs_once` a test of blob storage or the geospatial database."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, parts[0]))
        if ONCE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.runs_once)


@pytest.fixture(scope="session")
def server_url() -> str:
    """A connection URI for the PostgreSQL server the tests use."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    from infrastructure.embedded_pg import embedded_database_url

    return embedded_database_url(str(ROOT / ".local" / "test-pgdata"))


def _admin(server_url: str) -> psycopg.Connection:
    return psycopg.connect(server_url, autocommit=True)


@pytest.fixture(scope="session")
def template_db(server_url: str):
    name = f"engine_template_{os.getpid()}"
    with _admin(server_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    apply_migrations(make_conninfo(server_url, dbname=name))
    yield name
    with _admin(server_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(server_url: str, template_db: str):
    """The URI of a fresh, migrated database of this test's own."""
    name = f"engine_test_{uuid.uuid4().hex[:12]}"
    with _admin(server_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield make_conninfo(server_url, dbname=name)
    with _admin(server_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database(database_url: str, monkeypatch):
    """A Database on a fresh database, installed as the process's database, with an
    embedded queue (short lock) installed as the process's queue."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("QUEUE_BACKEND", "embedded")
    # The geospatial database is only checked, never prepared, unless a test asks for one
    # (geo_database): no extension or pgstac role lands on TEST_DATABASE_URL's server.
    monkeypatch.setenv("GEO_AUTO_MIGRATE", "false")
    # Short timings, so retries and their backoff run within a test.
    monkeypatch.setenv("TASK_RETRY_BASE_SECONDS", "0.01")
    monkeypatch.setenv("TASK_RETRY_CAP_SECONDS", "0.05")
    reset_settings()
    db = Database(database_url, min_size=1, max_size=20).open()
    set_database(db)
    set_queue(EmbeddedQueue(db, lock_seconds=5.0, max_delivery_count=3))
    yield db
    set_queue(None)
    set_database(None)
    reset_settings()


@pytest.fixture
def queue(database) -> EmbeddedQueue:
    from infrastructure.queues import get_queue

    return get_queue()


@pytest.fixture
def engine(database, queue):
    """Runs jobs end to end in this process: engine.run("hello_world", {"n": 3})."""
    from jobs import ALL_JOBS
    from services import ALL_HANDLERS
    from tests.harness import EngineHarness
    from core.machine import CoreMachine

    return EngineHarness(CoreMachine(all_jobs=ALL_JOBS, all_handlers=ALL_HANDLERS), queue)


@pytest.fixture
def batch_engine(engine):
    """The engine fixture, delivering task messages in batches as process_task_batch does."""
    from tests.harness import EngineHarness

    return EngineHarness(engine.machine, engine.queue, batch=True)


@pytest.fixture(scope="session")
def azurite():
    """One Azurite for the test session: a free port, fresh data under .local/."""
    from local_host.azurite import Azurite

    for stale in (ROOT / ".local").glob("test-azurite-*"):  # of sessions killed before
        if not Path(f"/proc/{stale.name.rsplit('-', 1)[-1]}").exists():
            shutil.rmtree(stale, ignore_errors=True)
    location = ROOT / ".local" / f"test-azurite-{os.getpid()}"
    shutil.rmtree(location, ignore_errors=True)
    server = Azurite(port=0, location=location).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(location, ignore_errors=True)


@pytest.fixture
def blob_storage(azurite, monkeypatch):
    """This process's BlobStorage on the session's Azurite, with fresh zone containers."""
    from config import Settings, get_settings
    from infrastructure.blob_storage import BlobStorage, set_blob_storage
    from local_host.storage import zone_containers

    suffix = uuid.uuid4().hex[:8]
    monkeypatch.setenv("STORAGE_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.delenv("STORAGE_ACCOUNT_URL", raising=False)
    defaults = {field.alias: field.default for field in Settings.model_fields.values()}
    for name in ZONE_CONTAINER_SETTINGS:
        monkeypatch.setenv(name, f"{defaults[name]}-{suffix}")
    reset_settings()
    storage = BlobStorage.from_settings()
    for container in zone_containers(get_settings()):
        storage.create_container(container)
    set_blob_storage(storage)
    yield storage
    set_blob_storage(None)
    storage.service.close()
    reset_settings()


@pytest.fixture
def blob_container(blob_storage) -> str:
    """A fresh, empty container of this test's own."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    blob_storage.create_container(name)
    return name


# -- the geospatial database --------------------------------------------------------------
def _stop_stale_postgis() -> None:
    """Servers and folders of test sessions killed before they could clean up."""
    from infrastructure.local_postgis import LocalPostgis, LocalPostgisError

    for stale in (ROOT / ".local").glob("test-postgis-*"):
        if stale.name.endswith(".lock") or Path(f"/proc/{stale.name.rsplit('-', 1)[-1]}").exists():
            continue
        try:
            LocalPostgis(stale).stop_server(mode="immediate")
        except LocalPostgisError:
            pass
        shutil.rmtree(stale, ignore_errors=True)
        (stale.parent / f".{stale.name}.lock").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def postgis():
    """One local PostGIS server for the session, with a template database ready."""
    from infrastructure.geo_migrations import apply_geo_migrations
    from infrastructure.local_postgis import LocalPostgis, LocalPostgisError, find_binaries

    try:
        find_binaries(os.environ.get("LOCAL_POSTGIS_BIN_DIR") or None)
    except LocalPostgisError as exc:
        message = f"PostGIS is missing: {exc.reason}; {exc.hint}"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    _stop_stale_postgis()
    location = ROOT / ".local" / f"test-postgis-{os.getpid()}"
    shutil.rmtree(location, ignore_errors=True)
    # Throwaway data: no fsync.
    server = LocalPostgis(location, port=0, options=("fsync=off", "full_page_writes=off",
                                                     "synchronous_commit=off"))
    server.start()
    try:
        server.template = "geo_template"
        with _admin(server.url()) as conn:
            conn.execute(f'CREATE DATABASE "{server.template}"')
        apply_geo_migrations(server.url(server.template))
        yield server
    finally:
        server.stop()
        shutil.rmtree(location, ignore_errors=True)
        (location.parent / f".{location.name}.lock").unlink(missing_ok=True)


@pytest.fixture
def geo_database(postgis, monkeypatch):
    """A fresh geospatial database of this test's own, installed as GEO_DATABASE_URL."""
    from infrastructure.geo_db import reset_geo_database

    name = f"geo_test_{uuid.uuid4().hex[:12]}"
    with _admin(postgis.url()) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgis.template}"')
    url = postgis.url(name)
    monkeypatch.setenv("GEO_DATABASE_URL", url)
    reset_settings()
    reset_geo_database()
    yield url
    reset_geo_database()
    reset_settings()
    with _admin(postgis.url()) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
