"""What runs beside the hosts during a fault scenario, each in a thread of the test
process: the sweeper (the host's timer runs it only once a minute), a monitor checking the
continuous invariants, a killer following a kill plan, and a duplicator delivering
messages twice. Every loop is bounded and stops on close(); errors are collected, never
swallowed."""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Optional

import psycopg
from psycopg.rows import dict_row

from config import JOBS_QUEUE, TASKS_QUEUE
from core.sweeper import Sweeper

from .cluster import HostCluster
from .invariants import Snapshot, continuous_violations
from .probes import DUPLICATOR_APP


class Loop(threading.Thread):
    """Calls step() every interval seconds until stopped; records what step() raises."""

    def __init__(self, name: str, interval: float, step: Callable[[], Any]):
        super().__init__(name=name, daemon=True)
        self.interval, self.step = interval, step
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.runs = 0

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self.step()
                self.runs += 1
            except Exception:
                self.errors.append(traceback.format_exc(limit=8))
                if len(self.errors) > 20:
                    return

    def stop(self) -> None:
        self.stopping.set()
        if self.ident is not None:  # started
            self.join(30)


class SweeperLoop(Loop):
    """Sweeps every interval; what a sweep step logs as an error (the sweeper goes on
    after a failing step) counts as an error of the loop."""

    def __init__(self, machine: Any, interval: float = 0.3):
        self.sweeper = Sweeper(machine)
        self.totals: dict[str, int] = {}
        super().__init__("sweeper", interval, self._sweep)
        self.log = _ErrorLog(self.errors)
        logging.getLogger("core.sweeper").addHandler(self.log)

    def _sweep(self) -> None:
        for kind, count in self.sweeper.sweep().items():
            self.totals[kind] = self.totals.get(kind, 0) + count

    def stop(self) -> None:
        super().stop()
        logging.getLogger("core.sweeper").removeHandler(self.log)


class _ErrorLog(logging.Handler):
    def __init__(self, into: list[str]):
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(f"logged: {record.getMessage()}"
                         + (f"\n{logging.Formatter().formatException(record.exc_info)}"
                            if record.exc_info else ""))


class Monitor(Loop):
    """The continuous invariants, on a consistent snapshot every interval."""

    def __init__(self, database: Any, interval: float = 0.25):
        self.database = database
        self.violations: list[str] = []
        super().__init__("monitor", interval, self._check)

    def _check(self) -> None:
        found = continuous_violations(Snapshot.take(self.database))
        if found and len(self.violations) < 50:
            self.violations.append(f"at {time.strftime('%X')}: " + "; ".join(found[:5]))


@dataclass(frozen=True)
class Kill:
    """SIGKILL host `host` (-1: every host) `at` seconds in (or at the first stage close
    after that moment), keep it down `down_for` seconds, then start it again."""

    at: float
    host: int
    down_for: float
    on_stage_close: bool = False


class Killer(threading.Thread):
    def __init__(self, cluster: HostCluster, database: Any, plan: list[Kill]):
        super().__init__(name="killer", daemon=True)
        self.cluster, self.database = cluster, database
        self.plan = sorted(plan, key=lambda k: k.at)
        self.errors: list[str] = []
        self.done: list[str] = []
        self.stopping = threading.Event()

    def _closed_stages(self) -> int:
        with self.database.connection() as conn:
            return conn.execute("SELECT count(*)::int AS n FROM app.job_stages"
                                " WHERE completed_at IS NOT NULL").fetchone()["n"]

    def run(self) -> None:
        start = time.monotonic()
        try:
            for kill in self.plan:
                if self.stopping.wait(max(start + kill.at - time.monotonic(), 0)):
                    return
                what = "at once"
                if kill.on_stage_close:
                    what = "at a stage close"
                    seen, deadline = self._closed_stages(), time.monotonic() + 5
                    while self._closed_stages() == seen and time.monotonic() < deadline:
                        time.sleep(0.005)
                killed = (self.cluster.kill_all() if kill.host < 0
                          else int(self.cluster.kill(kill.host)))
                self.done.append(f"{time.monotonic() - start:.2f}s: killed {killed} "
                                 f"({'all' if kill.host < 0 else kill.host}) {what}")
                if self.stopping.wait(kill.down_for):
                    return
                self.cluster.start()
        except Exception:
            self.errors.append(traceback.format_exc(limit=8))

    def finish(self, timeout: float) -> None:
        self.join(timeout)
        if self.is_alive():
            self.stopping.set()
            self.join(30)
            self.errors.append(f"the kill plan did not finish within {timeout} s")


