"""geojobs: the engine's HTTP API from the command line.

Exit codes: 0 done (a watched job completed); 1 a watched job ended failed, cancelled or
completed_with_errors; 2 a usage error; 3 the API answered with an error, or could not be
reached; 4 watch --timeout ran out before the job ended; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from dataclasses import dataclass
from typing import Annotated, Any, Iterator, Optional, Sequence, TextIO

import typer
from rich.console import Console
from rich.text import Text


from . import render
from .client import DEFAULT_URL, ApiError, Client, ConnectionFailed
from .params import (merge, parse_params, parse_value,  # noqa: F401 (tests import it)
                     read_params_file, split_values)
from .watching import EXIT_API, watch_job

URL_ENV = "GEOJOBS_URL"
KEY_ENV = "GEOJOBS_KEY"
HEX = re.compile(r"[0-9a-f]+")

app = typer.Typer(
    name="geojobs", no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False, rich_markup_mode=None,
    help="Submit, watch and find the engine's jobs over its HTTP API. Exit codes: 0 ok "
         "(a watched job completed); 1 a watched job failed, was cancelled or "
         "completed_with_errors; 2 usage error; 3 API error or API unreachable; "
         "4 watch --timeout ran out.",
    context_settings={"help_option_names": ["-h", "--help"]})

# The streams commands write to: the process's, or a caller's (run(argv, out=..., err=...)).
_streams: dict[str, Optional[TextIO]] = {"out": None, "err": None}


def _console(stream: TextIO) -> Console:
    terminal = stream.isatty() if hasattr(stream, "isatty") else False
    # Off a terminal, rich would wrap at 80 columns: tables of 64-character ids are wider.
    return Console(file=stream, width=None if terminal else 250, highlight=False,
                   soft_wrap=False)


@dataclass
class Config:
    url: str
    key: Optional[str]
    as_json: bool
    out: Console
    err: Console

    def client(self) -> Client:
        try:
            return Client(self.url, self.key)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--url") from None


# -- options every command takes (before or after the command's name) ---------------------
UrlOption = Annotated[Optional[str], typer.Option(
    "--url", metavar="URL", show_default=False,
    help=f"The API's base URL (default: ${URL_ENV}, else {DEFAULT_URL}, the local host).")]
KeyOption = Annotated[Optional[str], typer.Option(
    "--key", metavar="KEY", show_default=False,
    help=f"A function key, sent as x-functions-key (default: ${KEY_ENV}).")]
JsonOption = Annotated[bool, typer.Option(
    "--json", help="Print the API's JSON answer instead of tables.")]


@app.callback()
def _main(ctx: typer.Context,
          url: Annotated[str, typer.Option("--url", envvar=URL_ENV, metavar="URL",
                                           help="The API's base URL.")] = DEFAULT_URL,
          key: Annotated[Optional[str], typer.Option(
              "--key", envvar=KEY_ENV, metavar="KEY", show_default=False,
              help="A function key, sent as x-functions-key.")] = None,
          as_json: JsonOption = False) -> None:
    ctx.obj = Config(url=url, key=key, as_json=as_json,
                     out=_console(_streams["out"] or sys.stdout),
                     err=_console(_streams["err"] or sys.stderr))


def config(ctx: typer.Context, url: Optional[str], key: Optional[str],
           as_json: bool) -> Config:
    base: Config = ctx.obj
    return Config(url=url or base.url, key=key or base.key,
                  as_json=as_json or base.as_json, out=base.out, err=base.err)


# -- errors -------------------------------------------------------------------------------
def fail(cfg: Config, code: int, message: str) -> typer.Exit:
    cfg.err.print(Text(f"error: {message}"), soft_wrap=True)
    return typer.Exit(code)


@contextlib.contextmanager
def api_errors(cfg: Config) -> Iterator[None]:
    """An API error printed as the API said it (to stderr, no traceback), exit code 3."""
    try:
        yield
    except ApiError as exc:
        if cfg.as_json and exc.body is not None:
            cfg.err.file.write(json.dumps(exc.body, ensure_ascii=False) + "\n")
            cfg.err.file.flush()
            raise typer.Exit(EXIT_API) from None
        cfg.err.print(Text(f"error: {exc.message}"), soft_wrap=True)
        if isinstance(exc.body, dict):
            for name, value in exc.body.items():
                if name == "error" or value is None:
                    continue
                if isinstance(value, list):
                    value = ", ".join(str(v) for v in value)
                elif isinstance(value, dict):
                    value = json.dumps(value, ensure_ascii=False)
                cfg.err.print(Text(f"  {name}: {value}"), soft_wrap=True)
        path = exc.url.split("?")[0]
        cfg.err.print(Text(f"  (HTTP {exc.status} from {exc.method} {path})",
                           style="dim"), soft_wrap=True)
        raise typer.Exit(EXIT_API) from None
    except ConnectionFailed as exc:
        raise fail(cfg, EXIT_API, f"cannot reach the API at {exc.url}: {exc.reason} "
                                  f"(is the host running? set --url or ${URL_ENV})") from None


def resolve_id(cfg: Config, client: Client, job_id: str) -> str:
    """A full job id as given; a shorter hex prefix is the one job whose id starts so.
    A prefix no job has goes to the API as it is, so the API says what is wrong."""
    job_id = job_id.strip()
    if len(job_id) >= 64 or not HEX.fullmatch(job_id.lower()):
        return job_id
    page = client.list_jobs({"id_prefix": job_id.lower(), "limit": 2})
    ids = [row["job_id"] for row in page.get("jobs", [])]
    if len(ids) > 1:
        raise typer.BadParameter(f"{job_id} is the start of several job ids "
                                 f"({', '.join(ids)}, ...): give more of it",
                                 param_hint="ID")
    return ids[0] if ids else job_id


# -- watching -----------------------------------------------------------------------------
IntervalOption = Annotated[float, typer.Option(
    "--interval", min=0.05, help="Seconds between two polls of the job's status.")]
TimeoutOption = Annotated[Optional[float], typer.Option(
    "--timeout", min=0, show_default=False,
    help="Give up watching after this many seconds (exit code 4); default: no limit.")]


# -- commands -----------------------------------------------------------------------------
@app.command()
def submit(ctx: typer.Context,
           job_type: Annotated[str, typer.Argument(metavar="TYPE", help="The job type, e.g. hello_world.")],
           param: Annotated[Optional[list[str]], typer.Option(
               "--param", "-p", metavar="KEY=VALUE", show_default=False,
               help="A parameter (repeatable). VALUE is JSON when it parses (n=5, "
                    "flag=true, tags='[\"a\"]'), else text; a dotted KEY sets an object's "
                    "field (filter.prefix=2024/).")] = None,
           file: Annotated[Optional[str], typer.Option(
               "--file", "-f", metavar="PARAMS.JSON", show_default=False,
               help="A JSON object of parameters ('-': standard input); --param values "
                    "override its fields.")] = None,
           watch: Annotated[bool, typer.Option(
               "--watch", "-w", help="Then watch the job until it ends (exit code as "
                                     "watch's).")] = False,
           interval: IntervalOption = 0.5, timeout: TimeoutOption = None,
           url: UrlOption = None, key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Submit a job of TYPE: POST /api/jobs/submit/TYPE."""
    cfg = config(ctx, url, key, as_json)
    params = merge(read_params_file(file) if file else {}, parse_params(param or ()))
    client = cfg.client()
    with api_errors(cfg):
        answer = client.submit(job_type, params)
        if not watch:
            if cfg.as_json:
                render.print_json(cfg.out, answer)
            else:
                render.submitted(cfg.out, answer)
            return
        if not cfg.as_json:
            render.submitted(cfg.out, answer)
            cfg.out.print()
        code = watch_job(cfg, client, answer["job_id"], interval, timeout)
    raise typer.Exit(code)


