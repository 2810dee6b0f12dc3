"""The database's invariants, checked on one consistent snapshot (a REPEATABLE READ
read-only transaction): while processes run and die (continuous) and once every job has
ended (final). Each check returns the violations it found, as sentences.

Stage counters, as the schema defines them: job_stages.pending counts the stage's tasks not
yet counted off; a completed or failed task is counted off exactly once, a cancelled one
never. So at every moment pending = #queued + #processing + #cancelled + #stored (tasks of a
stage opening in chunks, still in app.stage_plans) and failed = #failed, and a task counted twice (or not at all) shows up as a difference.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from .probes import DUPLICATOR_APP

ACTIVE = ("queued", "processing")
TERMINAL_JOB = ("completed", "failed", "completed_with_errors")

# A task whose worker died while a sibling failed its job was once left "processing" for
# ever (tests/integration/test_reliability_sweeper.py::test_a_lapsed_task_of_a_failed_job_
# is_not_left_processing). True would report such tasks apart and tolerate them.
TOLERATE_ZOMBIE_TASKS = False


@dataclass
class JobExpectation:
    """What the test knows of a job it submitted."""

    job_id: str
    params: dict[str, Any]
    attempts: int = 1

    @property
    def failure_rate(self) -> float:
        return float(self.params.get("failure_rate", 0.0))


@dataclass
class Snapshot:
    jobs: list[dict]
    tasks: list[dict]
    stages: list[dict]
    queue: list[dict]
    outbox: list[dict]
    dead_letters: list[dict] = field(default_factory=list)
    sent: list[dict] = field(default_factory=list)
    # (job_id, stage) -> tasks stored in app.stage_plans, not inserted yet (a stage that
    # opens in chunks: its pending count includes them)
    stored: dict = field(default_factory=dict)

    @classmethod
    def take(cls, database, full: bool = False) -> "Snapshot":
        with database.connection() as conn:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                return cls.read(conn, full)

    @classmethod
    def read(cls, conn, full: bool = False) -> "Snapshot":
        """Read in the caller's transaction (take() makes it one consistent snapshot)."""
        task_cols = ("t.task_id, t.parent_job_id, t.stage, t.task_index, t.status, "
                     "t.retry_count, t.lease_expires_at < now() AS lapsed")
        if full:
            task_cols += ", t.result_data, t.error_details, t.task_type"
        q = conn.execute
        snap = cls(
            jobs=q("SELECT * FROM app.jobs ORDER BY job_id").fetchall(),
            tasks=q(f"SELECT {task_cols} FROM app.tasks t").fetchall(),
            stages=q("SELECT * FROM app.job_stages").fetchall(),
            queue=q("SELECT id, queue_name, message_id, dead_lettered, dead_letter_reason,"
                    " delivery_count, visible_at > now() AS held"
                    " FROM app.queue_messages").fetchall(),
            outbox=q("SELECT queue_name, message_id FROM app.outbox").fetchall(),
        )
        snap.stored = {(r["job_id"], r["stage"]): r["n"] for r in q(
            "SELECT job_id, stage, sum(jsonb_array_length(tasks))::int AS n"
            " FROM app.stage_plans GROUP BY job_id, stage").fetchall()}
        if full:
            snap.dead_letters = q("SELECT * FROM app.dead_letters").fetchall()
            snap.sent = q("SELECT queue_name, message_id, app FROM public.faults_sent"
                          ).fetchall()
        return snap

    # -- indexes ------------------------------------------------------------------------
    def tasks_of(self, job_id: str, stage: Optional[int] = None) -> list[dict]:
        return sorted((t for t in self.tasks if t["parent_job_id"] == job_id
                       and (stage is None or t["stage"] == stage)),
                      key=lambda t: (t["stage"], t["task_index"]))

    def stages_of(self, job_id: str) -> dict[int, dict]:
        return {s["stage"]: s for s in self.stages if s["job_id"] == job_id}


