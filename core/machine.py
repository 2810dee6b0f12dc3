"""CoreMachine: the universal orchestrator. Built once, with explicit registries:

    CoreMachine(all_jobs=ALL_JOBS, all_handlers=ALL_HANDLERS)

A job message opens a stage: its tasks are built (from the previous stage's results),
stored and sent in batches. A task message runs one handler; recording its outcome tells,
in the same transaction, whether it was its stage's last task; that completion, and only
that one, queues the next stage or finalizes the job. Every handler is idempotent: any
message may arrive twice.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Optional

from core.log_context import log_context
from core.models import (
    JobQueueMessage, JobStatus, TaskDefinition, TaskQueueMessage, TaskStatus,
)
from core.orchestration_manager import OrchestrationManager
from core.registry import validate_registries
from core.state_manager import StageClosure, StateManager
from exceptions import ContractViolationError, UnknownJobTypeError
from infrastructure.db import get_database
from infrastructure.outbox import Outbox
from infrastructure.queues import QueueSender, get_queue
from jobs.base import JobExecutionContext

logger = logging.getLogger(__name__)


def storable_json(value: dict[str, Any], source: str) -> dict[str, Any]:
    """value as plain JSON that PostgreSQL's jsonb can store (no NaN or infinity, no NUL
    character in any key or string); other objects become their str()."""
    try:
        plain = json.loads(json.dumps(value, allow_nan=False, default=str))
    except ValueError as exc:
        raise ContractViolationError(f"{source} returned a value JSON cannot hold: {exc}") from None
    stack: list[Any] = [plain]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and "\x00" in item:
            raise ContractViolationError(
                f"{source} returned text with a NUL character, which PostgreSQL cannot store")
    return plain


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class CoreMachine:
    def __init__(
        self,
        all_jobs: dict[str, Any],
        all_handlers: dict[str, Callable[..., dict]],
        queue: Optional[QueueSender] = None,
    ):
        validate_registries(all_jobs, all_handlers)
        self.jobs_registry = all_jobs
        self.handlers_registry = all_handlers
        self._queue = queue
        self.outbox = Outbox(lambda: self.queue, get_database)
        self.state_manager = StateManager(all_jobs, self.outbox)
        self.orchestrator = OrchestrationManager()

    @property
    def queue(self) -> QueueSender:
        return self._queue or get_queue()

    def job_class(self, job_type: str) -> Any:
        try:
            return self.jobs_registry[job_type]
        except KeyError:
            raise UnknownJobTypeError(job_type, sorted(self.jobs_registry)) from None

    # -- job messages -------------------------------------------------------------------
    def process_job_message(self, body: bytes | str) -> str:
        """Open the message's stage. Returns what was done, for logs and tests."""
        message = JobQueueMessage.parse(body)
        with log_context(job_id=message.job_id, stage=message.stage, operation="open_stage"):
            return self._open_stage(message)

    def _open_stage(self, message: JobQueueMessage) -> str:
        opening = self.state_manager.open_stage(
            message.job_id, message.stage, message.attempt, self._stage_builder(message.stage)
        )
        if opening.ignored:
            logger.info("job message ignored: %s", opening.ignored)
        else:
            logger.info("stage %s: %d task(s) queued", message.stage, opening.task_count)
        # Sends the new tasks' messages (Service Bus); after an ignored repeat, whatever
        # an earlier delivery committed but failed to send.
        self.outbox.flush(message.job_id)
        self._after_close(opening.closure)
        return opening.ignored or "opened"

    def _stage_builder(self, stage: int):
        def build(job: dict[str, Any], previous: Optional[list]) -> list[TaskDefinition]:
            job_class = self.job_class(job["job_type"])
            try:
                tasks = self.orchestrator.build_tasks(
                    job_class, stage, job["parameters"], job["job_id"], previous)
            except ContractViolationError:
                raise
            except Exception as exc:  # a job's own code failed: the job fails with the cause
                raise ContractViolationError(
                    f"{job_class.__name__}.create_tasks_for_stage failed: {describe_error(exc)}"
                ) from exc
            unknown = sorted({t.task_type for t in tasks} - set(self.handlers_registry))
            if unknown:
                raise ContractViolationError(
                    f"{job_class.__name__} created tasks of type(s) {unknown} with no handler "
                    "in ALL_HANDLERS"
                )
            return tasks
        return build

    def _after_close(self, closure: Optional[StageClosure]) -> None:
        if closure is None:
            return
        if closure.action == "next":
            self.outbox.flush(closure.job_id)  # the next stage's message
        elif closure.action == "finalize":
            self.finalize(closure.job_id)
        elif closure.action == "failed":
            logger.warning("job failed")

    # -- task messages ------------------------------------------------------------------
    def process_task_message(self, body: bytes | str) -> str:
        """Run one task; returns its outcome ("completed", "failed" or why it was skipped)."""
        message = TaskQueueMessage.parse(body)
        with log_context(job_id=message.job_id, task_id=message.task_id, stage=message.stage,
                         operation="run_task"):
            return self._run_task(message)

    def _run_task(self, message: TaskQueueMessage) -> str:
        task, job = self.state_manager.begin_task(message.task_id)
        if task is None:
            reason = "unknown task" if job is None else "task already finished"
            logger.info("task message ignored: %s", reason)
            if job is not None:
                # A repeated message may mean the first delivery finished the task but
                # failed before its stage's next step was sent: redo that step.
                self.resume(job["job_id"])
            return reason
        if job["attempt"] != message.attempt:
            logger.info("task message ignored: from attempt %s", message.attempt)
            return "stale attempt"
        if JobStatus(job["status"]).is_terminal:
            # The job has ended (a sibling failed it): record the task as not run, so
            # nothing is left processing. Its stage is not advanced: the job has ended.
            status, result, error = (
                TaskStatus.FAILED, None, f"not run: job already {job['status']}")
        else:
            status, result, error = self._run_handler(task, job)
        closure = self.state_manager.complete_task(task["task_id"], status, result, error)
        logger.info("task %s", status.value)
        self._after_close(closure)
        return status.value

    def _run_handler(self, task: dict[str, Any], job: dict[str, Any]):
        handler = self.handlers_registry.get(task["task_type"])
        if handler is None:
            return TaskStatus.FAILED, None, (
                f"ContractViolationError: no handler for task type '{task['task_type']}'")
        job_class = self.jobs_registry.get(job["job_type"])
        definition = job_class.stages[task["stage"] - 1] if job_class else {}
        context = {
            "job_id": job["job_id"], "job_type": job["job_type"], "task_id": task["task_id"],
            "stage": task["stage"], "task_index": task["task_index"],
            "job_parameters": job["parameters"],
        }
        context.update(self.state_manager.handler_context_data(
            task, lineage=bool(definition.get("uses_lineage")),
            fan_in=definition.get("parallelism") == "fan_in",
        ))
        try:
            result = handler(task["parameters"], context)
            if not isinstance(result, dict):
                raise ContractViolationError(
                    f"handler for '{task['task_type']}' returned {type(result).__name__}; "
                    "handlers must return a dict")
            result = storable_json(result, f"handler for '{task['task_type']}'")
        except Exception as exc:  # the task fails with its cause; the job decides the rest
            logger.warning("task handler failed: %s", describe_error(exc),
                           extra={"error_type": type(exc).__name__})
            return TaskStatus.FAILED, None, describe_error(exc)
        return TaskStatus.COMPLETED, result, None

    def resume(self, job_id: str) -> Optional[str]:
        """Do what an unfinished job waits for that no message will do: send messages an
        earlier commit left in the outbox, or finalize a job whose stages have all closed.
        Safe to call any time. Returns what it did, or None."""
        with log_context(job_id=job_id, operation="resume"):
            if self.outbox.flush(job_id):
                logger.info("resumed job: sent pending messages")
                return "sent"
            if self.state_manager.needs_finalize(job_id):
                logger.info("resumed job: finalizing")
                self.finalize(job_id)
                return "finalized"
        return None

    # -- finalization -------------------------------------------------------------------
    def finalize(self, job_id: str) -> Optional[str]:
        with log_context(job_id=job_id, operation="finalize"):
            return self._finalize(job_id)

    def _finalize(self, job_id: str) -> Optional[str]:
        job, tasks = self.state_manager.load_for_finalize(job_id)
        if job is None or JobStatus(job["status"]).is_terminal:
            return None
        job_class = self.job_class(job["job_type"])
        context = JobExecutionContext(
            job_id=job_id, job_type=job["job_type"], parameters=job["parameters"],
            stage_results=job["stage_results"], task_results=tasks,
        )
        status = JobStatus.COMPLETED
        try:
            result = job_class.finalize_job(context)
            if not isinstance(result, dict):
                raise ContractViolationError(
                    f"{job_class.__name__}.finalize_job returned {type(result).__name__}; "
                    "it must return a dict")
            result = storable_json(result, f"{job_class.__name__}.finalize_job")
            error = None
        except Exception as exc:  # the job still ends, with the error beside a fallback
            status = JobStatus.COMPLETED_WITH_ERRORS
            error = f"finalize_job failed: {describe_error(exc)}"
            result = {"finalize_error": error, "tasks_total": len(tasks),
                      "tasks_completed": sum(t.status == TaskStatus.COMPLETED for t in tasks)}
            logger.error(error, exc_info=True)
        self.state_manager.end_job(job_id, status, result, error)
        logger.info("job %s", status.value)
        return status.value
