"""JobRepository and TaskRepository against the real schema: each write idempotent, and a
task counted off its stage once however often it is completed."""

from __future__ import annotations

from core.models import JobRecord, TaskDefinition
from core.orchestration_manager import task_id_for
from infrastructure.repositories import JobRepository, TaskRepository

jobs, tasks = JobRepository(), TaskRepository()
JOB_ID = "f" * 64


def job_record(job_id: str = JOB_ID, **fields) -> JobRecord:
    return JobRecord(**{"job_id": job_id, "job_type": "hello_world", "total_stages": 2,
                        "parameters": {"n": 3}, **fields})


def definitions(job_id: str, stage: int, count: int) -> list[TaskDefinition]:
    return [TaskDefinition(task_id=task_id_for(job_id, stage, i), task_type="hello_world_greeting",
                           stage=stage, task_index=i, parameters={"index": i})
            for i in range(count)]


def seed(database, count: int = 3, job_id: str = JOB_ID) -> None:
    with database.transaction() as conn:
        jobs.insert_job(conn, job_record(job_id))
        tasks.insert_tasks(conn, job_id, "hello_world", definitions(job_id, 1, count))
        tasks.create_stage(conn, job_id, 1, count)


def test_insert_job_is_idempotent(database):
    with database.transaction() as conn:
        assert jobs.insert_job(conn, job_record()) is True
        # A second insert of the same id, even with other content, changes nothing.
        assert jobs.insert_job(conn, job_record(parameters={"n": 99})) is False
        row = jobs.get_job(conn, JOB_ID)
        count = conn.execute("SELECT count(*) AS n FROM app.jobs").fetchone()["n"]
    assert count == 1
    assert row["parameters"] == {"n": 3}
    assert (row["status"], row["stage"], row["total_stages"], row["attempt"]) == (
        "queued", 1, 2, 1)


def test_insert_tasks_stores_a_batch_and_skips_existing_ones(database):
    seed(database, count=0)
    with database.transaction() as conn:
        assert tasks.insert_tasks(conn, JOB_ID, "hello_world", definitions(JOB_ID, 1, 3)) == 3
        # Given the same three again plus two new, only the new two are inserted.
        assert tasks.insert_tasks(conn, JOB_ID, "hello_world", definitions(JOB_ID, 1, 5)) == 2
        assert tasks.insert_tasks(conn, JOB_ID, "hello_world", []) == 0
        stored = tasks.list_tasks(conn, JOB_ID, 1)
    assert [t["task_index"] for t in stored] == [0, 1, 2, 3, 4]
    assert [t["parameters"] for t in stored] == [{"index": i} for i in range(5)]
    assert {t["status"] for t in stored} == {"queued"}


def test_create_stage_only_once(database):
    seed(database, count=3)
    with database.transaction() as conn:
        assert tasks.create_stage(conn, JOB_ID, 1, 99) is False
        stage = tasks.get_stage(conn, JOB_ID, 1)
    assert (stage["task_count"], stage["pending"], stage["failed"]) == (3, 3, 0)


def test_complete_task_records_the_outcome_and_counts_it_off_its_stage(database):
    seed(database, count=3)
    with database.transaction() as conn:
        first = tasks.complete_task(conn, task_id_for(JOB_ID, 1, 0), "completed", {"ok": 1},
                                    None)
        second = tasks.complete_task(conn, task_id_for(JOB_ID, 1, 1), "failed", None, "boom")
        task = tasks.get_task(conn, task_id_for(JOB_ID, 1, 1))
    assert (first["pending"], first["failed"]) == (2, 0)
    assert (second["pending"], second["failed"]) == (1, 1)
    assert (task["status"], task["result_data"], task["error_details"]) == (
        "failed", None, "boom")


