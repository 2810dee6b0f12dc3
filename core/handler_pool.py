"""Running claimed tasks' handlers: concurrently, each in a thread of its own, within the
invocation's time budget and each stage's cap on how many of its tasks run at once in
this process. Both task triggers use it: one message is a pool of one.

The calling thread coordinates: it starts handlers while slots are free, renews the
claimed tasks' leases every third of a lease, fails a handler past its deadline (Python
cannot stop a thread: its context["cancelled"] is set and whatever it returns later is
discarded), and hands back tasks whose timeout no longer fits in the invocation, so they
run again at once elsewhere instead of being killed with the invocation.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Optional

from core.log_context import log_context
from core.task_runner import storable_json
from exceptions import ContractViolationError, TaskTimeoutError

PENDING, RUNNING, DONE, HANDED_BACK, UNWANTED = (
    "pending", "running", "done", "handed back", "unwanted")
# How often a run held back by its stage's cap (taken by other invocations of this
# process) looks for a free slot.
CAP_POLL_SECONDS = 0.02


@dataclass
class InvocationBudget:
    """The time an invocation has: the host kills it at functionTimeout; the last
    `reserve` seconds are kept for recording outcomes and handing tasks back."""

    function_timeout: float
    reserve: float
    started: float = field(default_factory=time.monotonic)

    @property
    def cut_at(self) -> float:
        return self.started + self.function_timeout - self.reserve

    def fits(self, timeout: float, now: float) -> bool:
        return now + timeout <= self.cut_at


class StageLimits:
    """One semaphore per capped stage ("max_concurrency"), shared by every invocation of
    this process, so the cap holds across concurrent batches and single messages."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}

    def semaphore(self, task: dict[str, Any], definition: dict[str, Any]
                  ) -> Optional[threading.BoundedSemaphore]:
        cap = definition.get("max_concurrency")
        if not cap:
            return None
        key = f"{task['job_type']}:{task['stage']}:{cap}"
        with self._lock:
            if key not in self._semaphores:
                self._semaphores[key] = threading.BoundedSemaphore(cap)
            return self._semaphores[key]


STAGE_LIMITS = StageLimits()


