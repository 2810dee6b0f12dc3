"""What a job message does: open its stage (core/stage_opening.py has the state steps).

The job's create_tasks_for_stage runs outside any transaction, so it may read storage or
the database (it receives core's I/O interfaces as `resources` when it names that
argument). Its failure is classified like a task's: transient (and unknown) failures send
the job message again after the task retry backoff, at most TASK_MAX_RETRIES times, then
fail the job naming the stage; a permanent failure or a broken contract fails the job at
once, naming the stage and the cause.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from config import get_settings
from core.error_handler import classify
from core.log_context import log_context
from core.models import JobQueueMessage, TaskDefinition
from core.task_runner import retry_delay
from exceptions import ContractViolationError, PoisonMessageError, UnknownJobTypeError

logger = logging.getLogger(__name__)


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class StageOpener:
    def __init__(self, machine: Any):
        self.machine = machine
        self.state = machine.state_manager

    def open(self, message: JobQueueMessage) -> str:
        """Open the message's stage; returns what was done, for logs and tests."""
        job_id, stage, attempt = message.job_id, message.stage, message.attempt
        prep = self.state.prepare_opening(job_id, stage, attempt)
        if prep.ignored == "unknown job" and self.state.was_purged(job_id):
            logger.info("job message ignored: the job was purged")
            return "job purged"
        if prep.ignored == "unknown job":
            raise PoisonMessageError(f"job message for unknown job {job_id}")
        if prep.ignored:
            logger.info("job message ignored: %s", prep.ignored)
            # whatever an earlier delivery committed but failed to send
            self.machine.outbox.flush(job_id)
            return prep.ignored
        if prep.resume:
            inserted = self.insert_stored_chunks(job_id, stage)
            logger.info("stage %s resumed opening: %d more task(s) queued", stage, inserted)
            return "resumed"
        try:
            definitions = self.build(prep.job, stage, prep.previous)
        except ContractViolationError as exc:
            return self._fail(job_id, stage, attempt, f"Stage {stage}: {exc}")
        except Exception as exc:  # the job's own code: classified like a task's failure
            return self._build_failed(prep.job, stage, attempt, exc)
        opening = self.state.store_stage(job_id, stage, attempt, definitions,
                                         get_settings().stage_chunk_size)
        if opening.ignored:
            logger.info("job message ignored: %s", opening.ignored)
        else:
            logger.info("stage %s opened: %d task(s) queued", stage, opening.task_count)
        self.machine.outbox.flush(job_id)  # the first chunk's messages (Service Bus)
        if opening.chunks_left:
            self.insert_stored_chunks(job_id, stage)
        self.machine._after_close(opening.closure)
        return opening.ignored or "opened"

    def build(self, job: dict[str, Any], stage: int, previous: Optional[list]
              ) -> list[TaskDefinition]:
        try:
            job_class = self.machine.job_class(job["job_type"])
        except UnknownJobTypeError as exc:  # removed by a deploy while the job ran
            raise ContractViolationError(str(exc)) from None
        tasks = self.machine.orchestrator.build_tasks(
            job_class, stage, job["parameters"], job["job_id"], previous,
            resources=self.machine.resources)
        unknown = sorted({t.task_type for t in tasks} - set(self.machine.handlers_registry))
        if unknown:
            raise ContractViolationError(
                f"{job_class.__name__} created tasks of type(s) {unknown} with no handler "
                "in ALL_HANDLERS")
        return tasks

    def insert_stored_chunks(self, job_id: str, stage: int) -> int:
        """Insert a stage's stored chunks, one transaction each, sending each chunk's
        messages after its commit; returns how many tasks were inserted."""
        inserted = 0
        while True:
            chunk = self.state.open_next_chunk(job_id, stage)
            if chunk.done:
                return inserted
            inserted += chunk.inserted
            if chunk.inserted and self.machine.outbox.deferred:
                self.machine.outbox.flush(job_id)

    def _build_failed(self, job: dict[str, Any], stage: int, attempt: int,
                      exc: Exception) -> str:
        settings = get_settings()
        job_id = job["job_id"]
        info = classify(exc)
        cause = f"{self.machine.job_class(job['job_type']).__name__}.create_tasks_for_stage"
        retries = self.state.build_retries(job, stage)
        if info.retryable:
            # Capped well below the stranded-job sweep (SWEEP_AFTER_SECONDS x 10), which
            # would otherwise re-send the message early, even for a long Retry-After.
            delay = min(retry_delay(retries, settings.task_retry_base_seconds,
                                    settings.task_retry_cap_seconds, info.retry_after),
                        settings.sweep_after_seconds * 5)
            retry = self.state.retry_opening(job_id, stage, attempt,
                                             settings.task_max_retries, delay)
            if retry is not None:
                logger.warning("stage %s: building its tasks failed (%s), retry %d in %.1f s:"
                               " %s", stage, info.error_category, retry, delay, info.message)
                if self.machine.outbox.deferred:
                    self.machine.outbox.flush(job_id)  # the scheduled job message
                return "retrying"
            cause += f" failed after {retries} retr{'y' if retries == 1 else 'ies'}"
        else:
            cause += " failed"
        return self._fail(job_id, stage, attempt, f"Stage {stage}: {cause}: "
                          f"{describe_error(exc)}")

    def _fail(self, job_id: str, stage: int, attempt: int, error: str) -> str:
        closure = self.state.fail_opening(job_id, stage, attempt, error)
        if closure is None:  # another delivery opened the stage, or the job moved on
            logger.info("job message ignored: the job moved on while its tasks were built")
            return "ignored: the job moved on"
        logger.error("job failed building stage %s's tasks: %s", stage, error)
        self.machine._after_close(closure)
        return "job failed building its tasks"

    def resume_stalled(self, older_than_seconds: float, limit: int) -> int:
        """The sweeper's step: stages whose stored chunks wait long (their opener died)
        get the rest inserted. Returns how many stages were resumed."""
        resumed = 0
        for row in self.state.stalled_openings(older_than_seconds, limit):
            with log_context(job_id=row["job_id"], stage=row["stage"], operation="sweep"):
                try:
                    if self.insert_stored_chunks(row["job_id"], row["stage"]):
                        resumed += 1
                except Exception:
                    logger.exception("resuming a stage's opening failed; the next sweep "
                                     "tries again")
        return resumed
