"""Running a batch of task messages (the task trigger's cardinality "many").

One statement claims the batch, with the lineage inputs of the tasks that read them;
handlers run one after another in a helper thread while this one renews the batch's leases
and enforces each task's timeout; then one transaction records every outcome, counts them off their stages,
schedules retries, fails jobs and closes stages. Each task keeps its own fate: a failing
task fails (or retries) alone, never its batch-mates.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from config import TASKS_QUEUE, get_settings
from core.error_handler import classify
from core.log_context import log_context
from core.models import TaskQueueMessage, TaskStatus
from core.task_runner import base_context, retry_delay, storable_json
from exceptions import ContractViolationError, MessageFormatError, TaskTimeoutError
from infrastructure.batch_repository import BatchRepository
from infrastructure.db import get_database

logger = logging.getLogger(__name__)


@dataclass
class _Run:
    """A claimed task and what running it produced."""

    task: dict[str, Any]
    definition: dict[str, Any]
    attempt: int
    result: Optional[dict] = None
    error: Optional[BaseException] = None
    done: bool = False
    started: float = 0.0
    extra: dict = field(default_factory=dict)


class TaskBatchProcessor:
    def __init__(self, machine: Any):
        self.machine = machine
        self.state = machine.state_manager
        self.repo = BatchRepository()

    def process(self, messages: list[tuple[bytes, Optional[str]]]) -> list[str]:
        """Outcomes in message order: "completed", "failed", "retrying", "dead-lettered",
        or why a message was ignored."""
        settings = get_settings()
        outcomes: list[str] = [""] * len(messages)
        parsed: dict[str, tuple[int, TaskQueueMessage]] = {}
        for index, (body, message_id) in enumerate(messages):
            try:
                message = TaskQueueMessage.parse(body)
            except MessageFormatError as exc:
                self.state.record_dead_letter(TASKS_QUEUE, message_id, body, str(exc))
                outcomes[index] = "dead-lettered"
                continue
            if message.task_id in parsed:
                outcomes[index] = "duplicate in batch"
                continue
            parsed[message.task_id] = (index, message)
        if not parsed:
            return outcomes
        ids = list(parsed)
        with get_database().connection() as conn:
            claimed = self.repo.claim(conn, ids, [parsed[i][1].attempt for i in ids],
                                      settings.task_lease_seconds, self.state.lineage_stages)
            claimed_ids = {t["task_id"] for t in claimed}
            unclaimed = [i for i in ids if i not in claimed_ids]
            why = self.repo.why_unclaimed(conn, unclaimed) if unclaimed else {}
        for task_id in unclaimed:
            outcomes[parsed[task_id][0]] = self._explain(parsed[task_id], why[task_id], messages)
        runs = [_Run(t, self.machine._stage_definition(t), parsed[t["task_id"]][1].attempt)
                for t in claimed]
        self._run_handlers(runs, settings)
        for run in runs:
            outcomes[parsed[run.task["task_id"]][0]] = self._record_outcome_label(run, settings)
        self._record(runs, settings)
        return outcomes

    def _explain(self, entry: tuple[int, TaskQueueMessage], row: dict[str, Any],
                 messages: list) -> str:
        index, message = entry
        if row["status"] is None:
            # Not there: from another attempt of its job (stale), or never was (poison).
            job = self.state.get_job(message.job_id)
            if job is not None and job["attempt"] != message.attempt:
                return "stale attempt"
            self.state.record_dead_letter(TASKS_QUEUE, messages[index][1], messages[index][0],
                                          f"task message for unknown task {message.task_id}")
            return "dead-lettered"
        if row["attempt"] != message.attempt:
            return "stale attempt"
        if row["job_status"] not in ("queued", "processing"):
            if row["status"] in ("queued", "processing"):
                with get_database().connection() as conn:
                    self.state.tasks.cancel_queued(conn, row["parent_job_id"])
                    self.state.tasks.cancel_orphans(conn, row["parent_job_id"])
            return f"job already {row['job_status']}"
        if row["status"] in ("completed", "failed", "cancelled"):
            self.machine.resume(row["parent_job_id"])
            return f"task already {row['status']}"
        return "task running elsewhere"

    # -- running ------------------------------------------------------------------------
    def _contexts(self, runs: list[_Run]) -> None:
        for run in runs:
            task = run.task
            run.extra = base_context(task)
            if run.definition.get("uses_lineage"):  # read by the claim
                run.extra["predecessor_result"] = task["predecessor_result"]
            if run.definition.get("parallelism") == "fan_in":
                run.extra.update(self.state.handler_context_data(task, False, True))

    def _run_handlers(self, runs: list[_Run], settings: Any) -> None:
        if not runs:
            return
        self._contexts(runs)
        pending = list(runs)
        renew_every = settings.task_lease_seconds / 3
        next_renewal = time.monotonic() + renew_every
        while pending:
            worker = _Worker(self.machine.handlers_registry, pending)
            worker.start()
            while worker.is_alive():
                current = worker.current
                timeout = (current.definition.get("timeout_seconds",
                                                  settings.task_timeout_seconds)
                           if current else settings.task_timeout_seconds)
                deadline = (current.started + timeout) if current else time.monotonic() + 1
                worker.join(max(min(next_renewal, deadline) - time.monotonic(), 0.0))
                now = time.monotonic()
                if worker.is_alive() and current is not None and current is worker.current \
                        and now >= deadline:
                    # Python cannot stop the handler: leave its thread, run the rest anew.
                    worker.abandoned = True
                    current.extra["cancelled"].set()
                    current.error = TaskTimeoutError(
                        f"handler for '{current.task['task_type']}' ran longer than its "
                        f"{timeout:g} s timeout")
                    current.done = True
                    break
                if now >= next_renewal:
                    with get_database().connection() as conn:
                        live = [r for r in pending if not r.done]
                        wanted = self.repo.renew_leases(
                            conn, [r.task["task_id"] for r in live],
                            [r.attempt for r in live], settings.task_lease_seconds)
                    for run in live:  # its job ended meanwhile: ask its handler to stop
                        if run.task["task_id"] not in wanted:
                            run.extra["cancelled"].set()
                    next_renewal = now + renew_every
            pending = [r for r in pending if not r.done]

    def _record_outcome_label(self, run: _Run, settings: Any) -> str:
        if run.error is None:
            return TaskStatus.COMPLETED.value
        info = classify(run.error)
        if info.retryable and run.task["retry_count"] < settings.task_max_retries:
            return "retrying"
        return TaskStatus.FAILED.value

    # -- recording ----------------------------------------------------------------------
    def _record(self, runs: list[_Run], settings: Any) -> None:
        if not runs:
            return
        finished, retries, failures = [], [], []
        for run in runs:
            label = self._record_outcome_label(run, settings)
            if label == "retrying":
                retries.append(run)
            elif label == TaskStatus.FAILED.value:
                failures.append(run)
            if label != "retrying":
                finished.append(run)
        closures = []
        with get_database().transaction() as conn:
            rows, recorded = self.repo.record(
                conn, [r.task["task_id"] for r in finished], [r.attempt for r in finished],
                ["completed" if r.error is None else "failed" for r in finished],
                [r.result if r.error is None else classify(r.error).as_result()
                 for r in finished],
                [None if r.error is None else classify(r.error).message for r in finished],
            )
            for run in retries:
                info = classify(run.error)
                delay = retry_delay(run.task["retry_count"], settings.task_retry_base_seconds,
                                    settings.task_retry_cap_seconds)
                self.state.retry_task_in(conn, run.task, run.attempt, info.as_result(),
                                         info.message, delay)
            # Only failures recorded now fail their job, and name it (not a repeat, nor a
            # worker of an attempt the job has left behind).
            first_failure = {}
            for run in sorted(failures, key=lambda r: r.task["task_id"]):
                if run.task["task_id"] in recorded:
                    first_failure.setdefault(run.task["parent_job_id"], run)
            closing = {}
            for row in rows:
                if row["pending"] == 0:
                    closing.setdefault(row["job_id"], []).append(row)
            for job_id in sorted(set(first_failure) | set(closing)):
                if job_id in first_failure:
                    closures.append(self.state._fail_job(
                        conn, job_id, self.machine.job_error(first_failure[job_id].task,
                                                             first_failure[job_id].error)))
                for row in closing.get(job_id, []):
                    job = self.state.jobs.get_job(conn, job_id, for_update=True)
                    closures.append(self.state._close_stage(conn, job, row))
        for run in failures:
            with log_context(job_id=run.task["parent_job_id"], task_id=run.task["task_id"],
                             stage=run.task["stage"]):
                info = classify(run.error)
                logger.error("task failed (%s): %s", info.error_category, info.message,
                             exc_info=isinstance(run.error, ContractViolationError))
        if self.machine.outbox.deferred:
            for job_id in {r.task["parent_job_id"] for r in retries}:
                self.machine.outbox.flush(job_id)  # the scheduled retry messages
        for closure in closures:
            self.machine._after_close(closure)


class _Worker(threading.Thread):
    """Runs handlers one after another; `current` is the run in progress."""

    def __init__(self, handlers: dict, runs: list[_Run]):
        super().__init__(daemon=True, name="task batch")
        self.handlers = handlers
        self.runs = runs
        self.current: Optional[_Run] = None
        self.abandoned = False
        self._context = contextvars.copy_context()

    def run(self) -> None:
        self._context.run(self._run_all)

    def _run_all(self) -> None:
        for run in self.runs:
            if self.abandoned:
                return
            if run.done:
                continue
            run.started = time.monotonic()
            self.current = run
            source = f"handler for '{run.task['task_type']}'"
            try:
                handler = self.handlers[run.task["task_type"]]
                with log_context(job_id=run.task["parent_job_id"], task_id=run.task["task_id"],
                                 stage=run.task["stage"], operation="run_task"):
                    result = handler(run.task["parameters"], run.extra)
                if not isinstance(result, dict):
                    raise ContractViolationError(
                        f"{source} returned {type(result).__name__}; handlers must return a dict")
                result = storable_json(result, source)
            except KeyError as exc:
                if run.task["task_type"] in self.handlers:
                    outcome_error: BaseException = exc
                else:
                    outcome_error = ContractViolationError(
                        f"no handler for task type '{run.task['task_type']}' in ALL_HANDLERS")
                if not self.abandoned:
                    run.error, run.done = outcome_error, True
                continue
            except BaseException as exc:  # the task's own outcome; the batch goes on
                if not self.abandoned:
                    run.error, run.done = exc, True
                continue
            if not self.abandoned:
                run.result, run.done = result, True
        self.current = None
