"""Submit checks (jobs/declarations.py SubmitCheck, core/submit_checks.py) against the real
database, through submit_job and through the HTTP submit route: a requirement not met is a
400 naming the parameter and the resource, a resource out of reach a 503, and nothing is
stored either way; `when` skips a check; an identity check's value joins the job's
parameters and id; the same submit after the job ran finds the job (200)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from psycopg import sql

from core.submission import submit_job
from exceptions import (
    DatabaseError, JobValidationError, PermanentError, RequirementError, ResourceUnavailableError,
)
from infrastructure.db import Database, get_database
from infrastructure.resources import Resources
from infrastructure.submit_checks import table_absent
from jobs.base import JobBase
from jobs.declarations import SubmitCheck
from jobs.mixins import JobBaseMixin
from tests import http_calls
from triggers.runtime import core_machine

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"


def columns_fingerprint(resources, schema: str, table: str) -> str:
    """An identity check: the source table's columns, hashed (read through resources)."""
    columns = resources.tables.columns(schema, table)
    return hashlib.sha256(json.dumps(columns, sort_keys=True).encode()).hexdigest()[:16]


PROBE = {"error": None}


def probe_catalog(resources, table: str) -> None:
    """A check of the job's own that cannot reach its resource when PROBE says so."""
    if PROBE["error"] is not None:
        raise PROBE["error"]


def _one_task(stage, job_params, job_id, previous_results=None):
    return [{"parameters": {}}]


def _finalize(context):
    return {"tasks": len(context.task_results)}


class CreateTableJob(JobBaseMixin, JobBase):
    job_type = "create_table"
    description = "create a table that must not exist yet (unless if_exists is replace)"
    stages = [{"number": 1, "name": "create", "task_type": "create_table",
               "parallelism": "single"}]
    parameters_schema = {"schema": {"type": "str", "default": "staging"},
                         "table_name": {"type": "str"},
                         "if_exists": {"type": "str", "default": "fail",
                                       "choices": ["fail", "replace"]},
                         "fail_after": {"type": "bool", "default": False}}
    submit_checks = (SubmitCheck("table_absent", parameter="table_name",
                                 arguments={"schema": "schema", "table": "table_name"},
                                 when=lambda p: p["if_exists"] == "fail"),)
    create_tasks_for_stage = staticmethod(_one_task)
    finalize_job = staticmethod(_finalize)


class CopyTableJob(JobBaseMixin, JobBase):
    job_type = "copy_table"
    description = "copy a source table that must exist; its columns are the job's identity"
    stages = [{"number": 1, "name": "copy", "task_type": "noop", "parallelism": "single"}]
    parameters_schema = {"schema": {"type": "str", "default": "staging"},
                         "source": {"type": "str"}}
    submit_checks = (
        SubmitCheck("table_exists", parameter="source",
                    arguments={"schema": "schema", "table": "source"}),
        SubmitCheck(columns_fingerprint, parameter="source",
                    arguments={"schema": "schema", "table": "source"},
                    identity="source_columns"),
    )
    create_tasks_for_stage = staticmethod(_one_task)
    finalize_job = staticmethod(_finalize)


class ProbeJob(CopyTableJob):
    job_type = "probe"
    submit_checks = (SubmitCheck(probe_catalog, parameter="source",
                                 arguments={"table": "source"}),)


class ProbeIdentityJob(CopyTableJob):
    job_type = "probe_identity"
    submit_checks = (SubmitCheck(probe_catalog, parameter="source",
                                 arguments={"table": "source"}, identity="probe"),)


def create_table(params, context):
    p = context["job_parameters"]
    with get_database().connection() as conn:
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {}.{} (id int)").format(
            sql.Identifier(p["schema"]), sql.Identifier(p["table_name"])))
    if p["fail_after"]:
        raise PermanentError("loading the rows failed")
    return {"created": f"{p['schema']}.{p['table_name']}"}


JOBS = {j.job_type: j for j in (CreateTableJob, CopyTableJob, ProbeJob, ProbeIdentityJob)}
HANDLERS = {"create_table": create_table, "noop": lambda params, context: {}}


