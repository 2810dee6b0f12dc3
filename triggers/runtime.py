"""The process's CoreMachine, built once from the explicit registries. Building it checks
the registries and touches no network: the database and queue open on first use."""

from __future__ import annotations

from core.machine import CoreMachine
from jobs import ALL_JOBS
from services import ALL_HANDLERS

core_machine = CoreMachine(all_jobs=ALL_JOBS, all_handlers=ALL_HANDLERS)
