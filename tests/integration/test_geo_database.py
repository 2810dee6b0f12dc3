"""The geospatial database: the local PostGIS server, the extensions, schema geo and pgstac
(pypgstac's own migrations, once under concurrent first use), geo_available's reasons and
hints, and what the engine does with them (submit's 503 for a job that requires postgis,
health details' `geospatial` entry, make migrate GEO=1)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import psycopg
import pytest

from config import reset_settings
from infrastructure.geo_db import geo_available, get_geo_database, reset_geo_database
from infrastructure.geo_migrations import apply_geo_migrations, pgstac_target_version
from infrastructure.local_postgis import SERVICE_USER, LocalPostgis, read_pid_file, running_port
from jobs.base import JobBase
from jobs.mixins import JobBaseMixin
from tests.http_calls import submit
from triggers import health
from triggers.runtime import core_machine

ROOT = Path(__file__).resolve().parents[2]
details_fn = health.health_details.build().get_user_function()


class NeedsPostgisJob(JobBaseMixin, JobBase):
    """Test-only: a job that declares it needs the geospatial database."""

    job_type = "needs_postgis"
    description = "A test-only job that requires PostGIS"
    stages = [{"number": 1, "name": "one", "task_type": "hello_world_greeting",
               "parallelism": "single"}]
    parameters_schema = {"n": {"type": "int", "default": 1}}
    requires = ("postgis",)

    @staticmethod
    def create_tasks_for_stage(stage, job_params, job_id, previous_results=None):
        return [{"parameters": {"index": 0, "message": "hi"}}]

    @staticmethod
    def finalize_job(context):
        return {}


@pytest.fixture
def needs_postgis_job(monkeypatch):
    monkeypatch.setitem(core_machine.jobs_registry, NeedsPostgisJob.job_type, NeedsPostgisJob)
    return NeedsPostgisJob.job_type


@pytest.fixture
def unreachable_geo(monkeypatch):
    """GEO_DATABASE_URL naming a port where nothing listens."""
    monkeypatch.setenv("GEO_DATABASE_URL",
                       "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    reset_settings()
    reset_geo_database()
    yield
    reset_geo_database()
    reset_settings()


def _details() -> tuple[int, dict]:
    import json

    response = details_fn(__import__("azure.functions").functions.HttpRequest(
        "GET", "/api/health/details", body=b""))
    return response.status_code, json.loads(response.get_body())


def _postgres_processes(data_dir: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(data_dir) in cmdline and "postgres" in cmdline:
                found.append(int(entry.name))
    return found


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid for {pid}")


# -- the local PostGIS server -------------------------------------------------------------
def test_the_local_server_starts_is_reused_and_stops_leaving_no_process(postgis):
    # Given a folder of its own
    location = ROOT / ".local" / f"test-postgis-extra-{uuid.uuid4().hex[:8]}"
    server = LocalPostgis(location, options=("fsync=off",))
    try:
        # When it starts
        server.start()
        pid, port = read_pid_file(server.data_dir)
        # Then it answers on 127.0.0.1, from the folder's data, as an unprivileged user
        # when this process is root
        assert server.started and port == server.port == running_port(location)
        with psycopg.connect(server.url()) as conn:
            assert conn.execute("SHOW data_directory").fetchone()[0] == str(server.data_dir)
            assert conn.execute("SELECT name FROM pg_available_extensions"
                                " WHERE name = 'postgis'").fetchone()
        if os.geteuid() == 0:
            assert _uid_of(pid) == pwd.getpwnam(SERVICE_USER).pw_uid != 0
            assert server.data_dir.stat().st_uid == pwd.getpwnam(SERVICE_USER).pw_uid
        else:
            assert _uid_of(pid) == os.geteuid()
        # A second start in the folder reuses it, and its stop leaves it running
        again = LocalPostgis(location).start()
        assert again.reused and again.port == port
        again.stop()
        assert running_port(location) == port
    finally:
        server.stop()
    # When its owner stops it, no process is left
    assert read_pid_file(server.data_dir) is None
    assert _postgres_processes(server.data_dir) == []
    shutil.rmtree(location, ignore_errors=True)
    (location.parent / f".{location.name}.lock").unlink(missing_ok=True)


def test_serve_s_local_postgis_context_starts_and_stops_the_server(postgis, monkeypatch):
    import io

    from local_host.postgis import local_postgis

    location = ROOT / ".local" / f"test-postgis-extra-{uuid.uuid4().hex[:8]}"
    for name in ("GEO_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_POSTGIS_DIR", str(location))
    monkeypatch.setenv("GEO_AUTO_MIGRATE", "true")
    reset_settings()
    reset_geo_database()
    out = io.StringIO()
    try:
        with local_postgis(out=out) as server:
            assert server is not None and server.started
            assert f"local PostGIS server on {server.url()}" in out.getvalue()
            # The app finds it on its own, and prepares it on first use
            status = geo_available()
            assert status.available, status
            assert status.database == f"local PostGIS server ({location})"
            assert status.pgstac_version == pgstac_target_version()
            data_dir = server.data_dir
        assert _postgres_processes(data_dir) == []
    finally:
        reset_geo_database()
        reset_settings()
        shutil.rmtree(location, ignore_errors=True)
        (location.parent / f".{location.name}.lock").unlink(missing_ok=True)


# -- extensions, schemas and pgstac -------------------------------------------------------
def test_the_geo_database_has_postgis_the_schema_and_pgstac(geo_database):
    with get_geo_database().connection() as conn:
        extensions = {r["extname"] for r in conn.execute("SELECT extname FROM pg_extension")}
        assert {"postgis", "btree_gist", "unaccent"} <= extensions
        assert conn.execute("SELECT pgstac.get_version() AS v").fetchone()["v"] == "0.10.0"
        assert conn.execute("SELECT to_regnamespace('geo') IS NOT NULL AS ok").fetchone()["ok"]
        roles = {r["rolname"] for r in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'pgstac%'")}
        assert roles == {"pgstac_admin", "pgstac_read", "pgstac_ingest"}
        # pgstac's own functions write and read (search needs search_path pgstac, public)
        conn.execute("SELECT pgstac.create_collection(%s::jsonb)", (
            '{"id": "c1", "type": "Collection", "stac_version": "1.0.0", "description": "d",'
            ' "license": "proprietary", "links": [], "extent": {"spatial": {"bbox":'
            ' [[0, 0, 1, 1]]}, "temporal": {"interval": [[null, null]]}}}',))
        conn.execute("SELECT pgstac.upsert_item(%s::jsonb)", (
            '{"id": "i1", "type": "Feature", "collection": "c1", "stac_version": "1.0.0",'
            ' "geometry": {"type": "Point", "coordinates": [0.5, 0.5]},'
            ' "bbox": [0.5, 0.5, 0.5, 0.5], "links": [], "assets": {},'
            ' "properties": {"datetime": "2026-01-01T00:00:00Z"}}',))
        found = conn.execute("SELECT pgstac.search('{\"collections\": [\"c1\"]}') AS r"
                             ).fetchone()["r"]
        assert [f["id"] for f in found["features"]] == ["i1"]
    status = geo_available()
    assert status.available and status.postgis_version.startswith("3.")
    assert status.schemas == ("geo",)


def test_concurrent_first_use_migrates_once(postgis):
    # Given an empty database and two hosts preparing it at once
    name = f"geo_race_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgis.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = postgis.url(name)
        barrier = threading.Barrier(2)
        results, errors = [], []

        def first_use() -> None:
            barrier.wait()
            try:
                results.append(apply_geo_migrations(url, ("geo", "geo_extra")))
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=first_use) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        # Then one of them installed everything and the other found it done
        assert not errors, errors
        applied = sorted((r.applied for r in results), key=len)
        assert applied[0] == []
        assert applied[1] == ["created extension postgis", "created extension btree_gist",
                              "created extension unaccent", "created schema geo",
                              "created schema geo_extra",
                              "created schema geo_ingest (ingest_vector's runs and staging "
                              "tables)", "installed pgstac 0.10.0"]
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM pgstac.migrations").fetchone()[0] == 1
    finally:
        with psycopg.connect(postgis.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_without_auto_migrate_a_bare_database_is_unavailable_saying_who_migrates(
        postgis, monkeypatch):
    name = f"geo_bare_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgis.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    monkeypatch.setenv("GEO_DATABASE_URL", postgis.url(name))
    monkeypatch.setenv("GEO_AUTO_MIGRATE", "false")
    reset_settings()
    reset_geo_database()
    try:
        status = geo_available()
        assert not status.available and status.database == "GEO_DATABASE_URL"
        assert "extension(s) postgis, btree_gist, unaccent are not created" in status.reason
        assert "make migrate GEO=1" in status.hint and "azure.extensions" in status.hint
    finally:
        reset_geo_database()
        reset_settings()
        with psycopg.connect(postgis.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_make_migrate_geo_installs_pgstac_and_grants_the_app_role(postgis, database_url):
    # Given an empty geospatial database and the app's role, as in Azure
    name = f"geo_deploy_{uuid.uuid4().hex[:8]}"
    role = f"app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgis.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    env = {**os.environ, "DATABASE_URL": database_url, "GEO_DATABASE_URL": postgis.url(name)}
    try:
        # When the deploy step runs
        result = subprocess.run([sys.executable, "-m", "local_host", "migrate", "--geo",
                                 "--grant-app-role", role], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120)
        # Then pgstac is installed and the app's role may ingest
        assert result.returncode == 0, result.stdout + result.stderr
        assert "installed pgstac 0.10.0" in result.stdout
        assert (f"granted pgstac_ingest, and USAGE, CREATE on schema(s) geo, to {role}"
                in result.stdout)
        with psycopg.connect(postgis.url(name)) as conn:
            assert conn.execute("SELECT pg_has_role(%s, 'pgstac_ingest', 'MEMBER'),"
                                " has_schema_privilege(%s, 'geo', 'CREATE')",
                                (role, role)).fetchone() == (True, True)
            # and read tables the administrator creates there (stac_catalog_vectors)
            conn.execute("CREATE TABLE geo.loaded_by_admin (id int)")
            assert conn.execute("SELECT has_table_privilege(%s, 'geo.loaded_by_admin',"
                                " 'SELECT')", (role,)).fetchone() == (True,)
            conn.rollback()
        assert "granted SELECT on the tables of schema(s) geo" in result.stdout
        # Only the geospatial database: the engine's migrations are the app role's own
        assert "migration(s) already applied" not in result.stdout
        again = subprocess.run([sys.executable, "-m", "local_host", "migrate", "--geo"],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and "up to date (PostGIS 3." in again.stdout
    finally:
        with psycopg.connect(postgis.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


# -- unavailable: reasons and hints -------------------------------------------------------
def test_missing_binaries_are_named_with_what_to_install(tmp_path, monkeypatch):
    for name in ("GEO_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_POSTGIS_BIN_DIR", str(tmp_path))
    reset_settings()
    reset_geo_database()
    try:
        status = geo_available()
    finally:
        reset_settings()
    assert not status.available
    assert status.reason.startswith("no PostgreSQL server binaries (initdb, pg_ctl, postgres) "
                                    f"found in {tmp_path} (LOCAL_POSTGIS_BIN_DIR)")
    assert "apt-get install postgresql-15-postgis-3" in status.hint
    assert "brew install postgis" in status.hint and "GEO_DATABASE_URL" in status.hint


def test_a_local_server_not_running_says_how_to_start_it(postgis, tmp_path, monkeypatch):
    for name in ("GEO_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_POSTGIS_DIR", str(tmp_path / "none"))
    reset_settings()
    reset_geo_database()
    try:
        status = geo_available()
    finally:
        reset_settings()
    assert not status.available
    assert "the local PostGIS server is not running" in status.reason
    assert "make serve" in status.hint and "make postgis" in status.hint


def test_submit_of_a_job_requiring_postgis_is_503_when_unavailable(
        database, needs_postgis_job, unreachable_geo):
    code, body = submit(needs_postgis_job, '{"n": 2}')
    assert code == 503
    assert body["requirement"] == "postgis"
    assert body["error"].startswith(f"Job '{needs_postgis_job}' needs the geospatial "
                                    "database (PostGIS and the pgstac catalogue), which is "
                                    "unavailable here (GEO_DATABASE_URL): cannot reach")
    assert body["hint"] == "check GEO_DATABASE_URL"
    with database.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM app.jobs").fetchone()["n"] == 0
    # The other jobs still run
    assert submit("hello_world", '{"n": 1}')[0] == 201
    code, details = _details()
    assert code == 200
    geo = details["geospatial"]
    assert geo["available"] is False and geo["database"] == "GEO_DATABASE_URL"
    assert "cannot reach" in geo["reason"] and geo["hint"] == "check GEO_DATABASE_URL"
    assert geo["jobs"] == sorted([needs_postgis_job, "ingest_vector", "process_raster",
                                  "stac_catalog_container", "stac_catalog_raster",
                                  "stac_catalog_vectors"])


def test_submit_of_a_job_requiring_postgis_runs_when_available(
        database, geo_database, needs_postgis_job):
    code, body = submit(needs_postgis_job, '{"n": 2}')
    assert code == 201, body
    code, details = _details()
    geo = details["geospatial"]
    assert code == 200 and geo["available"] is True
    assert geo["pgstac_version"] == "0.10.0" and geo["schemas"] == ["geo"]
    assert "reason" not in geo


def test_health_details_report_the_engine_database_without_postgis(database):
    # DATABASE_URL's server: the embedded PostgreSQL has no PostGIS; a server that has it
    # is only checked here (GEO_AUTO_MIGRATE=false), and finds nothing prepared.
    code, details = _details()
    assert code == 200
    geo = details["geospatial"]
    assert geo["available"] is False and geo["database"] == "DATABASE_URL"
    assert geo["reason"] and geo["hint"]


@pytest.mark.parametrize("ci", ["true", None])
def test_a_geospatial_test_without_postgis_fails_in_ci_and_is_skipped_elsewhere(
        tmp_path, ci):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["LOCAL_POSTGIS_BIN_DIR"] = str(tmp_path)  # as on a machine without PostGIS
    if ci:
        env["CI"] = ci
    test = ("tests/integration/test_geo_database.py::"
            "test_the_geo_database_has_postgis_the_schema_and_pgstac")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p",
                             "no:cacheprovider", test], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    hint = (f"PostGIS is missing: no PostgreSQL server binaries (initdb, pg_ctl, postgres) "
            f"found in {tmp_path} (LOCAL_POSTGIS_BIN_DIR); install PostgreSQL's PostGIS "
            "(Debian/Ubuntu: apt-get install postgresql-15-postgis-3")
    assert hint in result.stdout, result.stdout
    if ci:
        assert result.returncode == 1 and "1 error" in result.stdout
    else:
        assert result.returncode == 0 and "1 skipped" in result.stdout
