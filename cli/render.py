"""What the CLI shows a person: rich tables of jobs and tasks, a job's status, and the live
progress of a job being watched (plain lines when the output is not a terminal)."""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

STATUS_STYLES = {
    "queued": "cyan", "processing": "yellow", "completed": "green", "failed": "red",
    "completed_with_errors": "magenta", "cancelled": "bright_black",
    "pending": "cyan", "running": "yellow", "done": "green", "not run": "bright_black",
}


def styled(status: Optional[str]) -> Text:
    return Text(str(status), style=STATUS_STYLES.get(str(status), ""))


def when(timestamp: Optional[str]) -> str:
    """2026-01-31T12:00:00.123456+00:00 -> 2026-01-31 12:00:00Z; None -> -."""
    if not timestamp:
        return "-"
    text = timestamp.replace("T", " ")
    for zone in ("+00:00", "Z"):
        if text.endswith(zone):
            text = text[: -len(zone)]
            return text.split(".")[0] + "Z"
    return text.split(".")[0]


def seconds(value: Optional[float]) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(round(value)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def print_json(console: Console, data: Any) -> None:
    """Plain JSON text (never wrapped or coloured), so it parses whatever the terminal."""
    console.file.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    console.file.flush()


def done_count(stage: dict[str, Any]) -> int:
    return stage.get("completed", 0) + stage.get("failed", 0) + stage.get("cancelled", 0)


# -- submit -------------------------------------------------------------------------------
def submitted(console: Console, answer: dict[str, Any]) -> None:
    how = ("existing job (the same parameters)" if answer.get("idempotent")
           else "new job" if answer.get("attempt", 1) == 1
           else f"new attempt {answer.get('attempt')}")
    console.print(f"submitted {answer.get('job_type')}: job {answer.get('job_id')}",
                  highlight=False, soft_wrap=True)
    line = Text(f"{how}, status ")
    line.append_text(styled(answer.get("status")))
    console.print(line, soft_wrap=True)


# -- status -------------------------------------------------------------------------------
def stage_table(stages: Iterable[dict[str, Any]], with_state: bool = True) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("stage", "name") + (("state",) if with_state else ()) + (
            "total", "queued", "running", "completed", "failed", "cancelled"):
        table.add_column(name, justify="right" if name not in ("name", "state") else "left")
    if with_state:
        table.add_column("duration", justify="right")
    for s in stages:
        row = [str(s.get("stage")), str(s.get("name") or "")]
        if with_state:
            row.append(styled(s.get("state")))
        row += [str(s.get(k, 0)) for k in
                ("total", "queued", "processing", "completed", "failed", "cancelled")]
        if with_state:
            row.append(seconds(s.get("duration_seconds")))
        table.add_row(*row)
    return table


def job_status(console: Console, doc: dict[str, Any]) -> None:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(no_wrap=True)
    facts.add_row("job", doc.get("job_id", ""))
    facts.add_row("type", doc.get("job_type", ""))
    facts.add_row("status", styled(doc.get("status")))
    facts.add_row("stage", f"{doc.get('stage')} of {doc.get('total_stages')}"
                           f"   attempt {doc.get('attempt', 1)}")
    facts.add_row("parameters", json.dumps(doc.get("parameters", {}), ensure_ascii=False))
    facts.add_row("created", when(doc.get("created_at")))
    facts.add_row("started", when(doc.get("started_at")))
    facts.add_row("finished", when(doc.get("finished_at")))
    facts.add_row("duration", seconds(doc.get("duration_seconds")))
    console.print(facts)
    if doc.get("stages"):
        console.print()
        console.print(stage_table(doc["stages"]))
    ending(console, doc, heading=False)


def ending(console: Console, doc: dict[str, Any], heading: bool = True) -> None:
    """A finished job's outcome: its result, or its error (and its cleanup)."""
    if heading:
        line = Text(f"job {doc.get('job_id')} ")
        line.append_text(styled(doc.get("status")))
        if doc.get("duration_seconds") is not None:
            line.append(f" in {seconds(doc.get('duration_seconds'))}")
        console.print(line, soft_wrap=True)
    if doc.get("error_details"):
        console.print()
        console.print(Text(f"error: {doc['error_details']}", style="red"), soft_wrap=True)
    if doc.get("cleanup"):
        console.print(f"cleanup: {json.dumps(doc['cleanup'], ensure_ascii=False)}",
                      highlight=False, soft_wrap=True, markup=False)
    if doc.get("result_data") is not None:
        console.print()
        console.print("result_data:", highlight=False)
        print_json(console, doc["result_data"])


# -- list, summary, tasks -----------------------------------------------------------------
# Narrower than this, tables show a job id by its first characters (which every command
# takes); a pipe (250 columns) or --json shows it whole.
FULL_IDS_WIDTH = 200
SHORT_ID = 16


def short_id(job_id: str, width: int) -> str:
    return job_id if width >= FULL_IDS_WIDTH else job_id[:SHORT_ID]


def short_task_id(task_id: str, width: int) -> str:
    """job id + "-s1-t0": the job's part shortened as short_id does."""
    if width >= FULL_IDS_WIDTH or len(task_id) <= 64:
        return task_id
    return task_id[:SHORT_ID] + "…" + task_id[64:]


def jobs_table(rows: list[dict[str, Any]], width: int = FULL_IDS_WIDTH) -> Table:
    table = Table(header_style="bold")
    table.add_column("job_id", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("stage", justify="right", no_wrap=True)
    table.add_column("tasks", justify="right", no_wrap=True)
    table.add_column("created", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("error", overflow="fold", min_width=24)
    for row in rows:
        stages = row.get("stages") or []
        total = sum(s.get("total", 0) for s in stages)
        table.add_row(short_id(row.get("job_id", ""), width), row.get("job_type"),
                      styled(row.get("status")),
                      f"{row.get('stage')}/{row.get('total_stages')}",
                      f"{sum(done_count(s) for s in stages)}/{total}",
                      when(row.get("created_at")), seconds(row.get("duration_seconds")),
                      row.get("error") or "")
    return table


def tasks_table(rows: list[dict[str, Any]], include: Iterable[str] = (),
                width: int = FULL_IDS_WIDTH) -> Table:
    table = Table(header_style="bold")
    table.add_column("stage", justify="right", no_wrap=True)
    table.add_column("index", justify="right", no_wrap=True)
    table.add_column("task_id", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("retries", justify="right", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("error", overflow="fold", min_width=24)
    include = list(include)
    for name in include:
        table.add_column(name, overflow="fold")
    for row in rows:
        cells = [str(row.get("stage")), str(row.get("task_index")),
                 short_task_id(row.get("task_id", ""), width),
                 row.get("task_type"), styled(row.get("status")), str(row.get("retries", 0)),
                 seconds(row.get("duration_seconds")), row.get("error") or ""]
        cells += [json.dumps(row.get(name), ensure_ascii=False) for name in include]
        table.add_row(*cells)
    return table


def summary_table(doc: dict[str, Any]) -> Table:
    table = Table(header_style="bold")
    table.add_column("jobs")
    table.add_column("count", justify="right")
    for status, count in (doc.get("by_status") or {}).items():
        table.add_row(styled(status), str(count))
    table.add_section()
    for job_type, count in (doc.get("by_job_type") or {}).items():
        table.add_row(job_type, str(count))
    table.add_section()
    table.add_row(Text("total", style="bold"), str(doc.get("total", 0)))
    return table


# -- watch --------------------------------------------------------------------------------
def stage_detail(stage: dict[str, Any]) -> str:
    state = stage.get("state", "pending")
    if not stage.get("total"):
        return state
    return (f"{state}  queued {stage.get('queued', 0)}  running {stage.get('processing', 0)}"
            f"  failed {stage.get('failed', 0)}"
            + (f"  cancelled {stage['cancelled']}" if stage.get("cancelled") else ""))


def plain_line(doc: dict[str, Any]) -> str:
    parts = [f"stage {s.get('stage')} {s.get('name') or ''}: {done_count(s)}/"
             f"{s.get('total', 0)} done ({stage_detail(s)})" for s in doc.get("stages", [])]
    return f"{doc.get('status')}: " + "; ".join(parts)


class Watcher:
    """Shows each poll of a job's status: on a terminal a live progress bar per stage
    (tasks done of the stage's total), else a plain line whenever something changed."""

    def __init__(self, console: Console, job_id: str):
        self.console = console
        self.job_id = job_id
        self.live_mode = console.is_terminal and not console.is_dumb_terminal
        self.last_line: Optional[str] = None
        self.progress: Optional[Progress] = None
        self.live: Optional[Live] = None
        self.bars: dict[int, Any] = {}
        self.header = Text()

    def __enter__(self) -> "Watcher":
        if self.live_mode:
            self.progress = Progress(
                TextColumn("  stage {task.fields[stage]} {task.fields[name]:<10}"),
                BarColumn(bar_width=30),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                console=self.console, auto_refresh=False)
            # Redrawn when a poll shows a change, not on a timer: little output, so a
            # terminal's reader that drains it late never blocks the command.
            self.live = Live(Group(self.header, self.progress), console=self.console,
                             auto_refresh=False, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def show(self, doc: dict[str, Any]) -> None:
        if not self.live_mode:
            line = plain_line(doc)
            if line != self.last_line:
                self.last_line = line
                self.console.print(line, highlight=False, soft_wrap=True, markup=False)
            return
        assert self.progress is not None and self.live is not None
        line = plain_line(doc)
        if line == self.last_line:
            return
        self.last_line = line
        self.header.plain = ""
        self.header.append(f"job {self.job_id} ({doc.get('job_type')}) ")
        self.header.append_text(styled(doc.get("status")))
        for stage in doc.get("stages", []):
            number = stage.get("stage")
            total = stage.get("total") or None  # not opened yet: no total to show
            fields = {"stage": number, "name": stage.get("name") or "",
                      "detail": stage_detail(stage)}
            if number not in self.bars:
                self.bars[number] = self.progress.add_task("", total=total, **fields)
            self.progress.update(self.bars[number], total=total,
                                 completed=done_count(stage), **fields)
        self.live.refresh()
