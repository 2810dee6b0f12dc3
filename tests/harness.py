"""Run jobs end to end in the test process: submit, then deliver queue messages to the
CoreMachine (as the Functions host would) until the job ends.

    def test_my_job(engine):
        job = engine.run("my_job", {"path": "x"})
        assert job["status"] == "completed"

`engine` (a fixture in conftest.py) uses the real database and the embedded queue; pass
your own registries to test a job that is not in ALL_JOBS: engine.with_jobs({...}, {...}).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from config import JOBS_QUEUE, TASKS_QUEUE
from core.machine import CoreMachine
from core.submission import submit_job
from infrastructure.queues.embedded import EmbeddedQueue

TERMINAL = ("completed", "failed", "completed_with_errors", "cancelled")


class EngineHarness:
    """batch=True delivers task messages as the batch trigger does (cardinality many)."""

    def __init__(self, machine: CoreMachine, queue: EmbeddedQueue, batch: bool = False):
        self.machine = machine
        self.queue = queue
        self.batch = batch

    def with_jobs(self, jobs: dict[str, Any], handlers: dict[str, Callable]) -> "EngineHarness":
        return EngineHarness(CoreMachine(all_jobs=jobs, all_handlers=handlers), self.queue,
                             self.batch)

    def submit(self, job_type: str, params: Optional[dict] = None) -> dict[str, Any]:
        return submit_job(self.machine, job_type, params or {}).job

    def deliver(self, queue_name: str, batch: int = 50) -> int:
        """Deliver what is visible on one queue, as the queue trigger would (a message that
        can never succeed is recorded and completed); returns how many were handled."""
        messages = self.queue.receive(queue_name, batch)
        if self.batch and queue_name == TASKS_QUEUE and messages:
            try:
                self.machine.handle_task_batch([(m.body, m.message_id) for m in messages])
            except Exception:
                self.queue.abandon_many(messages)
                raise
            self.queue.complete_many(messages)
            return len(messages)
        for position, message in enumerate(messages):
            try:
                self.machine.handle_message(queue_name, message.body, message.message_id)
            except Exception:
                for unhandled in messages[position:]:
                    self.queue.abandon(unhandled)
                raise
            self.queue.complete(message)
        return len(messages)

    def drain(self, timeout: float = 30.0) -> int:
        """Deliver messages until both queues are empty, waiting for scheduled ones (task
        retries) that come due within the timeout; returns how many were handled."""
        deadline = time.monotonic() + timeout
        total = 0
        while time.monotonic() < deadline:
            handled = self.deliver(JOBS_QUEUE) + self.deliver(TASKS_QUEUE)
            total += handled
            if handled:
                continue
            waits = [w for w in (self.queue.seconds_until_next(JOBS_QUEUE),
                                 self.queue.seconds_until_next(TASKS_QUEUE)) if w is not None]
            if not waits or time.monotonic() + min(waits) > deadline:
                return total
            time.sleep(min(max(min(waits), 0.005), 0.5))
        raise TimeoutError(f"queues still busy after {timeout} s")

    def status(self, job_id: str) -> dict[str, Any]:
        return self.machine.state_manager.job_status(job_id)

    def run(self, job_type: str, params: Optional[dict] = None,
            timeout: float = 30.0) -> dict[str, Any]:
        """Submit a job and deliver messages until it ends; returns its final status."""
        job = self.submit(job_type, params)
        self.drain(timeout)
        final = self.status(job["job_id"])
        if final["status"] not in TERMINAL:
            raise AssertionError(f"job did not end: {final['status']} at stage {final['stage']}")
        return final