@dataclass
class Submitter:
    """Submits through one path, answering (HTTP status, body) for both."""

    via: str
    machine: Any  # whose resources the checks use
    runner: Any  # an EngineHarness that runs these jobs
    send: Callable[[str, dict], tuple[int, dict]]

    def __call__(self, job_type: str, params: dict) -> tuple[int, dict]:
        return self.send(job_type, params)

    def cut_off_checks(self, monkeypatch) -> None:
        """The checks' database becomes unreachable (connection refused)."""
        def unreachable() -> Database:
            database = Database(UNREACHABLE, min_size=1, max_size=1)
            try:
                return database.open(timeout=1)
            finally:
                database.close()
        monkeypatch.setattr(self.machine, "_resources", Resources(unreachable))


def submit_core(machine: Any, job_type: str, params: dict) -> tuple[int, dict]:
    """submit_job, its outcome or error put as the HTTP route puts them."""
    try:
        outcome = submit_job(machine, job_type, params)
    except RequirementError as exc:
        return 400, {"error": str(exc), "parameter": exc.parameter,
                     "resource": exc.resource, "raised": type(exc)}
    except JobValidationError as exc:
        return 400, {"error": str(exc), "parameter": exc.parameter, "raised": type(exc)}
    except (DatabaseError, ResourceUnavailableError) as exc:
        return 503, {"error": str(exc), "raised": type(exc)}
    job = outcome.job
    return (201 if outcome.created else 200), {
        "job_id": job["job_id"], "status": job["status"], "parameters": job["parameters"],
        "attempt": job["attempt"], "idempotent": not outcome.created}


@pytest.fixture(params=["submit_job", "http"])
def submit(request, engine, monkeypatch) -> Submitter:
    runner = engine.with_jobs(JOBS, HANDLERS)
    with get_database().connection() as conn:
        conn.execute("CREATE SCHEMA staging")
    if request.param == "http":
        for job_type, job_class in JOBS.items():
            monkeypatch.setitem(core_machine.jobs_registry, job_type, job_class)
        return Submitter("http", core_machine, runner, http_calls.submit_json)
    return Submitter("submit_job", runner.machine, runner,
                     lambda job_type, params: submit_core(runner.machine, job_type, params))


def ddl(statement: str) -> None:
    with get_database().connection() as conn:
        conn.execute(statement)


def stored(database) -> dict[str, int]:
    with database.connection() as conn:
        return {table: conn.execute(f"SELECT count(*) AS n FROM app.{table}").fetchone()["n"]
                for table in ("jobs", "queue_messages", "outbox")}


NOTHING = {"jobs": 0, "queue_messages": 0, "outbox": 0}


def test_a_table_already_there_is_a_400_naming_parameter_and_resource(database, submit):
    # Given staging.roads exists,
    ddl("CREATE TABLE staging.roads (id int)")
    # When a job that must create it is submitted,
    code, body = submit("create_table", {"table_name": "roads"})
    # Then it is refused naming the parameter and the table, and nothing is stored.
    assert code == 400, body
    assert (body["parameter"], body["resource"]) == ("table_name", "staging.roads")
    assert body["error"] == ("Parameter 'table_name' ('roads'): table staging.roads "
                             "already exists")
    assert stored(database) == NOTHING


def test_a_missing_table_is_a_400_naming_parameter_and_resource(database, submit):
    # Given no staging.missing, when a job that reads it is submitted,
    code, body = submit("copy_table", {"source": "missing"})
    # then it is refused naming the parameter and the table, and nothing is stored.
    assert code == 400, body
    assert (body["parameter"], body["resource"]) == ("source", "staging.missing")
    assert "table staging.missing does not exist" in body["error"]
    assert stored(database) == NOTHING


def test_a_check_whose_when_is_false_is_skipped(database, submit):
    # Given staging.roads exists, when the job is submitted with if_exists "replace",
    ddl("CREATE TABLE staging.roads (id int)")
    code, body = submit("create_table", {"table_name": "roads", "if_exists": "replace"})
    # then table_absent did not run: the job is created.
    assert code == 201, body
    assert body["parameters"]["if_exists"] == "replace"
    assert stored(database)["jobs"] == 1