@app.command()
def status(ctx: typer.Context,
           job_id: Annotated[str, typer.Argument(metavar="ID", help="A job id (or the start of one).")],
           url: UrlOption = None, key: KeyOption = None, as_json: JsonOption = False) -> None:
    """A job's status: GET /api/jobs/status/ID."""
    cfg = config(ctx, url, key, as_json)
    client = cfg.client()
    with api_errors(cfg):
        doc = client.status(resolve_id(cfg, client, job_id))
    if cfg.as_json:
        render.print_json(cfg.out, doc)
    else:
        render.job_status(cfg.out, doc)


@app.command()
def watch(ctx: typer.Context,
          job_id: Annotated[str, typer.Argument(metavar="ID", help="A job id (or the start of one).")],
          interval: IntervalOption = 0.5, timeout: TimeoutOption = None,
          url: UrlOption = None, key: KeyOption = None, as_json: JsonOption = False) -> None:
    """A live progress bar per stage until the job ends, then its result or error.
    Exit code 0 when it completed, 1 when it failed, was cancelled or
    completed_with_errors."""
    cfg = config(ctx, url, key, as_json)
    client = cfg.client()
    with api_errors(cfg):
        code = watch_job(cfg, client, resolve_id(cfg, client, job_id), interval, timeout)
    raise typer.Exit(code)


