"""timerTrigger functions on their NCRONTAB schedule (sec min hour day month day-of-week,
in UTC as the Functions host defaults to), with runOnStartup."""

from __future__ import annotations

import logging
import threading
from datetime import date, datetime, time as dtime, timedelta, timezone
from typing import Optional

from azure.functions.timer import TimerRequest

from .functions import FunctionSpec, invoke

logger = logging.getLogger("local_host.timers")

_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31),
           ("month", 1, 12), ("day of week", 0, 7))
_SEARCH_DAYS = 366 * 8  # long enough for any schedule that fires at all (29 February)


def _parse_field(text: str, name: str, low: int, high: int) -> list[int]:
    values: set[int] = set()
    for part in text.split(","):
        try:
            base, _, step_text = part.partition("/")
            step = int(step_text) if step_text else 1
            if base == "*":
                start, end = low, high
            elif "-" in base:
                start, end = (int(x) for x in base.split("-", 1))
            else:
                start = int(base)
                end = high if step_text else start
        except ValueError:
            raise ValueError(f"{name} field '{text}': use *, */n, n, a-b or lists of "
                             "those") from None
        if not (low <= start <= end <= high) or step < 1:
            raise ValueError(f"{name} field '{text}' is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    if name == "day of week":
        values = {v % 7 for v in values}  # 7 is Sunday too
    return sorted(values)


class CronSchedule:
    def __init__(self, expression: str):
        fields = expression.split()
        if len(fields) != 6:
            raise ValueError(f"schedule '{expression}': NCRONTAB needs 6 fields "
                             "(second minute hour day month day-of-week)")
        self.expression = expression
        (self.seconds, self.minutes, self.hours, days, months, dows) = (
            _parse_field(text, *spec) for text, spec in zip(fields, _FIELDS))
        self.days, self.months, self.dows = set(days), set(months), set(dows)

    def _day_matches(self, day: date) -> bool:
        # NCrontab requires day-of-month and day-of-week both to match.
        return (day.month in self.months and day.day in self.days
                and (day.weekday() + 1) % 7 in self.dows)

    def next_after(self, after: datetime) -> datetime:
        start = after.astimezone(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
        day = start.date()
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                floor = (start.hour, start.minute, start.second) if day == start.date() \
                    else (0, 0, 0)
                for h in self.hours:
                    for m in self.minutes:
                        if (h, m, 59) < floor:
                            continue
                        for s in self.seconds:
                            if (h, m, s) >= floor:
                                return datetime.combine(day, dtime(h, m, s), timezone.utc)
            day += timedelta(days=1)
        raise ValueError(f"schedule '{self.expression}' never fires")


class TimerRunner(threading.Thread):
    def __init__(self, spec: FunctionSpec, stop: threading.Event):
        super().__init__(name=f"timer-{spec.name}", daemon=True)
        self.spec, self.stop_event = spec, stop
        self.schedule = CronSchedule(spec.schedule)
        self.last: Optional[datetime] = None

    def run(self) -> None:
        if self.spec.run_on_startup:
            self._fire(datetime.now(timezone.utc), past_due=False)
        while not self.stop_event.is_set():
            due = self.schedule.next_after(datetime.now(timezone.utc))
            if self.stop_event.wait((due - datetime.now(timezone.utc)).total_seconds()):
                return
            late = (datetime.now(timezone.utc) - due).total_seconds() > 1.0
            self._fire(due, past_due=late)

    def _fire(self, when: datetime, past_due: bool) -> None:
        following = self.schedule.next_after(when)
        request = TimerRequest(
            past_due=past_due,
            schedule_status={"Last": (self.last or when).isoformat(), "Next": following
                             .isoformat(), "LastUpdated": when.isoformat()},
            schedule={"AdjustForDST": False},
        )
        self.last = when
        try:
            invoke(self.spec, request, "Timer fired")
        except Exception:  # logged by invoke; the next occurrence still runs
            pass
