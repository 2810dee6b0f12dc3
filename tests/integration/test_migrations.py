"""apply_migrations: each numbered migration applied once, whoever and however many run it."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from infrastructure.migrations import apply_migrations, available_migrations


@pytest.fixture
def empty_database_url(server_url: str):
    """A brand-new database with no schema at all."""
    name = f"engine_empty_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_conninfo(server_url, dbname=name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def applied_versions(conninfo: str) -> list[tuple[int, str]]:
    with psycopg.connect(conninfo) as conn:
        return conn.execute(
            "SELECT version, name FROM app.schema_migrations ORDER BY version").fetchall()


def expected_versions() -> list[tuple[int, str]]:
    return [(version, name) for version, name, _ in available_migrations()]


def test_migrations_are_found_in_order():
    found = expected_versions()
    assert found and found[0] == (1, "0001_initial")
    assert [v for v, _ in found] == sorted({v for v, _ in found})


def test_applying_twice_applies_nothing_the_second_time(empty_database_url):
    first = apply_migrations(empty_database_url)
    assert first == [name for _, name in expected_versions()]
    assert apply_migrations(empty_database_url) == []
    assert applied_versions(empty_database_url) == expected_versions()


def test_an_already_migrated_database_is_left_alone(database_url):
    assert apply_migrations(database_url) == []
    assert applied_versions(database_url) == expected_versions()


def test_concurrent_first_starts_apply_each_migration_exactly_once(empty_database_url):
    # Given eight instances starting together against an empty database,
    threads = 8
    barrier = threading.Barrier(threads)

    def start():
        barrier.wait()
        return apply_migrations(empty_database_url)

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda _: start(), range(threads)))
    # Then none failed, exactly one applied each migration, and each is recorded once.
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(name for _, name in expected_versions())
    assert applied_versions(empty_database_url) == expected_versions()


def test_the_schema_has_the_engines_tables(database_url):
    with psycopg.connect(database_url) as conn:
        tables = {row[0] for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'app'")}
    assert {"jobs", "tasks", "job_stages", "queue_messages", "schema_migrations"} <= tables


def test_the_migration_lock_is_released_afterwards(empty_database_url):
    apply_migrations(empty_database_url)
    with psycopg.connect(empty_database_url) as conn:
        held = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()[0]
    assert held == 0


def test_a_task_cannot_be_stored_without_its_attempt(database):
    # An instance still on the previous code (which did not set it) during a rolling
    # deploy: its insert fails, rather than store a task of the wrong attempt.
    import psycopg

    with database.connection() as conn:
        conn.execute("INSERT INTO app.jobs (job_id, job_type, total_stages, attempt)"
                     " VALUES ('j', 'hello_world', 2, 2)")
        with pytest.raises(psycopg.errors.NotNullViolation):
            conn.execute("INSERT INTO app.tasks (task_id, parent_job_id, job_type, task_type,"
                         " stage, task_index) VALUES ('j-s1-t0', 'j', 'hello_world', 'x', 1, 0)")
