"""Running a batch of task messages (the task trigger's cardinality "many").

One statement claims the batch, with the lineage inputs of the tasks that read them;
handlers run concurrently (TASK_BATCH_CONCURRENCY, and each stage's max_concurrency) in
core/handler_pool.py, which renews the batch's leases, enforces each task's timeout and
hands back tasks that no longer fit in the invocation's time budget; then one transaction
records every outcome, counts them off their stages, schedules retries, fails jobs and
closes stages. Each task keeps its own fate: a failing task fails (or retries) alone,
never its batch-mates.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from config import TASKS_QUEUE, get_settings
from core.cleanup import CLEANUP_STAGE
from core.error_handler import classify
from core.handler_pool import DONE, HandlerPool, InvocationBudget, Run
from core.log_context import log_context
from core.models import TaskQueueMessage, TaskStatus
from core.task_runner import base_context, retry_delay
from exceptions import ContractViolationError, MessageFormatError
from infrastructure.batch_repository import BatchRepository
from infrastructure.db import get_database

logger = logging.getLogger(__name__)


class TaskBatchProcessor:
    def __init__(self, machine: Any):
        self.machine = machine
        self.state = machine.state_manager
        self.repo = BatchRepository()

    def process(self, messages: list[tuple[bytes, Optional[str]]],
                budget: Optional[InvocationBudget] = None) -> list[str]:
        """Outcomes in message order: "completed", "failed", "retrying", "handed back",
        "dead-lettered", or why a message was ignored."""
        settings = get_settings()
        budget = budget or self.machine.invocation_budget()
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
        runs = [self.machine.new_run(t, parsed[t["task_id"]][1].attempt) for t in claimed]
        self._contexts(runs)
        self.machine.handler_pool(settings.task_batch_concurrency, budget).run(runs)
        for run in runs:
            outcomes[parsed[run.task["task_id"]][0]] = (
                self._record_outcome_label(run, settings) if run.state == DONE else run.state)
        self._record([r for r in runs if r.state == DONE], settings)
        return outcomes

    def _explain(self, entry: tuple[int, TaskQueueMessage], row: dict[str, Any],
                 messages: list) -> str:
        index, message = entry
        if row["status"] is None:
            # Not there: from another attempt of its job (stale), or never was (poison).
            job = self.state.get_job(message.job_id)
            if job is not None and job["attempt"] != message.attempt:
                return "stale attempt"
            if job is None and self.state.was_purged(message.job_id):
                return "job purged"
            self.state.record_dead_letter(TASKS_QUEUE, messages[index][1], messages[index][0],
                                          f"task message for unknown task {message.task_id}")
            return "dead-lettered"
        if row["attempt"] != message.attempt:
            return "stale attempt"
        if row["job_status"] not in ("queued", "processing") and row["stage"] != CLEANUP_STAGE:
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
    def _contexts(self, runs: list[Run]) -> None:
        for run in runs:
            task = run.task
            run.context = base_context(task)
            if run.definition.get("uses_lineage"):  # read by the claim
                run.context["predecessor_result"] = task["predecessor_result"]
            if task["stage"] == CLEANUP_STAGE:
                run.context.update(self.state.cleanup_context(task))
            if run.definition.get("parallelism") == "fan_in":
                run.context.update(self.state.handler_context_data(task, False, True))

    def _record_outcome_label(self, run: Run, settings: Any) -> str:
        if run.error is None:
            return TaskStatus.COMPLETED.value
        info = classify(run.error)
        if info.retryable and run.task["retry_count"] < settings.task_max_retries:
            return "retrying"
        return TaskStatus.FAILED.value

    # -- recording ----------------------------------------------------------------------
    def _record(self, runs: list[Run], settings: Any) -> None:
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
                                    settings.task_retry_cap_seconds, info.retry_after)
                self.state.retry_task_in(conn, run.task, run.attempt, info.as_result(),
                                         info.message, delay)
            # Only failures recorded now count as their stage's (not a repeat, nor a
            # worker of an attempt the job has left behind); the first names the cause.
            first_failure = {}
            for run in sorted(failures, key=lambda r: r.task["task_id"]):
                if run.task["task_id"] in recorded:
                    first_failure.setdefault((run.task["parent_job_id"], run.task["stage"]), run)
            for row in sorted(rows, key=lambda r: (r["job_id"], r["stage"])):
                first = first_failure.get((row["job_id"], row["stage"]))
                closures.append(self.state.after_count(
                    conn, row, self.machine.job_error(first.task, first.error) if first else None))
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
