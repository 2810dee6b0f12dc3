"""The sweeper's timer trigger: every minute, re-drive what stopped processes left
between two steps (core/sweeper.py). Timer triggers need AzureWebJobsStorage in Azure."""

from __future__ import annotations

import azure.functions as func

from core.sweeper import Sweeper

from .runtime import core_machine

bp = func.Blueprint()


@bp.timer_trigger(schedule="0 */1 * * * *", arg_name="timer", run_on_startup=False,
                  use_monitor=True)
def sweep(timer: func.TimerRequest) -> None:
    Sweeper(core_machine).sweep()