class RunningHandlers:
    """The handlers running in this process, by job: cancelling a job tells its handlers
    here at once (context["cancelled"]); those of other processes learn it at their next
    lease renewal, which finds their task cancelled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_job: dict[str, dict[int, "Run"]] = {}

    def add(self, run: "Run") -> None:
        with self._lock:
            self._by_job.setdefault(run.task["parent_job_id"], {})[id(run)] = run

    def remove(self, run: "Run") -> None:
        with self._lock:
            runs = self._by_job.get(run.task["parent_job_id"], {})
            runs.pop(id(run), None)
            if not runs:
                self._by_job.pop(run.task["parent_job_id"], None)

    def cancel(self, job_ids: list[str]) -> int:
        """Set the cancelled event of these jobs' running handlers (not cleanup tasks');
        returns how many were told."""
        with self._lock:
            runs = [r for j in job_ids for r in self._by_job.get(j, {}).values()
                    if r.task["stage"] != 0]
        for run in runs:
            run.context["cancelled"].set()
        return len(runs)


RUNNING = RunningHandlers()


@dataclass
class Run:
    """A claimed task, what its handler is given, and what running it produced."""

    task: dict[str, Any]
    definition: dict[str, Any]
    attempt: int
    timeout: float
    context: dict[str, Any] = field(default_factory=dict)
    state: str = PENDING
    result: Optional[dict] = None
    error: Optional[BaseException] = None
    started: float = 0.0
    deadline: float = 0.0

    @property
    def source(self) -> str:
        return f"handler for '{self.task['task_type']}'"


class HandlerPool:
    """renew(runs) extends the leases of claimed runs and returns the task ids still
    wanted; hand_back(runs) queues runs again (their own transaction)."""

    def __init__(self, handlers: dict[str, Callable[..., Any]], concurrency: int,
                 budget: InvocationBudget, renew_every: float,
                 renew: Callable[[list[Run]], set[str]],
                 hand_back: Callable[[list[Run]], None],
                 limits: StageLimits = STAGE_LIMITS):
        self.handlers = handlers
        self.concurrency = max(concurrency, 1)
        self.budget = budget
        self.renew_every = renew_every
        self.renew = renew
        self.hand_back = hand_back
        self.limits = limits
        self._finished: queue.SimpleQueue = queue.SimpleQueue()

    def run(self, runs: list[Run]) -> None:
        """Run every run to an end state: done (result or error), handed back, or
        unwanted (its job ended or moved to another attempt before it started)."""
        pending = list(runs)
        running: list[Run] = []
        next_renewal = time.monotonic() + self.renew_every
        while pending or running:
            now = time.monotonic()
            late = [r for r in pending if not self.budget.fits(r.timeout, now)]
            if late:
                pending = [r for r in pending if r not in late]
                for run in late:
                    run.state = HANDED_BACK
                self.hand_back(late)
            blocked = self._start(pending, running, now)
            pending = [r for r in pending if r.state == PENDING]
            wake = min([next_renewal] + [r.deadline for r in running]
                       + [self.budget.cut_at - r.timeout for r in pending])
            if blocked:
                wake = min(wake, now + CAP_POLL_SECONDS)
            if running:
                self._collect(max(wake - time.monotonic(), 0.0))
            elif pending:
                time.sleep(max(min(wake - time.monotonic(), CAP_POLL_SECONDS), 0.0))
            now = time.monotonic()
            for run in running:
                if run.state == RUNNING and now >= run.deadline:
                    self._time_out(run)
            running = [r for r in running if r.state == RUNNING]
            if now >= next_renewal and (running or pending):
                wanted = self.renew(running + pending)
                for run in running + pending:
                    if run.task["task_id"] not in wanted:
                        run.context["cancelled"].set()
                        if run.state == PENDING:
                            run.state = UNWANTED
                pending = [r for r in pending if r.state == PENDING]
                next_renewal = now + self.renew_every

    def _start(self, pending: list[Run], running: list[Run], now: float) -> bool:
        """Start what the pool and the stages' caps allow; True if a run waits for a
        stage's cap while the pool has room."""
        blocked = False
        for run in pending:
            if len(running) >= self.concurrency:
                return False
            slot = self.limits.semaphore(run.task, run.definition)
            if slot is not None and not slot.acquire(blocking=False):
                blocked = True
                continue
            run.state, run.started = RUNNING, now
            run.deadline = min(now + run.timeout, self.budget.cut_at)
            run.context["deadline"] = datetime.now(timezone.utc) + timedelta(
                seconds=run.deadline - now)
            run.context["time_left"] = _time_left(run)
            running.append(run)
            RUNNING.add(run)
            thread = threading.Thread(
                target=contextvars.copy_context().run, args=(self._call, run, slot),
                daemon=True, name=f"handler {run.task['task_id']}")
            thread.start()
        return blocked

    def _collect(self, wait: float) -> None:
        """Take finished handlers' outcomes, waiting up to `wait` for the first."""
        try:
            item = self._finished.get(timeout=wait)
        except queue.Empty:
            return
        while True:
            run, result, error = item
            if run.state == RUNNING:  # not timed out meanwhile
                run.result, run.error, run.state = result, error, DONE
            try:
                item = self._finished.get_nowait()
            except queue.Empty:
                return

    def _time_out(self, run: Run) -> None:
        run.context["cancelled"].set()
        if run.deadline < run.started + run.timeout:
            why = "reached the end of its invocation's time budget (functionTimeout)"
        else:
            why = f"ran longer than its {run.timeout:g} s timeout"
        run.error, run.state = TaskTimeoutError(f"{run.source} {why}"), DONE

    def _call(self, run: Run, slot: Optional[threading.BoundedSemaphore]) -> None:
        result, error = None, None
        try:
            handler = self.handlers.get(run.task["task_type"])
            if handler is None:
                raise ContractViolationError(
                    f"no handler for task type '{run.task['task_type']}' in ALL_HANDLERS")
            with log_context(job_id=run.task["parent_job_id"], task_id=run.task["task_id"],
                             stage=run.task["stage"], operation="run_task"):
                value = handler(run.task["parameters"], run.context)
            if not isinstance(value, dict):
                raise ContractViolationError(
                    f"{run.source} returned {type(value).__name__}; handlers must return a dict")
            result = storable_json(value, run.source)
        except BaseException as exc:  # the task's own outcome, handed to the coordinator
            error = exc
        finally:
            RUNNING.remove(run)
            if slot is not None:  # the thread's end, not its deadline, frees the slot
                slot.release()
        self._finished.put((run, result, error))


def _time_left(run: Run) -> Callable[[], float]:
    return lambda: max(run.deadline - time.monotonic(), 0.0)