def job_message_id(job_id: str, attempt: int, stage: int) -> str:
    return f"{job_id}:a{attempt}:s{stage}"


def task_message_prefix(task_id: str, attempt: int) -> str:
    return f"{task_id}:a{attempt}:r"


def stage_count_violations(snap: Snapshot) -> list[str]:
    """Every stage's counters against its tasks; no task outside an opened stage."""
    found = []
    by_stage: dict[tuple, Counter] = defaultdict(Counter)
    for t in snap.tasks:
        by_stage[(t["parent_job_id"], t["stage"])][t["status"]] += 1
    opened = {(s["job_id"], s["stage"]) for s in snap.stages}
    for key in set(by_stage) - opened:
        found.append(f"job {key[0][:12]} has stage {key[1]} tasks but no job_stages row")
    for s in snap.stages:
        c = by_stage.get((s["job_id"], s["stage"]), Counter())
        counted_off = c["completed"] + c["failed"]
        stored = snap.stored.get((s["job_id"], s["stage"]), 0)
        if (sum(c.values()) + stored, s["task_count"] - s["pending"], s["failed"]) != (
                s["task_count"], counted_off, c["failed"]):
            found.append(
                f"job {s['job_id'][:12]} stage {s['stage']}: task_count {s['task_count']} "
                f"pending {s['pending']} failed {s['failed']}, but its tasks are {dict(c)} "
                "(a task counted off twice, or never)")
    return found


def continuous_violations(snap: Snapshot) -> list[str]:
    """What must hold at every moment, however processes die: no active job waits for a
    message that does not exist, and every counter matches its tasks."""
    found = stage_count_violations(snap)
    messages = {m["message_id"] for m in snap.queue if not m["dead_lettered"]}
    messages |= {m["message_id"] for m in snap.outbox}
    any_message = messages | {m["message_id"] for m in snap.queue}
    task_prefixes = {m.rsplit(":r", 1)[0] + ":r" for m in any_message}
    for job in snap.jobs:
        if job["status"] not in ACTIVE:
            continue
        stages = snap.stages_of(job["job_id"])
        ahead = [s for s in stages if s > job["stage"]]
        if ahead:
            found.append(f"job {job['job_id'][:12]} at stage {job['stage']} has stage(s) "
                         f"{ahead} opened")
        if job["stage"] not in stages and \
                job_message_id(job["job_id"], job["attempt"], job["stage"]) not in messages:
            found.append(f"job {job['job_id'][:12]} waits for stage {job['stage']} to open, "
                         "but no live message will open it")
        closed = {str(s) for s, row in stages.items() if row["completed_at"] is not None}
        if closed != set(job["stage_results"]):
            found.append(f"job {job['job_id'][:12]}: closed stages {sorted(closed)} but "
                         f"stage_results {sorted(job['stage_results'])}")
        for t in snap.tasks_of(job["job_id"]):
            if t["status"] == "queued" and \
                    task_message_prefix(t["task_id"], job["attempt"]) not in task_prefixes:
                found.append(f"queued task {t['task_id'][-20:]} of an active job has no "
                             "message")
    return found


def zombie_tasks(snap: Snapshot) -> list[dict]:
    """Tasks still processing, with a lapsed lease, whose job has ended."""
    ended = {j["job_id"] for j in snap.jobs if j["status"] in TERMINAL_JOB}
    return [t for t in snap.tasks if t["status"] == "processing" and t["lapsed"]
            and t["parent_job_id"] in ended]


