"""FaultWorld: one fresh database with its probes, the hosts that run against it, and the
test process's own sweeper and monitor; wait_quiet() and check() end every scenario."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Optional

from core.machine import CoreMachine
from jobs import ALL_JOBS
from services import ALL_HANDLERS

from .chaos import Monitor, SweeperLoop, stop_all
from .cluster import HostCluster
from .invariants import (
    TOLERATE_ZOMBIE_TASKS, JobExpectation, Snapshot, final_violations, zombie_tasks,
)
from .probes import Probes

# The task queue has two triggers (one message, or a batch); hosts of a cluster take
# turns: each setting disables the other one (AzureWebJobs.<function>.Disabled).
TASK_TRIGGER_MODES = (
    {"AzureWebJobs.process_task_batch.Disabled": "true"},
    {"AzureWebJobs.process_task_message.Disabled": "true"},
    {},
)


class FaultWorld:
    def __init__(self, database_url: str, database: Any, log_dir: Path):
        self.database_url, self.db, self.log_dir = database_url, database, log_dir
        self.probes = Probes(database)
        self.probes.install()
        self.machine = CoreMachine(all_jobs=ALL_JOBS, all_handlers=ALL_HANDLERS)
        self.cluster: Optional[HostCluster] = None
        self.sweeper: Optional[SweeperLoop] = None
        self.monitor: Optional[Monitor] = None
        self.zombies_seen: set[str] = set()
        # Every message a scenario injected (copies, replays, poison), over all scenarios.
        self.injected_ids: set[str] = set()
        self.poison_ids: list[str] = []

    def hosts(self, size: int, mixed_triggers: bool = False, **env: str) -> HostCluster:
        """Start `size` hosts; mixed_triggers: each runs another task trigger."""
        self.cluster = HostCluster(self.database_url, size, self.log_dir / "hosts", env)
        if mixed_triggers:
            self.cluster.per_host_env = [TASK_TRIGGER_MODES[i % 3] for i in range(size)]
        return self.cluster.start()

    def start_sweeper(self, interval: float = 0.3) -> SweeperLoop:
        self.sweeper = SweeperLoop(self.machine, interval)
        self.sweeper.start()
        return self.sweeper

    def start_monitor(self, interval: float = 0.25) -> Monitor:
        self.monitor = Monitor(self.db, interval)
        self.monitor.start()
        return self.monitor

    # -- waiting ------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        with self.db.connection() as conn:
            return conn.execute(
                "SELECT"
                " (SELECT count(*) FROM app.jobs WHERE status IN ('queued', 'processing'))"
                "  ::int AS active_jobs,"
                " (SELECT count(*) FROM app.queue_messages WHERE NOT dead_lettered)::int"
                "  AS messages,"
                " (SELECT count(*) FROM app.outbox)::int AS outbox,"
                " (SELECT count(*) FROM app.tasks WHERE status = 'processing'"
                "  AND lease_expires_at >= now())::int AS running_tasks,"
                # a task of an ended job whose worker died: the next sweep cancels it, so
                # wait for that sweep (a task it never cancels makes wait_quiet time out)
                " (SELECT count(*) FROM app.tasks t JOIN app.jobs j"
                "  ON j.job_id = t.parent_job_id WHERE t.status = 'processing'"
                "  AND j.status NOT IN ('queued', 'processing'))::int AS orphan_tasks"
            ).fetchone()

    def wait_quiet(self, timeout: float = 60.0) -> Snapshot:
        """Until every job has ended, both queues and the outbox are empty and no task
        runs under a live lease; returns the full snapshot then."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.counts()
            if not any(counts.values()):
                return Snapshot.take(self.db, full=True)
            if time.monotonic() > deadline:
                raise AssertionError(f"not quiet after {timeout} s: {counts}\n"
                                     f"{self.report()}")
            time.sleep(0.1)

    def wait_for(self, sql: str, params: tuple = (), timeout: float = 30.0,
                 what: str = "") -> dict:
        """Poll until the query returns a row; that row."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.db.connection() as conn:
                row = conn.execute(sql, params).fetchone()
            if row:
                return row
            time.sleep(0.01)
        raise AssertionError(f"timed out after {timeout} s waiting for {what or sql}\n"
                             f"{self.report()}")

    # -- checking -----------------------------------------------------------------------
    def check(self, snap: Optional[Snapshot] = None, expected: Iterable[JobExpectation] = (),
              poison_ids: Iterable[str] = (), injected_ids: Iterable[str] = (),
              exact_job_messages: bool = True) -> Snapshot:
        """Every final invariant, plus whatever the background loops recorded."""
        snap = snap or self.wait_quiet()
        found = final_violations(snap, expected, poison_ids, injected_ids, exact_job_messages)
        self.zombies_seen |= {t["task_id"] for t in zombie_tasks(snap)}
        for loop in (self.sweeper, self.monitor):
            if loop is not None:
                found += [f"{loop.name}: {e}" for e in (getattr(loop, "violations", [])
                                                        + loop.errors)]
        assert not found, ("invariants violated:\n- " + "\n- ".join(found[:40])
                           + f"\n{self.report()}")
        if not TOLERATE_ZOMBIE_TASKS:
            assert not self.zombies_seen
        return snap

    def report(self) -> str:
        parts = []
        if self.sweeper is not None:
            parts.append(f"sweeper: {self.sweeper.totals}")
        if self.cluster is not None:
            parts.append(f"kills: {self.cluster.kills}\n{self.cluster.logs()}")
        return "\n".join(parts)

    def close(self) -> None:
        stop_all([self.sweeper, self.monitor])
        if self.cluster is not None:
            self.cluster.close()