# Filters of the job list, the summary and the bulk actions.
StatusFilter = Annotated[Optional[list[str]], typer.Option(
    "--status", "-s", show_default=False,
    help="Jobs of this status (repeatable, or comma-separated).")]
TypeFilter = Annotated[Optional[list[str]], typer.Option(
    "--job-type", "-t", show_default=False,
    help="Jobs of this type (repeatable, or comma-separated).")]
CreatedAfter = Annotated[Optional[str], typer.Option(
    "--created-after", metavar="DATETIME", show_default=False,
    help="Created strictly after this ISO 8601 date-time (no zone: UTC).")]
CreatedBefore = Annotated[Optional[str], typer.Option(
    "--created-before", metavar="DATETIME", show_default=False,
    help="Created strictly before this ISO 8601 date-time.")]
UpdatedAfter = Annotated[Optional[str], typer.Option(
    "--updated-after", metavar="DATETIME", show_default=False,
    help="Last changed strictly after this ISO 8601 date-time.")]
IdPrefix = Annotated[Optional[str], typer.Option(
    "--id-prefix", metavar="HEX", show_default=False,
    help="Jobs whose id starts with these hex characters.")]
LimitOption = Annotated[Optional[int], typer.Option(
    "--limit", "-n", show_default=False, help="Rows per page (the API's default 50, "
                                              "at most 500).")]
TokenOption = Annotated[Optional[str], typer.Option(
    "--continuation-token", "--token", show_default=False,
    help="The next page: the token the previous page printed.")]
AllPages = Annotated[bool, typer.Option(
    "--all", "-a", help="Every page, following continuation tokens.")]


def job_filters(status_: Optional[list[str]], job_type: Optional[list[str]],
                created_after: Optional[str], created_before: Optional[str],
                updated_after: Optional[str], id_prefix: Optional[str]) -> dict[str, Any]:
    filters = {"status": split_values(status_), "job_type": split_values(job_type),
               "created_after": created_after, "created_before": created_before,
               "updated_after": updated_after, "id_prefix": id_prefix}
    return {k: v for k, v in filters.items() if v not in (None, [], "")}


def next_page_hint(cfg: Config, token: Optional[str], what: str) -> None:
    if token:
        cfg.out.print(Text(f"more {what}: the same command with --continuation-token "
                           f"{token}"), soft_wrap=True)


@app.command(name="list")
def list_jobs(ctx: typer.Context, status_: StatusFilter = None, job_type: TypeFilter = None,
              created_after: CreatedAfter = None, created_before: CreatedBefore = None,
              updated_after: UpdatedAfter = None, id_prefix: IdPrefix = None,
              limit: LimitOption = None, continuation_token: TokenOption = None,
              all_pages: AllPages = False,
              url: UrlOption = None, key: KeyOption = None, as_json: JsonOption = False
              ) -> None:
    """Jobs matching the filters, newest first: GET /api/jobs."""
    cfg = config(ctx, url, key, as_json)
    client = cfg.client()
    query: dict[str, Any] = job_filters(status_, job_type, created_after, created_before,
                                        updated_after, id_prefix)
    query.update({k: v for k, v in (("limit", limit),
                                    ("continuation_token", continuation_token)) if v})
    with api_errors(cfg):
        if all_pages:
            rows = [row for page in client.pages("jobs", query) for row in page["jobs"]]
            page = {"jobs": rows, "continuation_token": None}
        else:
            page = client.list_jobs(query)
    if cfg.as_json:
        render.print_json(cfg.out, page)
        return
    if not page["jobs"]:
        cfg.out.print("no jobs match")
    else:
        cfg.out.print(render.jobs_table(page["jobs"], cfg.out.width))
        cfg.out.print(f"{len(page['jobs'])} job(s)")
    next_page_hint(cfg, page.get("continuation_token"), "jobs")


