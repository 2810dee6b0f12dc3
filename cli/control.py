"""geojobs cancel, rerun and purge: one job by ID, or every job the filters match
(registered on cli.main's app)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Callable, Optional

import typer
from rich.text import Text

from . import render
from .main import (Config, CreatedAfter, CreatedBefore, IdPrefix, IntervalOption, JsonOption,
                   KeyOption, StatusFilter, TimeoutOption, TypeFilter, UpdatedAfter,
                   UrlOption, api_errors, app, config, job_filters, resolve_id, watch_job)

DryRun = Annotated[bool, typer.Option(
    "--dry-run", help="Without ID: only count the jobs the filters match; change nothing.")]
OptionalId = Annotated[Optional[str], typer.Argument(
    metavar="ID", show_default=False,
    help="A job id (or the start of one); without it, every job the filters match.")]


def bulk_body(cfg: Config, command: str, job_id: Optional[str], filters: dict[str, Any],
              dry_run: bool) -> Optional[dict[str, Any]]:
    """None for one job (ID given); the bulk request's body for filters."""
    if job_id:
        if filters or dry_run:
            raise typer.BadParameter(f"give an ID or filters, not both (geojobs {command} "
                                     f"--help)", param_hint="ID")
        return None
    if not filters:
        raise typer.BadParameter(f"give a job ID, or at least one filter (--status, "
                                 f"--job-type, ...) to {command} every job it matches",
                                 param_hint="ID")
    return {**filters, "dry_run": dry_run}


def send(cfg: Config, command: str, job_id: Optional[str], body: Optional[dict[str, Any]],
         one: Callable[[Any, str], Any], bulk_extra: Optional[dict[str, Any]] = None
         ) -> tuple[Any, Any, Optional[str]]:
    """The action on one job (one(client, its full id)) when body is None, else the bulk
    request with body (and bulk_extra); returns the client, the answer and the job id."""
    client = cfg.client()
    with api_errors(cfg):
        if body is None:
            assert job_id is not None
            job_id = resolve_id(cfg, client, job_id)
            return client, one(client, job_id), job_id
        return client, client.bulk(command, {**body, **(bulk_extra or {})}), job_id


def show_action(cfg: Config, answer: Any, done: str, job_id: Optional[str] = None) -> None:
    if cfg.as_json:
        render.print_json(cfg.out, answer if answer is not None else {"job_id": job_id})
        return
    if not isinstance(answer, dict):
        cfg.out.print(Text(f"job {job_id} {done}"), soft_wrap=True)
        return
    if "matched" in answer or "acted_on" in answer:
        dry = " (dry run: nothing changed)" if answer.get("dry_run") else ""
        cfg.out.print(Text(f"matched {answer.get('matched')} job(s), {done} "
                           f"{answer.get('acted_on')}{dry}"), soft_wrap=True)
    elif answer.get("job_id"):
        line = Text(f"job {answer['job_id']} {done}")
        if answer.get("status"):
            line.append(", status ")
            line.append_text(render.styled(answer["status"]))
        cfg.out.print(line, soft_wrap=True)
    for name, value in answer.items():
        if name in ("matched", "acted_on", "dry_run", "job_id", "status") or value is None:
            continue
        if isinstance(value, list):
            cfg.out.print(Text(f"{name}: {len(value)}"), soft_wrap=True)
            for item in value:
                cfg.out.print(Text(f"  {item if not isinstance(item, dict) else json.dumps(item)}"),
                              soft_wrap=True)
        else:
            text = json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value
            cfg.out.print(Text(f"{name}: {text}"), soft_wrap=True)


@app.command()
def cancel(ctx: typer.Context, job_id: OptionalId = None,
           reason: Annotated[Optional[str], typer.Option(
               "--reason", show_default=False, help="Why, kept with the job.")] = None,
           status_: StatusFilter = None, job_type: TypeFilter = None,
           created_after: CreatedAfter = None, created_before: CreatedBefore = None,
           updated_after: UpdatedAfter = None, id_prefix: IdPrefix = None,
           dry_run: DryRun = False,
           url: UrlOption = None, key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Cancel a job (POST /api/jobs/ID/cancel), or every job the filters match
    (POST /api/jobs/cancel)."""
    cfg = config(ctx, url, key, as_json)
    filters = job_filters(status_, job_type, created_after, created_before, updated_after,
                          id_prefix)
    body = bulk_body(cfg, "cancel", job_id, filters, dry_run)
    _, answer, job_id = send(cfg, "cancel", job_id, body,
                             lambda client, one: client.cancel(one, reason),
                             {"reason": reason} if reason else None)
    show_action(cfg, answer, "cancelled", job_id)


@app.command()
def rerun(ctx: typer.Context, job_id: OptionalId = None,
          from_start: Annotated[bool, typer.Option(
              "--from-start", help="Run again from stage 1, not from the stage that "
                                   "failed.")] = False,
          status_: StatusFilter = None, job_type: TypeFilter = None,
          created_after: CreatedAfter = None, created_before: CreatedBefore = None,
          updated_after: UpdatedAfter = None, id_prefix: IdPrefix = None,
          dry_run: DryRun = False,
          watch_: Annotated[bool, typer.Option(
              "--watch", "-w", help="With ID: then watch the job until it ends.")] = False,
          interval: IntervalOption = 0.5, timeout: TimeoutOption = None,
          url: UrlOption = None, key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Run a job again (POST /api/jobs/ID/rerun), or every job the filters match
    (POST /api/jobs/rerun)."""
    cfg = config(ctx, url, key, as_json)
    filters = job_filters(status_, job_type, created_after, created_before, updated_after,
                          id_prefix)
    body = bulk_body(cfg, "rerun", job_id, filters, dry_run)
    if watch_ and body is not None:
        raise typer.BadParameter("--watch goes with a job ID", param_hint="--watch")
    client, answer, job_id = send(cfg, "rerun", job_id, body,
                                  lambda client, one: client.rerun(one, from_start),
                                  {"from": "start"} if from_start else None)
    with api_errors(cfg):
        if not (watch_ and cfg.as_json):
            show_action(cfg, answer, "rerun", job_id)
        if watch_:
            watched = answer.get("job_id", job_id) if isinstance(answer, dict) else job_id
            raise typer.Exit(watch_job(cfg, client, watched, interval, timeout))


@app.command()
def purge(ctx: typer.Context, job_id: OptionalId = None,
          status_: StatusFilter = None, job_type: TypeFilter = None,
          created_after: CreatedAfter = None, created_before: CreatedBefore = None,
          updated_after: UpdatedAfter = None, id_prefix: IdPrefix = None,
          dry_run: DryRun = False,
          url: UrlOption = None, key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Delete a job and its tasks (DELETE /api/jobs/ID), or every job the filters match
    (POST /api/jobs/purge)."""
    cfg = config(ctx, url, key, as_json)
    filters = job_filters(status_, job_type, created_after, created_before, updated_after,
                          id_prefix)
    body = bulk_body(cfg, "purge", job_id, filters, dry_run)
    _, answer, job_id = send(cfg, "purge", job_id, body,
                             lambda client, one: client.purge(one))
    show_action(cfg, answer, "purged", job_id)
