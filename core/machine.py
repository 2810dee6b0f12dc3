"""CoreMachine: the universal orchestrator. Built once, with explicit registries:

    CoreMachine(all_jobs=ALL_JOBS, all_handlers=ALL_HANDLERS)

A job message opens a stage: its tasks are built (from the previous stage's results),
stored and sent in batches. A task message runs one handler; recording its outcome tells,
in the same transaction, whether it was its stage's last task; that completion, and only
that one, queues the next stage or finalizes the job. Every handler is idempotent: any
message may arrive twice.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from config import JOBS_QUEUE, get_settings
from core.error_handler import CONTRACT, CoreMachineErrorHandler, classify
from core.log_context import log_context
from core.models import (
    JobQueueMessage, JobStatus, TaskQueueMessage, TaskStatus,
)
from core.orchestration_manager import OrchestrationManager
from core.stage_rules import record_failures
from core.startup import check_stage_timeouts
from core.registry import validate_registries
from core.stage_opener import StageOpener
from core.state_manager import StageClosure, StateManager
from core.handler_pool import DONE, HandlerPool, InvocationBudget, Run
from core.task_runner import base_context, retry_delay, storable_json
from exceptions import ContractViolationError, PoisonMessageError, UnknownJobTypeError
from infrastructure.db import get_database
from infrastructure.outbox import Outbox
from infrastructure.queues import QueueSender, get_queue
from infrastructure.resources import Resources
from jobs.base import JobExecutionContext

logger = logging.getLogger(__name__)


class CoreMachine:
    def __init__(
        self,
        all_jobs: dict[str, Any],
        all_handlers: dict[str, Callable[..., dict]],
        queue: Optional[QueueSender] = None,
    ):
        validate_registries(all_jobs, all_handlers)
        check_stage_timeouts(all_jobs, get_settings())
        self.jobs_registry = all_jobs
        self.handlers_registry = all_handlers
        self._queue = queue
        self._resources: Optional[Resources] = None
        self.outbox = Outbox(lambda: self.queue, get_database)
        self.state_manager = StateManager(all_jobs, self.outbox)
        self.state_manager.finalizer = self._conclude
        self.orchestrator = OrchestrationManager()

    @property
    def queue(self) -> QueueSender:
        return self._queue or get_queue()

    @property
    def resources(self) -> Resources:
        """The I/O interfaces core hands to submit checks and task builders."""
        if self._resources is None:
            self._resources = Resources()
        return self._resources

    def job_class(self, job_type: str) -> Any:
        try:
            return self.jobs_registry[job_type]
        except KeyError:
            raise UnknownJobTypeError(job_type, sorted(self.jobs_registry)) from None

    # -- messages -----------------------------------------------------------------------
    def handle_message(self, queue_name: str, body: bytes, message_id: Optional[str] = None
                       ) -> str:
        """What a queue trigger does with a message: process it; a message that can never
        succeed is recorded in app.dead_letters and reported as "dead-lettered" (the
        caller completes it). Anything else raised means: deliver it again."""
        budget = self.invocation_budget()
        try:
            if queue_name == JOBS_QUEUE:
                return self.process_job_message(body)
            return self.process_task_message(body, budget)
        except PoisonMessageError as exc:
            self.state_manager.record_dead_letter(queue_name, message_id, body, str(exc))
            logger.error("message on %s dead-lettered: %s", queue_name, exc,
                         extra={"message_id": message_id})
            return "dead-lettered"

    def handle_task_batch(self, messages: list[tuple[bytes, Optional[str]]]) -> list[str]:
        """What the batch task trigger does with its messages: run them as one batch
        (core/batch.py); each message's outcome, in order. Raising means: deliver the
        whole batch again (only when the database or queue failed)."""
        from core.batch import TaskBatchProcessor

        return TaskBatchProcessor(self).process(messages, self.invocation_budget())

    def invocation_budget(self) -> InvocationBudget:
        """The time an invocation starting now has (functionTimeout, less the reserve)."""
        settings = get_settings()
        return InvocationBudget(settings.function_timeout_seconds,
                                settings.invocation_reserve_seconds)

    def new_run(self, task: dict[str, Any], attempt: int) -> Run:
        definition = self._stage_definition(task)
        return Run(task, definition, attempt, timeout=definition.get(
            "timeout_seconds", get_settings().task_timeout_seconds))

    def handler_pool(self, concurrency: int, budget: InvocationBudget) -> HandlerPool:
        """Runs claimed tasks' handlers, renewing their leases and handing back those that
        no longer fit in the budget."""
        settings = get_settings()
        lease = settings.task_lease_seconds
        state = self.state_manager

        def renew(runs: list[Run]) -> set[str]:
            return state.renew_leases([r.task["task_id"] for r in runs],
                                      [r.attempt for r in runs], lease)

        def hand_back(runs: list[Run]) -> None:
            handed = state.hand_back([(r.task, r.attempt) for r in runs])
            logger.info("%d task(s) handed back: their timeout no longer fits in this "
                        "invocation's time budget", handed)

        return HandlerPool(self.handlers_registry, concurrency, budget, lease / 3, renew,
                           hand_back)

    # -- job messages -------------------------------------------------------------------
    def process_job_message(self, body: bytes | str) -> str:
        """Open the message's stage. Returns what was done, for logs and tests."""
        message = JobQueueMessage.parse(body)
        with log_context(job_id=message.job_id, stage=message.stage, operation="open_stage"):
            return StageOpener(self).open(message)

    def _after_close(self, closure: Optional[StageClosure]) -> None:
        if closure is None:
            return
        if closure.action == "next":
            if self.outbox.deferred:
                self.outbox.flush(closure.job_id)  # the next stage's message
        elif closure.action == "finalize":
            self.finalize(closure.job_id)
        elif closure.action == "finalized" and closure.status:
            with log_context(job_id=closure.job_id, operation="finalize"):
                logger.info("job %s", closure.status)
        elif closure.action == "failed":
            logger.warning("job failed")
            if self.outbox.deferred:
                self.outbox.flush(closure.job_id)  # its cleanup task's message, if any

    # -- task messages ------------------------------------------------------------------
    def process_task_message(self, body: bytes | str,
                             budget: Optional[InvocationBudget] = None) -> str:
        """Run one task; returns its outcome ("completed", "failed", "retrying",
        "handed back" or why it was skipped)."""
        message = TaskQueueMessage.parse(body)
        with log_context(job_id=message.job_id, task_id=message.task_id, stage=message.stage,
                         operation="run_task"):
            return self._run_task(message, budget or self.invocation_budget())

    def _run_task(self, message: TaskQueueMessage, budget: InvocationBudget) -> str:
        settings = get_settings()
        task, why = self.state_manager.begin_task(
            message.task_id, message.attempt, settings.task_lease_seconds, message.job_id)
        if task is None:
            if why == "unknown task" and self.state_manager.was_purged(message.job_id):
                logger.info("task message ignored: its job was purged")
                return "job purged"
            if why == "unknown task":
                raise PoisonMessageError(f"task message for unknown task {message.task_id}")
            logger.info("task message ignored: %s", why)
            if why.startswith("task already"):
                # A repeated message may mean the first delivery finished the task but
                # failed before its stage's next step was sent: redo that step.
                self.resume(message.job_id)
            return why
        if task["task_type"] not in self.handlers_registry:
            # removed by a deploy while the job ran: the job fails, the message is
            # recorded as one that can never succeed
            self.fail_task(task, message.attempt, ContractViolationError(
                f"no handler for task type '{task['task_type']}' in ALL_HANDLERS"))
            raise PoisonMessageError(f"unknown task type '{task['task_type']}'")
        run = self.new_run(task, message.attempt)
        run.context = self._handler_context(task, run.definition)
        self.handler_pool(1, budget).run([run])
        if run.state != DONE:  # handed back, or its job ended before it could start
            return run.state
        if run.error is not None:  # classified: retried later, or the task and job fail
            return self.fail_task(task, message.attempt, run.error)
        result = run.result
        closure = self.state_manager.complete_task(task["task_id"], TaskStatus.COMPLETED,
                                                   result, None, attempt=message.attempt)
        logger.debug("task completed")  # per task: DEBUG; the status endpoint counts them
        self._after_close(closure)
        return TaskStatus.COMPLETED.value

    def _stage_definition(self, task: dict[str, Any]) -> dict[str, Any]:
        return self.state_manager.stage_definition(task, task["stage"])

    def _handler_context(self, task: dict[str, Any], definition: dict[str, Any]) -> dict:
        context = base_context(task)
        context.update(self.state_manager.handler_context_data(
            task, lineage=bool(definition.get("uses_lineage")),
            fan_in=definition.get("parallelism") == "fan_in",
        ))
        return context

    def job_error(self, task: dict[str, Any], exc: BaseException) -> str:
        """The cause a job records when this task's failure fails it."""
        name = self._stage_definition(task).get("name", "?")
        retries = task["retry_count"]
        after = f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""
        return (f"Task {task['task_id']} (stage {task['stage']} '{name}', task "
                f"{task['task_index']}) failed{after}: {classify(exc).message}")

    def fail_task(self, task: dict[str, Any], attempt: int, exc: BaseException) -> str:
        """A transient or unknown failure with retries left runs again later; anything
        else fails the task and, at once, its job."""
        settings = get_settings()
        info = classify(exc)
        retries = task["retry_count"]
        if info.retryable and retries < settings.task_max_retries:
            delay = retry_delay(retries, settings.task_retry_base_seconds,
                                settings.task_retry_cap_seconds, info.retry_after)
            if self.state_manager.retry_task(task, attempt, info.as_result(), info.message,
                                             delay) is not None:
                logger.warning("task failed (%s), retry %d in %.1f s: %s", info.error_category,
                               retries + 1, delay, info.message,
                               extra={"error_type": info.error_type})
                if self.outbox.deferred:
                    self.outbox.flush(task["parent_job_id"])  # the scheduled message
            return "retrying"
        job_error = self.job_error(task, exc)
        logger.error("task failed (%s): %s", info.error_category, info.message,
                     exc_info=exc if info.error_category == CONTRACT else None,
                     extra={"error_type": info.error_type,
                            "error_category": info.error_category})
        closure = self.state_manager.complete_task(
            task["task_id"], TaskStatus.FAILED, info.as_result(), info.message, job_error,
            attempt=attempt)
        self._after_close(closure)
        return TaskStatus.FAILED.value

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
        status = self.state_manager.finalize_job(job_id, self._conclude)
        if status is not None:
            logger.info("job %s", status.value)
        return status.value if status is not None else None

    def _conclude(self, job: dict[str, Any], tasks: list) -> tuple:
        """How a job ends, from its record and its tasks: (status, result, error). Runs
        its finalize_job; if that fails, the job still ends, completed_with_errors."""
        job_id = job["job_id"]
        job_class = self.jobs_registry.get(job["job_type"])
        if job_class is None:  # removed by a deploy while the job ran
            return JobStatus.FAILED, None, (
                f"Unknown job type '{job['job_type']}': no longer in ALL_JOBS")
        context = JobExecutionContext(
            job_id=job_id, job_type=job["job_type"], parameters=job["parameters"],
            stage_results=job["stage_results"], task_results=tasks,
        )
        outcome: dict[str, Any] = {"status": JobStatus.COMPLETED, "error": None}

        def fall_back(exc: Exception, info: Any) -> None:
            # The job still ends: completed_with_errors, the error beside a fallback.
            outcome["status"] = JobStatus.COMPLETED_WITH_ERRORS
            outcome["error"] = f"finalize_job failed: {info.message}"
            outcome["result"] = {
                "finalize_error": outcome["error"], "tasks_total": len(tasks),
                "tasks_completed": sum(t.status == TaskStatus.COMPLETED for t in tasks)}

        with CoreMachineErrorHandler.handle_operation(
            logger, "finalize_job", job_id=job_id, on_error=fall_back,
            raise_on_error=False,
        ):
            result = job_class.finalize_job(context)
            if not isinstance(result, dict):
                raise ContractViolationError(
                    f"{job_class.__name__}.finalize_job returned {type(result).__name__};"
                    " it must return a dict")
            outcome["result"] = storable_json(result, f"{job_class.__name__}.finalize_job")
        failed = [t for t in tasks if t.status == TaskStatus.FAILED]
        if failed:  # only stages that tolerate failures reach finalize with some
            outcome["status"] = JobStatus.COMPLETED_WITH_ERRORS
            counted = record_failures(failed, {n: s["name"] for n, s in enumerate(
                job_class.stages, start=1)}, outcome["result"])
            outcome["error"] = "; ".join(filter(None, [outcome["error"], counted]))
        return outcome["status"], outcome["result"], outcome["error"]