def test_completing_a_finished_task_again_counts_nothing(database):
    seed(database, count=3)
    task_id = task_id_for(JOB_ID, 1, 0)
    with database.transaction() as conn:
        assert tasks.complete_task(conn, task_id, "completed", {"v": 1}, None)["pending"] == 2
        # When a duplicate delivery completes it again, even with another outcome,
        assert tasks.complete_task(conn, task_id, "failed", None, "late") is None
        stage = tasks.get_stage(conn, JOB_ID, 1)
        task = tasks.get_task(conn, task_id)
    # Then neither the count nor the first outcome changed.
    assert (stage["pending"], stage["failed"]) == (2, 0)
    assert (task["status"], task["result_data"]) == ("completed", {"v": 1})


def test_claim_task_only_when_queued_or_its_lease_lapsed(database):
    seed(database, count=1)
    task_id = task_id_for(JOB_ID, 1, 0)
    with database.connection() as conn:
        claimed = tasks.claim_task(conn, task_id, attempt=1, lease_seconds=60)
        assert claimed["status"] == "processing" and claimed["lease_expires_at"] is not None
        assert claimed["job_parameters"] == {"n": 3}  # with its job's parameters
        # a redelivery while the lease is live does not claim it again,
        assert tasks.claim_task(conn, task_id, attempt=1, lease_seconds=60) is None
        # a lapsed lease (the worker died) does,
        conn.execute("UPDATE app.tasks SET lease_expires_at = now() - interval '1 s'")
        assert tasks.claim_task(conn, task_id, attempt=1, lease_seconds=60) is not None
        # a message of another attempt never does, nor a finished or unknown task.
        conn.execute("UPDATE app.tasks SET lease_expires_at = now() - interval '1 s'")
        assert tasks.claim_task(conn, task_id, attempt=2, lease_seconds=60) is None
        tasks.complete_task(conn, task_id, "completed", {}, None)
        assert tasks.claim_task(conn, task_id, attempt=1, lease_seconds=60) is None
        assert tasks.claim_task(conn, "no-such-task", attempt=1, lease_seconds=60) is None


def test_end_job_only_once(database):
    seed(database)
    with database.transaction() as conn:
        assert jobs.end_job(conn, JOB_ID, "completed", {"answer": 42}) is True
        assert jobs.end_job(conn, JOB_ID, "failed", None, "too late") is False
        row = jobs.get_job(conn, JOB_ID)
    assert (row["status"], row["result_data"], row["error_details"]) == (
        "completed", {"answer": 42}, None)


def test_close_stage_moves_the_job_on_once(database):
    seed(database)
    with database.transaction() as conn:
        assert jobs.close_stage(conn, JOB_ID, 1, {"tasks": 3}, next_stage=2) is True
        # A second closure of stage 1 finds the job at stage 2 and does nothing.
        assert jobs.close_stage(conn, JOB_ID, 1, {"tasks": 0}, next_stage=2) is False
        row = jobs.get_job(conn, JOB_ID)
    assert row["stage"] == 2 and row["stage_results"] == {"1": {"tasks": 3}}


def test_results_and_failures_are_read_by_stage_and_index(database):
    seed(database, count=3)
    with database.transaction() as conn:
        tasks.complete_task(conn, task_id_for(JOB_ID, 1, 2), "failed", None, "third")
        tasks.complete_task(conn, task_id_for(JOB_ID, 1, 1), "failed", None, "second")
        tasks.complete_task(conn, task_id_for(JOB_ID, 1, 0), "completed", {"r": 0}, None)
        assert tasks.result_of(conn, JOB_ID, 1, 0) == {"r": 0}
        assert tasks.result_of(conn, JOB_ID, 1, 7) is None
        first = tasks.first_failure(conn, JOB_ID, 1)
        counts = jobs.task_counts(conn, JOB_ID)
    assert (first["task_index"], first["error_details"]) == (1, "second")
    assert sorted((c["status"], c["n"]) for c in counts) == [("completed", 1), ("failed", 2)]


def test_deleting_a_job_deletes_its_tasks_and_stages(database):
    seed(database, count=2)
    with database.transaction() as conn:
        conn.execute("DELETE FROM app.jobs WHERE job_id = %s", (JOB_ID,))
        assert tasks.list_tasks(conn, JOB_ID) == []
        assert tasks.get_stage(conn, JOB_ID, 1) is None