def final_violations(snap: Snapshot, expected: Iterable[JobExpectation] = (),
                     poison_ids: Iterable[str] = (), injected_ids: Iterable[str] = (),
                     exact_job_messages: bool = True) -> list[str]:
    """Once every job has ended and the queues are quiet."""
    found = stage_count_violations(snap)
    zombies = {t["task_id"] for t in zombie_tasks(snap)} if TOLERATE_ZOMBIE_TASKS else set()
    for job in snap.jobs:
        found += _job_violations(snap, job, zombies)
    found += _message_violations(snap, exact_job_messages)
    live = [m for m in snap.queue if not m["dead_lettered"]]
    if live:
        found.append(f"{len(live)} message(s) still in the queues: "
                     f"{[m['message_id'][-30:] for m in live[:5]]}")
    found += [f"dead-lettered message {m['message_id']} has no reason" for m in snap.queue
              if m["dead_lettered"] and not m["dead_letter_reason"]]
    if snap.outbox:
        found.append(f"{len(snap.outbox)} message(s) left in app.outbox")
    recorded = Counter(d["message_id"] for d in snap.dead_letters)
    found += [f"app.dead_letters row {d['id']} has no reason" for d in snap.dead_letters
              if not d["reason"]]
    found += [f"poison message {p} was not recorded in app.dead_letters"
              for p in poison_ids if p not in recorded]
    allowed = set(poison_ids) | set(injected_ids)
    found += [f"message {m} was dead-lettered, but only injected ones may be"
              for m in recorded if m not in allowed]
    by_id = {j["job_id"]: j for j in snap.jobs}
    for exp in expected:
        found += _expectation_violations(snap, by_id.get(exp.job_id), exp)
    return found


def _job_violations(snap: Snapshot, job: dict, zombies: set[str]) -> list[str]:
    jid, status = job["job_id"][:12], job["status"]
    tasks, stages = snap.tasks_of(job["job_id"]), snap.stages_of(job["job_id"])
    if status not in ("completed", "failed"):
        return [f"job {jid} is {status}, not completed or failed"]
    found = [f"job {jid} ({status}) has task {t['task_id'][-12:]} {t['status']}"
             for t in tasks if t["status"] in ACTIVE and t["task_id"] not in zombies]
    if any(s > job["stage"] for s in stages) or any(t["stage"] > job["stage"] for t in tasks):
        found.append(f"job {jid} has a stage past its stage {job['stage']}")
    if status == "failed":
        if not job["error_details"]:
            found.append(f"failed job {jid} has no error_details")
        missing = {str(s) for s in range(1, job["stage"])} - set(job["stage_results"])
        if missing:
            found.append(f"failed job {jid} lacks the summaries of passed stages {missing}")
        return found
    if job["stage"] != job["total_stages"] or set(stages) != set(
            range(1, job["total_stages"] + 1)):
        found.append(f"completed job {jid} stopped at stage {job['stage']}, stages "
                     f"{sorted(stages)}")
    found += [f"completed job {jid} has task {t['task_id'][-12:]} {t['status']}"
              for t in tasks if t["status"] != "completed"]
    for number, row in stages.items():
        summary = job["stage_results"].get(str(number))
        if row["completed_at"] is None or row["pending"] or row["failed"]:
            found.append(f"completed job {jid} stage {number}: {dict(row)}")
        if not summary or (summary["tasks"], summary["completed"], summary["failed"]) != (
                row["task_count"], row["task_count"], 0):
            found.append(f"completed job {jid} stage {number} summary {summary} does not "
                         f"count its {row['task_count']} tasks once each")
    if job["job_type"] == "hello_world":
        found += _hello_world_violations(job, tasks)
    return found


