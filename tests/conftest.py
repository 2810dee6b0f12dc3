"""Shared fixtures: a real PostgreSQL for every test that needs one.

The server is the embedded PostgreSQL (pgserver) unless TEST_DATABASE_URL names another
(any database on it; the fixtures create their own). The schema is built once into a
template database; each test gets a fresh copy (CREATE DATABASE ... TEMPLATE), dropped after.
"""

from __future__ import annotations

import os
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


def pytest_collection_modifyitems(items):
    """Mark each test by its folder: tests/unit, tests/integration, tests/e2e."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, parts[0]))


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
