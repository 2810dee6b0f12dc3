"""Random faults (issue "Reliability", point 6 and Tests): three local hosts on one database
(each running a different task trigger), hello_world jobs submitted over HTTP, hosts
SIGKILLed at random moments (some at the instant a stage closes) and started again,
messages delivered twice while they are handled and again after everything finished,
poison messages, failed jobs resubmitted. The monitor checks the continuous invariants
throughout; after each scenario every final invariant is checked, then every message is
delivered again and nothing may change.

Hypothesis draws the scenarios: `make test` runs a few derandomized ones; `make soak` runs
the suite again and again with other seeds.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

import pytest
from hypothesis import example, given, strategies as st

from jobs.hello_world import HelloWorldJob

from .chaos import POISON, Duplicator, DuplicatorLoop, Kill, Killer, stop_all
from .conftest import fault_settings
from .invariants import JobExpectation, Snapshot

pytestmark = pytest.mark.faults

HOSTS = 3


@dataclass(frozen=True)
class JobPlan:
    n: int
    sleep_seconds: float
    failure_rate: float


@dataclass(frozen=True)
class Scenario:
    jobs: tuple[JobPlan, ...]
    kills: tuple[Kill, ...]
    duplicate_fraction: float
    replay_fraction: float
    poison: tuple[str, ...]
    resubmit_failed: bool
    seed: int


jobs = st.builds(JobPlan, n=st.integers(5, 30),
                 sleep_seconds=st.sampled_from([0.0, 0.02, 0.05, 0.1, 0.2, 0.3]),
                 failure_rate=st.sampled_from([0.0, 0.0, 0.3, 1.0]))
kills = st.builds(Kill, at=st.floats(0.1, 4.0).map(lambda x: round(x, 2)),
                  host=st.integers(-1, HOSTS - 1),
                  down_for=st.floats(0.0, 1.5).map(lambda x: round(x, 2)),
                  on_stage_close=st.booleans())
scenarios = st.builds(
    Scenario,
    jobs=st.lists(jobs, min_size=2, max_size=4).map(tuple),
    kills=st.lists(kills, min_size=1, max_size=4).map(tuple),
    duplicate_fraction=st.sampled_from([0.0, 0.1, 0.3]),
    replay_fraction=st.sampled_from([0.0, 0.3, 1.0]),
    poison=st.lists(st.sampled_from(sorted(POISON)), max_size=2).map(tuple),
    resubmit_failed=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)


@pytest.fixture
def running(world):
    world.hosts(HOSTS, mixed_triggers=True)
    world.start_sweeper()
    world.start_monitor()
    return world


def comparable(snap: Snapshot) -> tuple:
    """What a message delivered again after the end must not change."""
    jobs = [{k: j[k] for k in ("job_id", "status", "stage", "attempt", "stage_results",
                               "result_data", "error_details")} for j in snap.jobs]
    tasks = sorted((t["task_id"], t["status"], t["retry_count"], str(t["result_data"]))
                   for t in snap.tasks)
    stages = sorted((s["job_id"], s["stage"], s["task_count"], s["pending"], s["failed"],
                     s["completed_at"]) for s in snap.stages)
    return jobs, tasks, stages


def submit_all(world, plans: tuple[JobPlan, ...], rng: random.Random) -> list[JobExpectation]:
    expected = []
    for index, plan in enumerate(plans):
        params = {"n": plan.n, "message": f"faults {uuid.uuid4().hex[:8]} job {index}",
                  "sleep_seconds": plan.sleep_seconds, "failure_rate": plan.failure_rate}
        code, body = world.cluster.submit(params, prefer=rng.randrange(HOSTS))
        # 200: a host died after committing the job but before answering; the retry
        # found the same job.
        assert code in (200, 201), body
        validated = HelloWorldJob.validate_job_parameters(params)
        assert body["job_id"] == HelloWorldJob.generate_job_id(validated)
        expected.append(JobExpectation(body["job_id"], params))
    return expected


# Always run, whatever the seed: every kind of fault in one scenario.
EVERYTHING = Scenario(
    jobs=(JobPlan(20, 0.1, 0.0), JobPlan(12, 0.2, 0.3), JobPlan(8, 0.05, 1.0)),
    kills=(Kill(1.0, 0, 0.5), Kill(2.0, -1, 0.3, on_stage_close=True), Kill(3.5, 1, 0.2)),
    duplicate_fraction=0.3, replay_fraction=1.0, poison=tuple(sorted(POISON)),
    resubmit_failed=True, seed=7)


@fault_settings(examples=2)
@given(scenario=scenarios)
@example(scenario=EVERYTHING)
def test_random_kills_and_duplicates_leave_every_job_ended_and_counted_once(
        running, scenario):
    world, rng = running, random.Random(scenario.seed)
    duplicator = Duplicator(world.database_url, world.injected_ids, world.poison_ids)
    killer = Killer(world.cluster, world.db, list(scenario.kills))
    copier = DuplicatorLoop(duplicator, scenario.duplicate_fraction, rounds=15)
    try:
        # Given poison among the messages, hosts killed to plan, messages copied,
        duplicator.poison(list(scenario.poison))
        killer.start()
        copier.start()
        # When the jobs are submitted over HTTP and run through all that,
        expected = submit_all(world, scenario.jobs, rng)
        killer.finish(timeout=40)
        copier.stop()
        world.cluster.start()
        assert not killer.errors + copier.errors, killer.errors + copier.errors
        # Then every job ends and every invariant holds,
        allowed = (world.poison_ids, world.injected_ids)  # over every scenario so far
        world.check(world.wait_quiet(60), expected, *allowed)
        # And a failed job resubmitted runs again as a new attempt, to its end,
        reruns = 0
        if scenario.resubmit_failed:
            failed = {j["job_id"] for j in Snapshot.take(world.db).jobs
                      if j["status"] == "failed"}
            for exp in expected:
                if exp.job_id in failed:
                    code, body = world.cluster.submit(exp.params)
                    assert code == 201 and body["attempt"] == exp.attempts + 1, body
                    exp.attempts += 1
                    reruns += 1
            world.check(world.wait_quiet(60), expected, *allowed)
        # And every message delivered once more, long after, changes nothing.
        before = world.wait_quiet(10)
        duplicator.replay_sent(scenario.replay_fraction)
        after = world.check(world.wait_quiet(60), expected, *allowed)
        assert comparable(after) == comparable(before)
        outcomes = sorted(j["status"] for j in after.jobs if j["job_id"] in
                          {e.job_id for e in expected})
        print(f"scenario: {len(expected)} jobs {outcomes}; kills {killer.done}; "
              f"{duplicator.copies} copies; {len(scenario.poison)} poison; {reruns} reruns; "
              f"sweeper {world.sweeper.totals}; zombies {len(world.zombies_seen)}")
    finally:
        killer.stopping.set()
        if killer.is_alive():
            killer.join(30)
        stop_all([copier])
        duplicator.close()
