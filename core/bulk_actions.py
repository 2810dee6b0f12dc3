"""POST /api/jobs/cancel, /api/jobs/rerun and /api/jobs/purge: an action on every job the
list's filters match (core/job_listing.py's, from a JSON body; at least one required, so
a bare call never means "every job"), or with `dry_run` only their count.

The jobs are read newest first by the list's keyset (never OFFSET), CHUNK at a time, and
each chunk is acted on in a transaction of its own (core/job_control.py), so tens of
thousands of jobs go through in seconds without one long transaction; a chunk's jobs the
action does not apply to (a cancel of a completed job, a purge of a running one) are
counted as matched but not acted on.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from core.job_control import RERUNNABLE, JobControl
from core.job_listing import JOB_FILTERS, job_filters
from exceptions import QueryParameterError
from infrastructure.job_control import ACTIVE
from infrastructure.job_queries import JobQueries

CHUNK = 500
LIST_FILTERS = ("status", "job_type")
OPTIONS = {"cancel": ("dry_run", "reason"), "rerun": ("dry_run", "from"),
           "purge": ("dry_run",)}


def _text(body: Mapping[str, Any], name: str) -> Optional[str]:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise QueryParameterError(name, f"'{name}' must be a string")
    return value


def parse_body(action: str, body: Mapping[str, Any], job_types: list[str]
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(filters as core/job_listing.py validates them, options). Raises
    QueryParameterError naming the field."""
    known = JOB_FILTERS + OPTIONS[action]
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise QueryParameterError(unknown[0], f"Unknown field '{unknown[0][:100]}': allowed "
                                              f"are {', '.join(known)}", list(known))
    query: dict[str, str] = {}
    for name in JOB_FILTERS:
        value = body.get(name)
        if value is None:
            continue
        if name in LIST_FILTERS and isinstance(value, list):
            if not value or not all(isinstance(v, str) for v in value):
                raise QueryParameterError(name, f"'{name}' must be a string or a non-empty "
                                                "list of strings")
            value = ",".join(value)
        query[name] = _text({name: value}, name) or ""
    filters = job_filters(query, job_types)
    if not any(filters.values()):
        raise QueryParameterError(
            "filters", f"Name at least one filter ({', '.join(JOB_FILTERS)}): a {action} "
                       "of every job is never implied", list(JOB_FILTERS))
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise QueryParameterError("dry_run", "'dry_run' must be true or false")
    options: dict[str, Any] = {"dry_run": dry_run}
    if action == "cancel":
        options["reason"] = _text(body, "reason")
    if action == "rerun":
        start = _text(body, "from")
        if start not in (None, "start"):
            raise QueryParameterError("from", "'from' must be \"start\" (run every stage "
                                              "again), or left out", ["start"])
        options["from_start"] = start == "start"
    return filters, options


class BulkActions:
    def __init__(self, machine: Any, database: Callable[[], Any]):
        self.control = JobControl(machine)
        self.jobs = machine.jobs_registry
        self.database = database
        self.queries = JobQueries()

    def run(self, action: str, body: Mapping[str, Any]) -> dict[str, Any]:
        filters, options = parse_body(action, body, list(self.jobs))
        act = {"cancel": lambda rows: self._cancel(rows, options["reason"]),
               "rerun": lambda rows: self._rerun(rows, options["from_start"]),
               "purge": self._purge}[action]
        matched = acted = 0
        after = None
        while True:
            with self.database().connection() as conn:
                rows = self.queries.list_jobs(conn, filters, after, CHUNK)
            if not rows:
                break
            matched += len(rows)
            if not options["dry_run"]:
                acted += act(rows)
            if len(rows) < CHUNK:
                break
            after = (rows[-1]["created_at"], rows[-1]["job_id"])
        return {"matched": matched, "acted_on": acted, "dry_run": options["dry_run"]}

    def _cancel(self, rows: list[dict[str, Any]], reason: Optional[str]) -> int:
        ids = [r["job_id"] for r in rows if r["status"] in ACTIVE]
        return len(self.control.cancel_jobs(ids, reason)) if ids else 0

    def _rerun(self, rows: list[dict[str, Any]], from_start: bool) -> int:
        allowed = RERUNNABLE + (("completed",) if from_start else ())
        ids = [r["job_id"] for r in rows if r["status"] in allowed]
        return len(self.control.rerun_jobs(ids, from_start)) if ids else 0

    def _purge(self, rows: list[dict[str, Any]]) -> int:
        ids = [r["job_id"] for r in rows if r["status"] not in ACTIVE]
        return len(self.control.purge_jobs(ids)) if ids else 0