def test_an_identity_check_value_joins_the_parameters_and_the_job_id(database, submit):
    # Given a source table,
    ddl("CREATE TABLE staging.roads (id int)")
    resources = Resources()
    before = columns_fingerprint(resources, "staging", "roads")
    # When a job reading it is submitted twice,
    code, first = submit("copy_table", {"source": "roads"})
    again_code, again = submit("copy_table", {"source": "roads"})
    # Then its columns' fingerprint is a parameter, and the same table is the same job;
    assert code == 201, first
    assert first["parameters"] == {"schema": "staging", "source": "roads",
                                   "source_columns": before}
    assert (again_code, again["job_id"], again["idempotent"]) == (200, first["job_id"], True)
    # When a column is added, the same submit is a new job, with the new fingerprint.
    ddl("ALTER TABLE staging.roads ADD COLUMN name text")
    code, changed = submit("copy_table", {"source": "roads"})
    assert code == 201, changed
    assert changed["job_id"] != first["job_id"]
    after = columns_fingerprint(resources, "staging", "roads")
    assert after != before and changed["parameters"]["source_columns"] == after
    assert stored(database)["jobs"] == 2


def test_an_identity_value_cannot_be_sent_as_a_parameter(database, submit):
    ddl("CREATE TABLE staging.roads (id int)")
    code, body = submit("copy_table", {"source": "roads", "source_columns": "forged"})
    assert code == 400 and "source_columns" in body["error"]
    assert stored(database) == NOTHING


def test_the_same_submit_after_the_job_made_the_table_finds_the_job(database, submit):
    # Given a job that created staging.parcels and completed,
    params = {"table_name": "parcels"}
    code, first = submit("create_table", params)
    assert code == 201, first
    submit.runner.drain()
    assert submit.runner.status(first["job_id"])["status"] == "completed"
    with pytest.raises(RequirementError):  # its table_absent check would now fail,
        table_absent(Resources(), "staging", "parcels")
    # When the same parameters are submitted again,
    code, again = submit("create_table", params)
    # Then the job is found (non-identity checks run only when a job would be created).
    assert code == 200, again
    assert (again["job_id"], again["idempotent"], again["status"]) == (
        first["job_id"], True, "completed")
    assert stored(database)["jobs"] == 1


def test_a_failed_jobs_new_attempt_runs_the_checks_again(database, submit):
    # Given a job that created its table, then failed,
    params = {"table_name": "parcels", "fail_after": True}
    code, first = submit("create_table", params)
    submit.runner.drain()
    assert submit.runner.status(first["job_id"])["status"] == "failed"
    # When it is submitted again (which would start attempt 2),
    code, body = submit("create_table", params)
    # Then table_absent refuses it, and the job is left as it was.
    assert code == 400, body
    assert (body["parameter"], body["resource"]) == ("table_name", "staging.parcels")
    job = submit.runner.status(first["job_id"])
    assert (job["status"], job["attempt"]) == ("failed", 1)
    assert stored(database)["queue_messages"] == 0


@pytest.mark.parametrize("job_type, raised", [
    ("create_table", DatabaseError),  # a named check
    ("copy_table", ResourceUnavailableError),  # an identity check of the job's own
])
def test_an_unreachable_database_is_a_503_and_stores_nothing(database, submit, monkeypatch,
                                                             job_type, raised):
    # Given the database the checks read cannot be reached,
    submit.cut_off_checks(monkeypatch)
    # When a job with a check is submitted,
    code, body = submit(job_type, {"table_name": "roads"} if job_type == "create_table"
                        else {"source": "roads"})
    # Then the caller is told to try again, and nothing is stored.
    assert code == 503, body
    if submit.via == "http":
        assert "try again" in body["error"]
    else:
        assert body["raised"] is raised
    assert stored(database) == NOTHING


@pytest.mark.parametrize("job_type", ["probe", "probe_identity"])
@pytest.mark.parametrize("error", [ConnectionError("catalog refused the connection"),
                                   OSError("catalog unreachable")], ids=["conn", "os"])
def test_a_check_raising_a_transient_error_is_a_503_and_stores_nothing(
        database, submit, job_type, error):
    # Given a check of the job's own that cannot reach its resource,
    PROBE["error"] = error
    try:
        code, body = submit(job_type, {"source": "roads"})
    finally:
        PROBE["error"] = None
    # Then the submit is a 503 naming the check and the cause, and nothing is stored.
    assert code == 503, body
    assert "submit check probe_catalog for parameter 'source' could not reach" in body["error"]
    assert str(error) in body["error"]
    if submit.via == "submit_job":
        assert body["raised"] is ResourceUnavailableError
    assert stored(database) == NOTHING
    # and once it can, the same submit creates the job.
    code, body = submit(job_type, {"source": "roads"})
    assert code == 201, body