@app.command()
def summary(ctx: typer.Context, status_: StatusFilter = None, job_type: TypeFilter = None,
            created_after: CreatedAfter = None, created_before: CreatedBefore = None,
            updated_after: UpdatedAfter = None, id_prefix: IdPrefix = None,
            url: UrlOption = None, key: KeyOption = None, as_json: JsonOption = False
            ) -> None:
    """Counts of the jobs matching the filters, by status and job type:
    GET /api/jobs/summary."""
    cfg = config(ctx, url, key, as_json)
    client = cfg.client()
    with api_errors(cfg):
        doc = client.summary(job_filters(status_, job_type, created_after, created_before,
                                         updated_after, id_prefix))
    if cfg.as_json:
        render.print_json(cfg.out, doc)
    else:
        cfg.out.print(render.summary_table(doc))


@app.command()
def tasks(ctx: typer.Context,
          job_id: Annotated[str, typer.Argument(metavar="ID", help="A job id (or the start of one).")],
          stage: Annotated[Optional[int], typer.Option(
              "--stage", show_default=False,
              help="Only this stage's tasks (0: a failed job's cleanup task).")] = None,
          status_: Annotated[Optional[list[str]], typer.Option(
              "--status", "-s", show_default=False,
              help="Tasks of this status (repeatable, or comma-separated).")] = None,
          include: Annotated[Optional[list[str]], typer.Option(
              "--include", "-i", show_default=False,
              help="Also each task's parameters and/or result (repeatable, or "
                   "comma-separated).")] = None,
          limit: LimitOption = None, continuation_token: TokenOption = None,
          all_pages: AllPages = False,
          url: UrlOption = None, key: KeyOption = None, as_json: JsonOption = False) -> None:
    """A job's tasks in stage and index order: GET /api/jobs/ID/tasks."""
    cfg = config(ctx, url, key, as_json)
    client = cfg.client()
    included = split_values(include)
    query = {"stage": stage, "status": split_values(status_), "include": included,
             "limit": limit, "continuation_token": continuation_token}
    query = {k: v for k, v in query.items() if v not in (None, [], "")}
    with api_errors(cfg):
        job_id = resolve_id(cfg, client, job_id)
        if all_pages:
            rows = [row for page in client.pages("tasks", query, job_id)
                    for row in page["tasks"]]
            page = {"job_id": job_id, "tasks": rows, "continuation_token": None}
        else:
            page = client.tasks(job_id, query)
    if cfg.as_json:
        render.print_json(cfg.out, page)
        return
    if not page["tasks"]:
        cfg.out.print("no tasks match")
    else:
        cfg.out.print(render.tasks_table(page["tasks"], included, cfg.out.width))
        cfg.out.print(f"{len(page['tasks'])} task(s) of job {page.get('job_id', job_id)}",
                      soft_wrap=True)
    next_page_hint(cfg, page.get("continuation_token"), "tasks")


# -- entry points -------------------------------------------------------------------------
def run(argv: Optional[Sequence[str]] = None, out: Optional[TextIO] = None,
        err: Optional[TextIO] = None) -> int:
    """The CLI on argv (default sys.argv[1:]), writing to out and err; its exit code."""
    _streams["out"], _streams["err"] = out, err
    command = typer.main.get_command(app)
    try:
        command.main(args=list(sys.argv[1:] if argv is None else argv),
                     prog_name="geojobs", standalone_mode=True)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        _streams["out"] = _streams["err"] = None
    return 0


def main() -> None:
    """The geojobs console script."""
    sys.exit(run())


# cancel, rerun and purge register their commands on app (cli/control.py)
from . import control  # noqa: E402,F401

if __name__ == "__main__":
    main()