def _hello_world_violations(job: dict, tasks: list[dict]) -> list[str]:
    """Each result matches its task, stage 2 used its own stage 1 predecessor (lineage),
    and the job's result has n greetings and n replies, in order."""
    jid, n, message = job["job_id"][:12], job["parameters"]["n"], job["parameters"]["message"]
    greetings = [f"{message} from task {i}!" for i in range(n)]
    replies = [f"Replying to: {g}" for g in greetings]
    found = []
    for stage, key, want in ((1, "greeting", greetings), (2, "reply", replies)):
        got = [t for t in tasks if t["stage"] == stage]
        if [t["task_index"] for t in got] != list(range(n)):
            found.append(f"job {jid} stage {stage} has task indexes "
                         f"{[t['task_index'] for t in got]}, not 0..{n - 1}")
            continue
        for t in got:
            result = t.get("result_data") or {}
            if result.get(key) != want[t["task_index"]] or \
                    result.get("task_index") != t["task_index"]:
                found.append(f"job {jid} stage {stage} task {t['task_index']} result "
                             f"{result} is not its own")
    result = job["result_data"] or {}
    if result.get("greetings") != greetings or result.get("replies") != replies:
        found.append(f"job {jid} result_data does not hold its {n} greetings and replies")
    if result.get("tasks_total") != 2 * n:
        found.append(f"job {jid} finalized over {result.get('tasks_total')} tasks, not {2 * n}")
    return found


def _message_violations(snap: Snapshot, exact_job_messages: bool) -> list[str]:
    """From the log of sent messages: each stage of each attempt was opened by one job
    message (no stage advances twice); each task's first message was sent by a host once,
    and each of its retries had a message."""
    engine = [m for m in snap.sent if m["app"] != DUPLICATOR_APP]
    counts = Counter(m["message_id"] for m in engine if m["queue_name"] == "geospatial-jobs")
    by_host = Counter(m["message_id"] for m in engine if m["app"].startswith("faults-host"))
    found = []
    for job in snap.jobs:
        a, jid = job["attempt"], job["job_id"]
        opened = range(1, job["stage"] + 1)
        for stage in opened:
            n = counts.get(job_message_id(jid, a, stage), 0)
            if n == 0 or (exact_job_messages and n != 1):
                found.append(f"job {jid[:12]} attempt {a} stage {stage}: its job message "
                             f"was sent {n} times, not once")
        extra = [m for m in counts if m.startswith(f"{jid}:a{a}:s")
                 and int(m.rsplit(":s", 1)[1]) not in opened]
        if extra:
            found.append(f"job {jid[:12]}: messages for stages it never reached: {extra}")
    sent_ids = {m["message_id"] for m in engine}
    attempts = {j["job_id"]: j["attempt"] for j in snap.jobs}
    for t in snap.tasks:
        prefix = task_message_prefix(t["task_id"], attempts[t["parent_job_id"]])
        if by_host.get(prefix + "0", 0) > 1:
            found.append(f"task {t['task_id'][-12:]}: its first message was sent "
                         f"{by_host[prefix + '0']} times by hosts")
        missing = [r for r in range(t["retry_count"] + 1) if prefix + str(r) not in sent_ids]
        if missing:
            found.append(f"task {t['task_id'][-12:]} retry {missing} had no message")
    found += [f"message {m} was sent {n} times by hosts" for m, n in by_host.items()
              if n > 1 and ":r" in m]
    return found


def _expectation_violations(snap: Snapshot, job: Optional[dict],
                            exp: JobExpectation) -> list[str]:
    if job is None:
        return [f"submitted job {exp.job_id[:12]} is not in app.jobs"]
    jid = exp.job_id[:12]
    found = []
    if job["attempt"] != exp.attempts:
        found.append(f"job {jid} is at attempt {job['attempt']}, expected {exp.attempts}")
    if (job["parameters"]["n"], job["parameters"]["message"]) != (
            exp.params["n"], exp.params["message"]):
        found.append(f"job {jid} parameters {job['parameters']} are not the submitted ones")
    if job["status"] == "failed":
        error = job["error_details"] or ""
        # Without failure_rate only lost workers (retries used up by kills) may fail it.
        causes = ["WorkerLostError"] + (["on purpose"] if exp.failure_rate > 0 else [])
        if not any(c in error for c in causes):
            found.append(f"job {jid} (failure_rate {exp.failure_rate}) failed for another "
                         f"reason: {error[:300]}")
    elif exp.failure_rate >= 1.0:
        found.append(f"job {jid} with failure_rate 1 is {job['status']}")
    return found
