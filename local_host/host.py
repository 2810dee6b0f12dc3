"""LocalHost: runs a FunctionApp's functions in this process, as `func start` would, with
the embedded queue standing in for Service Bus.

    with LocalHost(port=0) as host:      # returns once listening
        urlopen(host.url + "/api/health")
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Callable, Optional, TextIO

from config import JOBS_QUEUE, get_settings

from .functions import (
    HTTP_TRIGGER, SERVICE_BUS_TRIGGER, TIMER_TRIGGER, FunctionSpec, discover,
)
from .http_server import ROUTE_PREFIX, KeyCheck, LocalHttpServer, Router
from .queue_workers import LockRenewer, QueueWaker, QueueWorker, Wakeup
from .settings import is_disabled, max_lock_renewal_seconds
from .timers import TimerRunner

logger = logging.getLogger("local_host")

STOP_TIMEOUT_SECONDS = 10.0


class LocalHostError(Exception):
    """The host cannot start as configured."""


class LocalHost:
    def __init__(self, app: Any = None, port: int = 0, *, close_database: bool = True,
                 banner: bool = True, out: Optional[TextIO] = None,
                 stop_timeout: float = STOP_TIMEOUT_SECONDS,
                 max_lock_renewal: Optional[float] = None):
        if app is None:
            from function_app import app
        # Functions switched off with AzureWebJobs.<name>.Disabled are not run, as in Azure.
        self.disabled = [f for f in discover(app) if is_disabled(f.name)]
        self.functions: list[FunctionSpec] = [f for f in discover(app) if not is_disabled(f.name)]
        self.requested_port = port
        self.close_database = close_database
        self.banner, self.out = banner, out
        self.stop_timeout = stop_timeout
        # None: host.json's maxAutoLockRenewalDuration (from the current directory, where
        # func start runs too), else unbounded.
        self.max_lock_renewal = (max_lock_renewal_seconds() if max_lock_renewal is None
                                 else max_lock_renewal)
        self.http: Optional[LocalHttpServer] = None
        self.queue: Any = None
        # Workers and timers stop first; the renewer and listeners serve them until then.
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._workers: list[QueueWorker] = []
        self._support: list[threading.Thread] = []
        self._timers: list[TimerRunner] = []
        self._wakeups: list[Wakeup] = []
        self._renewer: Optional[LockRenewer] = None
        self._started = False
        self.keys_checked = False

    def of_type(self, trigger_type: str) -> list[FunctionSpec]:
        return [f for f in self.functions if f.trigger_type == trigger_type]

    @property
    def port(self) -> int:
        if self.http is None:
            raise LocalHostError("the host is not started")
        return self.http.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def concurrency(self, spec: FunctionSpec) -> int:
        settings = get_settings()
        if spec.queue_name == JOBS_QUEUE:
            return settings.local_job_concurrency
        return settings.local_task_concurrency

    # -- start ----------------------------------------------------------------------------
    def start(self) -> "LocalHost":
        if self._started:
            raise LocalHostError("the host is already started")
        self._started = True
        for spec in self.functions:
            if spec.trigger_type not in (HTTP_TRIGGER, SERVICE_BUS_TRIGGER, TIMER_TRIGGER):
                logger.warning("function %s has a %s, which the local host does not run",
                               spec.name, spec.trigger_type)
        try:
            timers = [self._timer(s) for s in self.of_type(TIMER_TRIGGER)]
            for spec in self.of_type(SERVICE_BUS_TRIGGER):
                self._check(spec, lambda s: s.queue_name)
            if self.of_type(SERVICE_BUS_TRIGGER):
                self._start_queues()
            try:
                keys = KeyCheck.from_settings()
            except ValueError as exc:
                raise LocalHostError(str(exc)) from None
            self.keys_checked = keys.enabled
            try:
                self.http = LocalHttpServer(Router(self.of_type(HTTP_TRIGGER)),
                                            self.requested_port, keys)
            except OSError as exc:
                raise LocalHostError(f"cannot listen on 127.0.0.1:{self.requested_port}: "
                                     f"{exc.strerror or exc}") from None
            self.http.start()
            for timer in timers:
                timer.start()
            self._timers = timers
        except BaseException:
            self.stop()
            raise
        if self.banner:
            self._print_banner()
        logger.info("local host listening on %s", self.url)
        return self

    @staticmethod
    def _check(spec: FunctionSpec, read: Callable[[FunctionSpec], Any]) -> Any:
        try:
            return read(spec)
        except (LookupError, ValueError) as exc:
            raise LocalHostError(f"function {spec.name}: {exc}") from None

    def _timer(self, spec: FunctionSpec) -> TimerRunner:
        return self._check(spec, lambda s: TimerRunner(s, self._stopping))

    def _start_queues(self) -> None:
        if get_settings().effective_queue_backend == "servicebus":
            raise LocalHostError(
                "QUEUE_BACKEND is servicebus (or a ServiceBusConnection is set): the local "
                "host drives only the embedded queue. Unset ServiceBusConnection or set "
                "QUEUE_BACKEND=embedded, or run the app with `func start` against Service Bus.")
        from infrastructure.queues import get_queue
        from infrastructure.queues.embedded import EmbeddedQueue

        queue = get_queue()  # opens and migrates the database: fail now, not per message
        if not isinstance(queue, EmbeddedQueue):
            raise LocalHostError(f"the process's queue is a {type(queue).__name__}; the "
                                 "local host drives only the EmbeddedQueue")
        self.queue = queue
        self._renewer = LockRenewer(queue, self._stopped, self.max_lock_renewal)
        self._renewer.start()
        for spec in self.of_type(SERVICE_BUS_TRIGGER):
            wakeup = Wakeup()
            self._wakeups.append(wakeup)
            waker = QueueWaker(spec.queue_name, queue.database.conninfo, wakeup, self._stopped)
            waker.start()
            self._support.append(waker)
            for index in range(self.concurrency(spec)):
                worker = QueueWorker(spec, index, queue, wakeup, self._renewer, self._stopping)
                worker.start()
                self._workers.append(worker)

    def _print_banner(self) -> None:
        out = self.out or sys.stdout
        lines = ["", "Functions:", ""]
        for spec in self.functions:
            if spec.trigger_type == HTTP_TRIGGER:
                methods = ",".join(spec.methods or ("ANY",))
                lines.append(f"\t{spec.name}: [{methods}] {self.url}/{ROUTE_PREFIX}/"
                             f"{spec.route}")
            elif spec.trigger_type == SERVICE_BUS_TRIGGER:
                batch = (", batches" if spec.binding.get("cardinality") == "many" else "")
                lines.append(f"\t{spec.name}: serviceBusTrigger on queue '{spec.queue_name}' "
                             f"(embedded queue, {self.concurrency(spec)} at a time{batch})")
            elif spec.trigger_type == TIMER_TRIGGER:
                startup = ", runOnStartup" if spec.run_on_startup else ""
                lines.append(f"\t{spec.name}: timerTrigger '{spec.schedule}' (UTC{startup})")
            else:
                lines.append(f"\t{spec.name}: {spec.trigger_type} (not run locally)")
            lines.append("")
        for spec in self.disabled:
            lines.append(f"\t{spec.name}: disabled (AzureWebJobs.{spec.name}.Disabled)")
            lines.append("")
        if self.keys_checked:
            lines.append("Function keys are checked (LOCAL_CHECK_KEYS): x-functions-key or "
                         "?code= with LOCAL_FUNCTION_KEY or LOCAL_MASTER_KEY.")
        else:
            lines.append("Function-level auth keys are not enforced by the local host "
                         "(as with func start; LOCAL_CHECK_KEYS=true checks them).")
        lines.append(f"Listening on {self.url} (loopback only). Ctrl+C to stop.")
        print("\n".join(lines), file=out, flush=True)

    # -- stop -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop accepting requests, let in-flight messages finish (bounded), close the
        database pool if this host owns it. Safe to call twice."""
        if self._stopped.is_set():
            return
        if self.http is not None:
            self.http.stop()
        self._stopping.set()
        for wakeup in self._wakeups:
            wakeup.notify()
        deadline = time.monotonic() + self.stop_timeout
        for thread in [*self._workers, *self._timers]:
            thread.join(max(deadline - time.monotonic(), 0.0))
        busy = [w for w in self._workers if w.is_alive()]
        for worker in busy:
            message = worker.current
            logger.warning("%s still running after %.0f s%s; its lock will lapse and it will "
                           "be delivered again", worker.name, self.stop_timeout,
                           f" (message {message.message_id})" if message else "")
        self._stopped.set()
        if self._renewer is not None:
            self._renewer.wake()
            self._renewer.join(2.0)
        for thread in self._support:
            thread.join(2.0)
        if self.close_database:
            from infrastructure.db import set_database
            from infrastructure.queues import set_queue

            set_queue(None)
            set_database(None)
        logger.info("local host stopped")

    def __enter__(self) -> "LocalHost":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
