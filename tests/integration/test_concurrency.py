"""Concurrent handlers: a batch's handlers run at once (TASK_BATCH_CONCURRENCY), a stage's
max_concurrency caps its tasks in one process in both trigger modes, and every handler's
context carries its deadline."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest

from config import TASKS_QUEUE, reset_settings
from jobs.base import JobBase
from jobs.mixins import JobBaseMixin


class Gauge:
    """Counts the handlers running at once, and the most seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.peak = self.calls = 0

    def __enter__(self):
        with self.lock:
            self.now += 1
            self.calls += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc):
        with self.lock:
            self.now -= 1


def work_job(cap=None, timeout=None, name="work"):
    stage = {"number": 1, "name": "work", "task_type": "work", "parallelism": "dynamic"}
    if cap is not None:
        stage["max_concurrency"] = cap
    if timeout is not None:
        stage["timeout_seconds"] = timeout

    class WorkJob(JobBaseMixin, JobBase):
        job_type = name
        description = "count tasks that each run the work handler"
        stages = [stage]
        parameters_schema = {"count": {"type": "int", "default": 4, "max": 500},
                             "sleep": {"type": "float", "default": 0.05}}

        @staticmethod
        def create_tasks_for_stage(stage, job_params, job_id, previous_results=None):
            return [{"parameters": {"index": i, "sleep": job_params["sleep"]}}
                    for i in range(job_params["count"])]

        @staticmethod
        def finalize_job(context):
            return {"done": sorted(t.result_data["index"] for t in context.task_results)}

    return WorkJob


def sleeper(gauge, seen=None):
    def work(params, context):
        with gauge:
            if seen is not None:
                seen.append((params["index"], time.monotonic(), context))
            time.sleep(params["sleep"])
        return {"index": params["index"]}
    return work


def open_stage(eng, count, sleep=0.05, job_type="work"):
    job = eng.submit(job_type, {"count": count, "sleep": sleep})
    eng.deliver("geospatial-jobs")
    return job


def test_a_batchs_handlers_run_at_once_up_to_the_setting(batch_engine, monkeypatch):
    # Given TASK_BATCH_CONCURRENCY 16 and a batch of 64 tasks that each wait 50 ms,
    monkeypatch.setenv("TASK_BATCH_CONCURRENCY", "16")
    reset_settings()
    gauge = Gauge()
    eng = batch_engine.with_jobs({"work": work_job()}, {"work": sleeper(gauge)})
    job = open_stage(eng, 64)
    messages = eng.queue.receive(TASKS_QUEUE, 64)
    assert len(messages) == 64
    # when the batch runs,
    outcomes = eng.machine.handle_task_batch([(m.body, m.message_id) for m in messages])
    # then 16 handlers ran at once, never more, every task ran once and was recorded,
    assert gauge.peak == 16
    assert gauge.calls == 64
    assert outcomes == ["completed"] * 64
    eng.queue.complete_many(messages)
    eng.drain()
    final = eng.status(job["job_id"])
    assert final["status"] == "completed"
    assert final["result_data"]["done"] == list(range(64))


def test_a_stage_cap_holds_in_a_batch(batch_engine, monkeypatch):
    monkeypatch.setenv("TASK_BATCH_CONCURRENCY", "16")
    reset_settings()
    gauge = Gauge()
    eng = batch_engine.with_jobs({"capped": work_job(cap=3, name="capped")},
                                 {"work": sleeper(gauge)})
    job = eng.run("capped", {"count": 24, "sleep": 0.05})
    assert job["status"] == "completed"
    assert gauge.peak == 3
    assert gauge.calls == 24


def run_concurrently(eng, count, batch):
    """Deliver `count` task messages from many threads at once, as a host with
    maxConcurrentCalls does: one message per thread, or two batches side by side."""
    messages = eng.queue.receive(TASKS_QUEUE, count)
    assert len(messages) == count
    if batch:
        groups = [messages[: count // 2], messages[count // 2:]]
        calls = [lambda g=g: eng.machine.handle_task_batch([(m.body, m.message_id) for m in g])
                 for g in groups]
    else:
        calls = [lambda m=m: [eng.machine.handle_message(TASKS_QUEUE, m.body, m.message_id)]
                 for m in messages]
    outcomes, threads = [], []
    for call in calls:
        thread = threading.Thread(target=lambda c=call: outcomes.extend(c()))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(30)
    eng.queue.complete_many(messages)
    return outcomes


@pytest.mark.parametrize("batch", [False, True], ids=["single messages", "two batches"])
def test_a_stage_cap_holds_across_concurrent_invocations(engine, batch, monkeypatch):
    # Given a stage capped at 2 and 12 of its messages delivered at once (12 concurrent
    # single-message invocations, or two batches side by side, in one process),
    monkeypatch.setenv("TASK_BATCH_CONCURRENCY", "16")
    reset_settings()
    gauge = Gauge()
    eng = engine.with_jobs({"capped": work_job(cap=2, name="capped")}, {"work": sleeper(gauge)})
    job = open_stage(eng, 12, job_type="capped")
    # when they run,
    outcomes = run_concurrently(eng, 12, batch)
    # then at most 2 handlers of the stage ran at once, and exactly 2 at the peak,
    assert gauge.peak == 2
    assert sorted(outcomes) == ["completed"] * 12
    eng.drain()
    assert eng.status(job["job_id"])["status"] == "completed"


@pytest.mark.parametrize("batch", [False, True], ids=["single message", "batch"])
def test_a_handler_knows_its_deadline(engine, batch, monkeypatch):
    monkeypatch.setenv("FUNCTION_TIMEOUT_SECONDS", "100")
    monkeypatch.setenv("INVOCATION_RESERVE_SECONDS", "10")
    reset_settings()
    seen = []
    from tests.harness import EngineHarness
    eng = EngineHarness(engine.with_jobs({"timed": work_job(timeout=20, name="timed")},
                                         {"work": sleeper(Gauge(), seen)}).machine,
                        engine.queue, batch=batch)
    job = eng.run("timed", {"count": 3, "sleep": 0.0})
    assert job["status"] == "completed"
    assert len(seen) == 3
    for _, started, context in seen:
        # The stage's 20 s timeout ends before the invocation's 90 s budget does.
        left = (context["deadline"] - datetime.now(timezone.utc)).total_seconds()
        assert 15 < left <= 20
        assert 15 < context["time_left"]() <= 20