POISON = {
    "not json": lambda: b"{ this is not json",
    "bad version": lambda: json.dumps({"version": 99, "job_id": "x", "stage": 1}).encode(),
    "unknown job": lambda: json.dumps({"version": 1, "job_id": "0" * 64, "stage": 1,
                                       "attempt": 1}).encode(),
    "unknown task": lambda: json.dumps({"version": 1, "job_id": "0" * 64, "stage": 1,
                                        "attempt": 1, "task_id": "no-such-task",
                                        "retry": 0}).encode(),
}


class Duplicator:
    """Delivers messages twice, through a connection of its own (its sends are logged as
    DUPLICATOR_APP, so invariants tell them from the engine's): copies of messages now in
    the queue (a duplicate arriving while the first is being handled), copies of messages
    sent long ago (arriving after their work was committed), and poison messages."""

    def __init__(self, database_url: str, injected: Optional[set[str]] = None,
                 poison_ids: Optional[list[str]] = None):
        self.conn = psycopg.connect(database_url, autocommit=True, row_factory=dict_row,
                                    application_name=DUPLICATOR_APP)
        # Shared with the world when given: ids injected in earlier scenarios stay known.
        self.injected: set[str] = injected if injected is not None else set()
        self.poison_ids: list[str] = poison_ids if poison_ids is not None else []
        self.copies = 0
        self._lock = threading.Lock()

    def copy_live(self, fraction: float, limit: int = 40) -> int:
        """Copy a random share of the live messages, keeping each one's time (a scheduled
        retry is never delivered early: Service Bus would not)."""
        if fraction <= 0:
            return 0
        with self._lock:
            rows = self.conn.execute(
                "INSERT INTO app.queue_messages (queue_name, message_id, correlation_id, body,"
                " visible_at)"
                " SELECT queue_name, message_id, correlation_id, body, visible_at"
                " FROM app.queue_messages WHERE NOT dead_lettered AND random() < %s"
                " ORDER BY id LIMIT %s RETURNING message_id",
                (fraction, limit)).fetchall()
        self.injected.update(r["message_id"] for r in rows)
        self.copies += len(rows)
        return len(rows)

    def replay_sent(self, fraction: float, limit: int = 400) -> int:
        """Deliver again a random share of every message the engine ever sent."""
        if fraction <= 0:
            return 0
        with self._lock:
            rows = self.conn.execute(
                "INSERT INTO app.queue_messages (queue_name, message_id, body)"
                " SELECT queue_name, message_id, body FROM public.faults_sent"
                " WHERE app <> %s AND random() < %s ORDER BY id LIMIT %s"
                " RETURNING message_id",
                (DUPLICATOR_APP, fraction, limit)).fetchall()
        self.injected.update(r["message_id"] for r in rows)
        self.copies += len(rows)
        return len(rows)

    def poison(self, kinds: list[str]) -> list[str]:
        ids = []
        for kind in kinds:
            message_id = f"poison-{kind.replace(' ', '-')}-{uuid.uuid4().hex[:8]}"
            queue = JOBS_QUEUE if kind in ("unknown job", "bad version") else TASKS_QUEUE
            with self._lock:
                self.conn.execute(
                    "INSERT INTO app.queue_messages (queue_name, message_id, body)"
                    " VALUES (%s, %s, %s)", (queue, message_id, POISON[kind]()))
            ids.append(message_id)
        self.poison_ids += ids
        return ids

    def close(self) -> None:
        self.conn.close()


class DuplicatorLoop(Loop):
    def __init__(self, duplicator: Duplicator, fraction: float, rounds: int,
                 interval: float = 0.2):
        self.duplicator, self.fraction, self.rounds = duplicator, fraction, rounds
        super().__init__("duplicator", interval, self._copy)

    def _copy(self) -> None:
        if self.runs >= self.rounds:
            self.stopping.set()
            return
        self.duplicator.copy_live(self.fraction)


def stop_all(loops: list[Optional[Loop]]) -> None:
    for loop in loops:
        if loop is not None:
            loop.stop()
