"""Opening one large stage (100,000 tasks by default), in this process, on the bench's
database with the embedded queue: how long the job message takes, how many transactions
it commits, and how long the longest of them holds its locks (each store_stage and
open_next_chunk call is one transaction). The builder runs before any of them."""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from .server import BenchServer


def _noop(params: dict, context: dict) -> dict:
    return {}


def _job_class() -> type:
    from jobs.base import JobBase
    from jobs.mixins import JobBaseMixin

    class LargeStageJob(JobBaseMixin, JobBase):
        job_type = "bench_large_stage"
        description = "One stage of `tasks` tasks"
        stages = [{"number": 1, "name": "fan", "task_type": "bench_noop",
                   "parallelism": "dynamic"}]
        parameters_schema = {"tasks": {"type": "int", "min": 1, "max": 1_000_000}}

        @staticmethod
        def create_tasks_for_stage(stage, job_params, job_id, previous_results=None):
            return [{"parameters": {"i": i}} for i in range(job_params["tasks"])]

        @staticmethod
        def finalize_job(context):
            return {}

    return LargeStageJob


def _timed(owner: Any, name: str, spans: list[float]) -> Callable[[], None]:
    real = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            spans.append(time.perf_counter() - start)

    setattr(owner, name, timed)
    return lambda: setattr(owner, name, real)


def large_stage_run(server: BenchServer, *, tasks: int, chunk_size: int) -> dict[str, Any]:
    from config import JOBS_QUEUE, reset_settings
    from core.machine import CoreMachine
    from core.state_manager import StateManager
    from core.submission import submit_job
    from infrastructure.db import Database, set_database
    from infrastructure.queues import set_queue
    from infrastructure.queues.embedded import EmbeddedQueue

    server.truncate()
    saved = {k: os.environ.get(k) for k in ("DATABASE_URL", "QUEUE_BACKEND",
                                            "STAGE_CHUNK_SIZE")}
    os.environ.update({"DATABASE_URL": server.url, "QUEUE_BACKEND": "embedded",
                       "STAGE_CHUNK_SIZE": str(chunk_size)})
    reset_settings()
    database = Database(server.url, min_size=1, max_size=4).open()
    set_database(database)
    queue = EmbeddedQueue(database)
    set_queue(queue)
    transactions: list[float] = []
    undo = [_timed(StateManager, "store_stage", transactions),
            _timed(StateManager, "open_next_chunk", transactions)]
    try:
        machine = CoreMachine(all_jobs={"bench_large_stage": _job_class()},
                              all_handlers={"bench_noop": _noop})
        submit_job(machine, "bench_large_stage", {"tasks": tasks})
        message = queue.receive(JOBS_QUEUE, 1)[0]
        start = time.perf_counter()
        machine.handle_message(JOBS_QUEUE, message.body, message.message_id)
        seconds = time.perf_counter() - start
        queue.complete(message)
        with database.connection() as conn:
            inserted = conn.execute("SELECT count(*) AS n FROM app.tasks").fetchone()["n"]
            queued = conn.execute("SELECT count(*) AS n FROM app.queue_messages"
                                  " WHERE queue_name = 'geospatial-tasks'").fetchone()["n"]
    finally:
        for restore in undo:
            restore()
        set_queue(None)
        set_database(None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_settings()
    # the last open_next_chunk call finds nothing left: not a chunk
    chunks = transactions[:-1] if len(transactions) > 1 else transactions
    return {"tasks": tasks, "chunk_size": chunk_size, "open_seconds": seconds,
            "transactions": len(chunks), "longest_transaction_seconds": max(chunks),
            "tasks_inserted": inserted, "task_messages_queued": queued,
            "tasks_per_second": tasks / seconds if seconds else None}
