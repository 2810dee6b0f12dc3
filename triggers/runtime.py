"""The process's CoreMachine, built once from the explicit registries. Building it checks
the registries, each stage's timeout against the invocation's, and the settings that
mirror host.json; it touches no network: the database and queue open on first use."""

from __future__ import annotations

from pathlib import Path

from config import get_settings
from core.machine import CoreMachine
from core.startup import check_function_timeout
from jobs import ALL_JOBS
from services import ALL_HANDLERS

HOST_JSON = Path(__file__).resolve().parents[1] / "host.json"

check_function_timeout(HOST_JSON, get_settings())
core_machine = CoreMachine(all_jobs=ALL_JOBS, all_handlers=ALL_HANDLERS)
