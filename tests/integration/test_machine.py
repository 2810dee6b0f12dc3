"""CoreMachine end to end: submit, deliver queue messages as the Functions host would, and
check what every stage kind, failure and duplicate delivery does to the job."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import datetime, timezone
from concurrent.futures import ThreadPoolExecutor

import pytest

from config import JOBS_QUEUE, TASKS_QUEUE
from core.machine import CoreMachine
from core.models import JobQueueMessage, TaskQueueMessage
from core.orchestration_manager import task_id_for
from core.submission import submit_job
from exceptions import QueueError
from infrastructure.queues import OutgoingMessage, QueueSender, get_queue, set_queue
from infrastructure.repositories import TaskRepository
from jobs import ALL_JOBS
from services import ALL_HANDLERS
from tests.harness import EngineHarness
from tests.integration.sample_jobs import ITEMS_HANDLERS, SAMPLE_JOBS, ItemsJob

COUNT_KEYS = ("total", "queued", "processing", "completed", "failed")


def sample_engine(engine, **handlers) -> EngineHarness:
    return engine.with_jobs(SAMPLE_JOBS, {**ITEMS_HANDLERS, **handlers})


def messages_on(database, queue_name: str) -> int:
    with database.connection() as conn:
        return conn.execute("SELECT count(*) AS n FROM app.queue_messages"
                            " WHERE queue_name = %s", (queue_name,)).fetchone()["n"]


def stored_tasks(database, job_id: str, stage: int) -> list[dict]:
    with database.connection() as conn:
        return TaskRepository().list_tasks(conn, job_id, stage)


class FlakyQueue(QueueSender):
    """The real queue, except that the next `failures` sends to one queue fail, as a
    Service Bus outage would."""

    def __init__(self, inner: QueueSender, fail_on: str, failures: int = 1):
        self.inner, self.fail_on, self.failures = inner, fail_on, failures

    def send(self, queue_name, messages):
        if queue_name == self.fail_on and self.failures > 0:
            self.failures -= 1
            raise QueueError(f"{queue_name}: service unavailable")
        self.inner.send(queue_name, messages)


@pytest.mark.parametrize("count", [1, 12])
def test_single_fan_out_and_fan_in_stages_pass_results_along(engine, count):
    job = sample_engine(engine).run("items", {"count": count})
    assert job["status"] == "completed", job["error_details"]
    result = job["result_data"]
    items = [f"item-{i}" for i in range(count)]
    assert result["items"] == items
    assert result["processed"] == [item.upper() for item in items]
    # The fan-in task got every stage 2 result, in task order, and its own parameters.
    collected = result["collected"]
    assert collected["processed"] == result["processed"]
    assert collected["task_indexes"] == list(range(count))
    assert collected["task_ids"] == [task_id_for(job["job_id"], 2, i) for i in range(count)]
    assert collected["statuses"] == ["completed"]
    assert collected["params"] == {"fan_in_source_stage": 2}
    # finalize_job saw every task of every stage, and each stage's summary.
    assert len(result["task_ids"]) == 1 + count + 1
    assert result["stage_results"] == ["1", "2", "3"]
    assert [(s["name"], s["total"], s["completed"]) for s in job["stages"]] == [
        ("list", 1, 1), ("process", count, count), ("collect", 1, 1)]
    assert [s["state"] for s in job["stages"]] == ["done"] * 3
    assert (job["stage"], job["stage_results"]["2"]["tasks"]) == (3, count)


def test_fan_in_receives_results_in_task_order_whatever_order_they_finished(engine, queue):
    eng = sample_engine(engine)
    job_id = eng.submit("items", {"count": 12})["job_id"]
    eng.deliver(JOBS_QUEUE), eng.deliver(TASKS_QUEUE), eng.deliver(JOBS_QUEUE)
    # Given stage 2's twelve tasks finishing last-first,
    for message in reversed(queue.receive(TASKS_QUEUE, 50)):
        eng.machine.process_task_message(message.body)
        queue.complete(message)
    eng.drain()
    collected = eng.status(job_id)["result_data"]["collected"]
    assert collected["task_indexes"] == list(range(12))
    assert collected["processed"] == [f"ITEM-{i}" for i in range(12)]


def test_an_empty_fan_out_closes_at_once_and_the_job_goes_on(engine):
    job = sample_engine(engine).run("items", {"count": 0})
    assert job["status"] == "completed", job["error_details"]
    assert [s["total"] for s in job["stages"]] == [1, 0, 1]
    assert (job["stage_results"]["2"]["tasks"], job["result_data"]["collected"]["processed"]) == (
        0, [])


def test_an_empty_last_stage_finalizes_the_job(engine):
    job = sample_engine(engine).run("list_then_process", {"count": 0})
    assert job["status"] == "completed", job["error_details"]
    assert (job["result_data"]["processed"], job["result_data"]["collected"]) == ([], None)
    assert sorted(job["stage_results"]) == ["1", "2"]


def test_hello_world_makes_n_greetings_and_n_replies(engine):
    job = engine.run("hello_world", {"n": 5})
    assert job["status"] == "completed", job["error_details"]
    assert [(s["total"], s["completed"]) for s in job["stages"]] == [(5, 5), (5, 5)]
    result = job["result_data"]
    assert len(result["greetings"]) == 5 and len(result["replies"]) == 5
    assert result["replies"] == [f"Replying to: {g}" for g in result["greetings"]]
    assert result["tasks_total"] == 10


@pytest.mark.parametrize("mode", ["single", "batch"])
def test_a_lineage_stage_gets_its_predecessors_result(database, engine, batch_engine, mode):
    # Given a reply handler that returns what the engine handed it,
    def reply(params, context):
        return {"reply": "r", "predecessor": context.get("predecessor_result")}

    runner = {"single": engine, "batch": batch_engine}[mode]
    job = runner.with_jobs(ALL_JOBS, {**ALL_HANDLERS, "hello_world_reply": reply}).run(
        "hello_world", {"n": 4})
    assert job["status"] == "completed", job["error_details"]
    # Then each reply i received greeting i's whole result (match_previous with lineage).
    greetings = stored_tasks(database, job["job_id"], 1)
    replies = stored_tasks(database, job["job_id"], 2)
    assert [r["result_data"]["predecessor"] for r in replies] == [
        g["result_data"] for g in greetings]
    assert [r["parameters"]["index"] for r in replies] == [0, 1, 2, 3]


def test_a_stage_without_lineage_or_fan_in_gets_no_previous_results(database, engine):
    def process(params, context):
        return {"processed": params["item"], "context": sorted(context)}

    job = sample_engine(engine, process_item=process).run("items", {"count": 2})
    assert job["status"] == "completed", job["error_details"]
    assert [t["result_data"]["context"] for t in stored_tasks(database, job["job_id"], 2)] == [
        ["cancelled", "deadline", "job_id", "job_parameters", "job_type", "retry", "stage",
         "task_id", "task_index", "time_left"]] * 2


def test_failing_tasks_fail_the_job_naming_the_stage_and_a_task(engine):
    job = engine.run("hello_world", {"n": 3, "failure_rate": 1.0})
    assert job["status"] == "failed" and job["result_data"] is None
    error = job["error_details"]
    # The first task to exhaust its retries failed the job at once, named in its cause.
    first = [f"Task {task_id_for(job['job_id'], 1, i)} (stage 1 'greeting', task {i}) failed "
             f"after 3 retries: RuntimeError: greeting {i} failed on purpose" for i in range(3)]
    assert any(error.startswith(f) for f in first), error
    assert [(s["total"], s["completed"], s["queued"], s["processing"])
            for s in job["stages"]] == [(3, 0, 0, 0), (0, 0, 0, 0)]


def test_a_handler_returning_a_non_dict_fails_its_task_and_the_job(database, engine):
    job = sample_engine(engine, process_item=lambda p, c: ["not", "a", "dict"]).run(
        "items", {"count": 2})
    assert job["status"] == "failed"
    why = "ContractViolationError: handler for 'process_item' returned list; handlers must " \
          "return a dict"
    # A programming error is never retried: the first such task fails the job at once.
    assert job["error_details"].endswith(f"(stage 2 'process', task 0) failed: {why}") or \
        job["error_details"].endswith(f"(stage 2 'process', task 1) failed: {why}")
    assert {t["error_details"] for t in stored_tasks(database, job["job_id"], 2)} <= {why, None}
    assert all(t["retry_count"] == 0 for t in stored_tasks(database, job["job_id"], 2))


def test_create_tasks_for_stage_raising_fails_the_job_with_the_cause(engine):
    job = sample_engine(engine).run("bad_stage_two", {"count": 2})
    assert job["status"] == "failed"
    assert job["error_details"] == ("Stage 2: BadStageTwoJob.create_tasks_for_stage failed: "
                                    "ValueError: cannot read the item list")
    assert [s["total"] for s in job["stages"]] == [1, 0, 0]


def test_task_parameters_json_cannot_hold_fail_the_job_at_once(database, engine):
    # Given a job whose stage 2 tasks carry NaN (jsonb cannot store it) and a datetime,
    class NanParamsJob(ItemsJob):
        job_type = "nan_params"

        @staticmethod
        def create_tasks_for_stage(stage, job_params, job_id, previous_results=None):
            if stage == 1:
                return [{"parameters": {"at": datetime(2026, 1, 2, tzinfo=timezone.utc)}}]
            return [{"parameters": {"weight": float("nan")}}]

    job = engine.with_jobs({"nan_params": NanParamsJob}, ITEMS_HANDLERS).run(
        "nan_params", {"count": 1})
    # Then the datetime was stored as text, and the NaN failed the job at once, named
    # (not a job message failing until the queue dead-letters it, the job left running).
    [task] = stored_tasks(database, job["job_id"], 1)
    assert task["parameters"] == {"at": "2026-01-02 00:00:00+00:00"}
    assert job["status"] == "failed"
    assert job["error_details"].startswith(
        "Stage 2: NanParamsJob.create_tasks_for_stage(2) item 0 returned a value JSON "
        "cannot hold"), job["error_details"]


def test_a_task_type_without_a_handler_fails_the_job(engine):
    job = sample_engine(engine).run("unknown_task_type", {})
    assert job["status"] == "failed"
    assert "created tasks of type(s) ['no_such_handler'] with no handler" in job["error_details"]


def test_finalize_job_raising_completes_the_job_with_errors(engine):
    job = sample_engine(engine).run("bad_finalize", {"count": 3})
    assert job["status"] == "completed_with_errors"
    error = "finalize_job failed: RuntimeError: cannot summarise"
    assert job["error_details"] == error
    assert job["result_data"] == {"finalize_error": error, "tasks_total": 5,
                                  "tasks_completed": 5}


def test_messages_for_a_finished_job_change_nothing(engine):
    eng = sample_engine(engine)
    job_id = eng.run("items", {"count": 2})["job_id"]
    before = eng.status(job_id)
    task = TaskQueueMessage(job_id=job_id, stage=2, task_id=task_id_for(job_id, 2, 0))
    assert eng.machine.process_task_message(task.to_json()) == "job already completed"
    for stage in (1, 3):
        outcome = eng.machine.process_job_message(JobQueueMessage(job_id=job_id,
                                                                  stage=stage).to_json())
        assert outcome == "job already completed"
    get_queue().send(TASKS_QUEUE, [OutgoingMessage(body=task.to_json())])
    assert eng.drain() == 1
    assert eng.status(job_id) == before
    unknown = TaskQueueMessage(job_id=job_id, stage=2, task_id=task_id_for(job_id, 2, 9))
    assert eng.machine.handle_message(TASKS_QUEUE, unknown.to_json().encode(), "m-1") == (
        "dead-lettered")
    assert eng.machine.state_manager.dead_letter_count() == 1


def test_every_message_delivered_twice_is_counted_once(engine, queue):
    calls = Counter()

    def process(params, context):
        calls[params["item"]] += 1
        return {"processed": params["item"].upper()}

    eng = sample_engine(engine, process_item=process)
    job_id = eng.submit("items", {"count": 4})["job_id"]
    outcomes = {JOBS_QUEUE: [], TASKS_QUEUE: []}
    # When every message is processed twice in a row (a redelivery after a lost lock),
    while batch := queue.receive(JOBS_QUEUE, 50) + queue.receive(TASKS_QUEUE, 50):
        for message in batch:
            process_message = (eng.machine.process_job_message
                               if message.queue_name == JOBS_QUEUE
                               else eng.machine.process_task_message)
            outcomes[message.queue_name].append(
                (process_message(message.body), process_message(message.body)))
            queue.complete(message)
    # Then each stage was opened once and each task ran and counted once.
    assert outcomes[JOBS_QUEUE] == [("opened", "stage already opened")] * 3
    # (the very last repeat finds the job itself completed)
    assert outcomes[TASKS_QUEUE] == [("completed", "task already completed")] * 5 + [
        ("completed", "job already completed")]
    assert calls == {f"item-{i}": 1 for i in range(4)}
    job = eng.status(job_id)
    assert job["status"] == "completed"
    assert [job["stage_results"][s]["completed"] for s in "123"] == [1, 4, 1]


def test_concurrent_duplicate_deliveries_advance_the_job_once(database, engine, queue):
    eng = sample_engine(engine)
    job_id = eng.submit("items", {"count": 20})["job_id"]
    eng.deliver(JOBS_QUEUE), eng.deliver(TASKS_QUEUE), eng.deliver(JOBS_QUEUE)
    # Given stage 2's 20 task messages, each processed by two consumers at once,
    received = queue.receive(TASKS_QUEUE, 50)
    bodies = [m.body for m in received for _ in range(2)]
    random.Random(3).shuffle(bodies)
    barrier = threading.Barrier(8)

    def work(chunk):
        barrier.wait()
        return [eng.machine.process_task_message(body) for body in chunk]

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, [bodies[i::8] for i in range(8)]))
    for message in received:
        queue.complete(message)
    # Then stage 3 was queued exactly once, and the job ends with each result counted once.
    assert messages_on(database, JOBS_QUEUE) == 1
    eng.drain()
    job = eng.status(job_id)
    assert job["status"] == "completed"
    assert (job["stage_results"]["2"]["completed"], job["stage_results"]["2"]["failed"]) == (20, 0)
    assert len(job["result_data"]["collected"]["processed"]) == 20


def test_task_ids_differ_between_jobs_whose_ids_share_a_long_prefix(database):
    from core.models import JobRecord, TaskDefinition
    from infrastructure.repositories import JobRepository

    prefix = "0123456789abcdef" * 3 + "0123456789ab"
    job_a, job_b = prefix + "aaaa", prefix + "bbbb"
    assert len(job_a) == 64 and job_a[:60] == job_b[:60]
    with database.transaction() as conn:
        for job_id in (job_a, job_b):
            JobRepository().insert_job(conn, JobRecord(job_id=job_id, job_type="items",
                                                       total_stages=3))
            inserted = TaskRepository().insert_tasks(conn, job_id, "items", [
                TaskDefinition(task_id=task_id_for(job_id, 2, i), task_type="process_item",
                               stage=2, task_index=i) for i in (0, 1, 10_000)])
            assert inserted == 3
    ids = {t["task_id"]: t["parent_job_id"] for j in (job_a, job_b)
           for t in stored_tasks(database, j, 2)}
    assert len(ids) == 6 and all(len(t) <= 128 for t in ids)
    assert all(task_id.startswith(parent) for task_id, parent in ids.items())


def test_the_status_view_counts_tasks_per_stage(engine):
    eng = sample_engine(engine)
    job_id = eng.submit("items", {"count": 3})["job_id"]
    view = eng.status(job_id)
    assert (view["status"], view["stage"], view["total_stages"]) == ("queued", 1, 3)
    assert [s["name"] for s in view["stages"]] == ["list", "process", "collect"]
    for stage in view["stages"]:
        assert all(type(stage[k]) is int and stage[k] == 0 for k in COUNT_KEYS)
    eng.deliver(JOBS_QUEUE)
    view = eng.status(job_id)
    assert view["status"] == "processing"
    assert {k: view["stages"][0][k] for k in COUNT_KEYS} == {
        "total": 1, "queued": 1, "processing": 0, "completed": 0, "failed": 0}
    eng.drain()
    view = eng.status(job_id)
    assert [[s[k] for k in COUNT_KEYS] for s in view["stages"]] == [
        [1, 0, 0, 1, 0], [3, 0, 0, 3, 0], [1, 0, 0, 1, 0]]
    assert eng.status("0" * 64) is None


def test_submitting_the_same_parameters_again_finds_the_same_job(database, engine):
    first = submit_job(engine.machine, "hello_world", {"n": 2})
    again = submit_job(engine.machine, "hello_world", {"n": 2, "failure_rate": 0.5})
    assert (first.created, again.created) == (True, False)
    assert again.job["job_id"] == first.job["job_id"]
    assert messages_on(database, JOBS_QUEUE) == 1
    assert submit_job(engine.machine, "hello_world", {"n": 3}).created is True


def test_concurrent_identical_submits_make_one_job_and_one_message(database, engine):
    threads = 8
    barrier = threading.Barrier(threads)

    def submit(_):
        barrier.wait()
        return submit_job(engine.machine, "hello_world", {"n": 2, "message": "race"})

    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(submit, range(threads)))
    assert sum(o.created for o in outcomes) == 1
    assert len({o.job["job_id"] for o in outcomes}) == 1
    with database.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM app.jobs").fetchone()["n"] == 1
    assert messages_on(database, JOBS_QUEUE) == 1


def test_a_failed_send_of_a_stages_tasks_is_retried_by_redelivery(engine):
    flaky = FlakyQueue(engine.queue, fail_on=TASKS_QUEUE)
    eng = EngineHarness(CoreMachine(SAMPLE_JOBS, ITEMS_HANDLERS, queue=flaky), engine.queue)
    job_id = eng.submit("items", {"count": 2})["job_id"]
    with pytest.raises(QueueError):
        eng.drain()
    # The abandoned job message comes back and sends the stage's tasks that are not sent.
    eng.drain()
    assert eng.status(job_id)["status"] == "completed"


def test_a_failed_send_of_the_next_stage_message_is_retried_by_redelivery(engine):
    flaky = FlakyQueue(engine.queue, fail_on=JOBS_QUEUE)
    eng = EngineHarness(CoreMachine(SAMPLE_JOBS, ITEMS_HANDLERS, queue=flaky), engine.queue)
    job_id = eng.submit("items", {"count": 2})["job_id"]
    with pytest.raises(QueueError):
        eng.drain()
    eng.drain()
    assert eng.status(job_id)["status"] == "completed"


def test_resubmitting_after_a_failed_first_send_starts_the_job(engine):
    set_queue(FlakyQueue(engine.queue, fail_on=JOBS_QUEUE))
    with pytest.raises(QueueError):
        submit_job(engine.machine, "hello_world", {"n": 2})
    set_queue(engine.queue)
    again = submit_job(engine.machine, "hello_world", {"n": 2})
    engine.drain()
    assert engine.status(again.job["job_id"])["status"] == "completed"
