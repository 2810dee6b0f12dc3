"""Fixtures of the fault-injection suite: `world`, a fresh database with probes, the test
process set up with the suite's short timings (its sweeper uses them), and host processes
started on demand and always killed at teardown.

Hypothesis settings: `make test` runs a few derandomized examples (the same ones on every
run, so CI is reproducible); `make soak` sets FAULTS_SEED (a different seed each run, the
examples then vary) and may set FAULTS_EXAMPLES.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, seed, settings

from config import reset_settings

from .cluster import FAST_TIMINGS
from .probes import TEST_APP
from .world import FaultWorld


def fault_settings(examples: int):
    """Hypothesis settings for scenarios that run real processes in real time: no
    deadline, no shrinking (each example takes seconds), no example database."""
    chosen_seed = os.environ.get("FAULTS_SEED")
    count = int(os.environ.get("FAULTS_EXAMPLES", examples))
    configured = settings(
        max_examples=count, deadline=None, database=None, derandomize=chosen_seed is None,
        phases=[Phase.explicit, Phase.generate], report_multiple_bugs=False,
        print_blob=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )

    def apply(test):
        test = configured(test)
        return seed(int(chosen_seed))(test) if chosen_seed is not None else test
    return apply


@pytest.fixture
def world(request, monkeypatch, tmp_path, database_url):
    for name, value in FAST_TIMINGS.items():
        monkeypatch.setenv(name, value)
    # Names the test process's database sessions (its sweeper's sends, in the probes).
    monkeypatch.setenv("PGAPPNAME", TEST_APP)
    # The hosts share the session's Azurite rather than each starting one of its own.
    monkeypatch.setenv("STORAGE_CONNECTION_STRING",
                       request.getfixturevalue("azurite").connection_string)
    database = request.getfixturevalue("database")
    for name in ("TASK_RETRY_BASE_SECONDS", "TASK_RETRY_CAP_SECONDS"):  # `database` sets its own
        monkeypatch.setenv(name, FAST_TIMINGS[name])
    reset_settings()
    faults = FaultWorld(database_url, database, tmp_path)
    try:
        yield faults
    finally:
        faults.close()
