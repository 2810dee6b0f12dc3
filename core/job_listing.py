"""The read side of the job API: finding jobs by filter, counting them, and paging through
a job's tasks. Query parameters come in as the strings of a request's query; every bad
one is a QueryParameterError naming it and what is allowed.

Pages are keyset pages: the continuation token is opaque base64 (URL-safe) of the last
row's sort key and a fingerprint of the filters it was made under, so a token used with
other filters is refused rather than quietly paging something else. New jobs sort before
every page already read (newest first), so a token survives new submits.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from datetime import datetime
from typing import Any, Callable, Mapping, Optional

from core.models import JobStatus, TaskStatus
from core.status_view import iso, seconds_between, stage_counts, timeline
from exceptions import QueryParameterError
from infrastructure.job_queries import JobQueries
from jobs.parameter_types import parse_datetime

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
JOB_STATUSES = [s.value for s in JobStatus]
TASK_STATUSES = [s.value for s in TaskStatus]
JOB_FILTERS = ("status", "job_type", "created_after", "created_before", "updated_after",
               "id_prefix")
LIST_PARAMETERS = JOB_FILTERS + ("limit", "continuation_token")
TASK_PARAMETERS = ("stage", "status", "limit", "continuation_token", "include")
INCLUDES = ("parameters", "result")
_HEX_PREFIX = re.compile(r"^[0-9a-f]{1,64}$")
MAX_TOKEN_CHARS = 1000


def _values(query: Mapping[str, str], name: str) -> list[str]:
    """A parameter of one or several values: repeated (joined with commas, as the
    Functions host passes them) or comma-separated; blanks dropped."""
    raw = query.get(name)
    if raw is None:
        return []
    return [v.strip() for v in raw.split(",") if v.strip()]


def _one_of(query: Mapping[str, str], name: str, allowed: list[str]) -> list[str]:
    values = _values(query, name)
    bad = [v for v in values if v not in allowed]
    if bad:
        raise QueryParameterError(
            name, f"Unknown {name} '{bad[0][:100]}': allowed are {', '.join(allowed)}"
                  " (one, or several separated by commas)", allowed)
    return sorted(set(values))


def _datetime(query: Mapping[str, str], name: str) -> Optional[datetime]:
    raw = query.get(name)
    if raw is None or raw.strip() == "":
        return None
    # A "+" of "+02:00" arrives as a space when the caller did not encode it.
    text = re.sub(r" (\d\d(:?\d\d)?)$", r"+\1", raw.strip())
    try:
        return parse_datetime(text)
    except (ValueError, TypeError, OverflowError):
        raise QueryParameterError(
            name, f"{name} '{raw[:100]}' is not an ISO 8601 date-time, e.g. "
                  "2026-01-31T12:00:00Z (no zone means UTC)") from None


def _limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit")
    if raw is None or raw.strip() == "":
        return DEFAULT_LIMIT
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value is None or not 1 <= value <= MAX_LIMIT:
        raise QueryParameterError(
            "limit", f"limit '{raw[:100]}' must be an integer from 1 to {MAX_LIMIT} "
                     f"(default {DEFAULT_LIMIT})")
    return value


def _check_known(query: Mapping[str, str], known: tuple[str, ...]) -> None:
    # `code` is the function key (?code=), which the host reads, not the route.
    unknown = sorted(set(query) - set(known) - {"code"})
    if unknown:
        raise QueryParameterError(
            unknown[0], f"Unknown query parameter '{unknown[0][:100]}': allowed are "
                        f"{', '.join(known)}", list(known))


def job_filters(query: Mapping[str, str], job_types: list[str]) -> dict[str, Any]:
    """The validated filters of GET /api/jobs and /api/jobs/summary."""
    created_after = _datetime(query, "created_after")
    created_before = _datetime(query, "created_before")
    prefix = (query.get("id_prefix") or "").strip().lower()
    if prefix and not _HEX_PREFIX.match(prefix):
        raise QueryParameterError(
            "id_prefix", f"id_prefix '{prefix[:100]}' must be 1 to 64 hex characters "
                         "(the start of a job id)")
    return {
        "statuses": _one_of(query, "status", JOB_STATUSES),
        "job_types": _one_of(query, "job_type", sorted(job_types)),
        "created_after": created_after, "created_before": created_before,
        "updated_after": _datetime(query, "updated_after"),
        "id_prefix": prefix or None,
    }


def _fingerprint(scope: dict[str, Any]) -> str:
    text = json.dumps(scope, sort_keys=True, default=iso)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_token(key: list[Any], scope: dict[str, Any]) -> str:
    raw = json.dumps({"k": key, "f": _fingerprint(scope)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(query: Mapping[str, str], scope: dict[str, Any],
                 check: Callable[[list[Any]], Any]) -> Any:
    """The sort key of the token in the query (None without one), checked and converted
    by `check` (which raises ValueError for a key of the wrong shape)."""
    token = (query.get("continuation_token") or "").strip()
    if not token:
        return None
    malformed = QueryParameterError(
        "continuation_token", "Malformed continuation_token: pass back the value of "
                              "continuation_token from the previous page, unchanged")
    if len(token) > MAX_TOKEN_CHARS:
        raise malformed
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        key, fingerprint = data["k"], data["f"]
        if not isinstance(key, list):
            raise ValueError("key")
        key = check(key)
    except (binascii.Error, ValueError, TypeError, KeyError, OverflowError):
        raise malformed from None
    if fingerprint != _fingerprint(scope):
        raise QueryParameterError(
            "continuation_token", "This continuation_token was made with other filters: "
                                  "use it with the filters of the page that returned it")
    return key


def _job_key(key: list[Any]) -> tuple[datetime, str]:
    created, job_id = key
    if not isinstance(created, str) or not isinstance(job_id, str):
        raise ValueError("key")
    return parse_datetime(created), job_id


def _task_key(key: list[Any]) -> tuple[int, int]:
    stage, index = key
    if type(stage) is not int or type(index) is not int or not (
            -2**31 <= stage < 2**31 and -2**31 <= index < 2**31):
        raise ValueError("key")
    return stage, index


class JobListing:
    """The read side, for the HTTP routes: each method takes the request's query (and
    path values) and returns the response document, or raises QueryParameterError."""

    def __init__(self, all_jobs: dict[str, Any], database: Callable[[], Any]):
        self.all_jobs = all_jobs
        self.database = database
        self.queries = JobQueries()

    def list_jobs(self, query: Mapping[str, str]) -> dict[str, Any]:
        _check_known(query, LIST_PARAMETERS)
        filters = job_filters(query, list(self.all_jobs))
        limit = _limit(query)
        after = decode_token(query, filters, _job_key)
        with self.database().connection() as conn:
            rows = self.queries.list_jobs(conn, filters, after, limit + 1)
            more = len(rows) > limit
            rows = rows[:limit]
            counts = self.queries.stage_counts(conn, [r["job_id"] for r in rows])
        token = None
        if more:
            last = rows[-1]
            token = encode_token([iso(last["created_at"]), last["job_id"]], filters)
        by_job: dict[str, list[dict[str, Any]]] = {}
        for c in counts:
            by_job.setdefault(c["job_id"], []).append(c)
        return {"jobs": [self._job_row(r, by_job.get(r["job_id"], [])) for r in rows],
                "continuation_token": token}

    def _job_row(self, row: dict[str, Any], counts: list[dict[str, Any]]) -> dict[str, Any]:
        job_class = self.all_jobs.get(row["job_type"])
        if job_class is not None and len(job_class.stages) != row["total_stages"]:
            job_class = None  # declared differently when it was stored: no names
        return {
            "job_id": row["job_id"], "job_type": row["job_type"], "status": row["status"],
            "stage": row["stage"], "total_stages": row["total_stages"],
            "attempt": row["attempt"],
            "stages": [stage_counts(counts, n, job_class)
                       for n in range(1, row["total_stages"] + 1)],
            "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"]),
            **timeline(row),
            "error": row["error"],
        }

    def summary(self, query: Mapping[str, str]) -> dict[str, Any]:
        _check_known(query, JOB_FILTERS)
        filters = job_filters(query, list(self.all_jobs))
        with self.database().connection() as conn:
            rows = self.queries.summary(conn, filters)
        by_status = {s: 0 for s in JOB_STATUSES}
        by_type: dict[str, int] = {}
        for r in rows:
            by_status[r["status"]] = by_status.get(r["status"], 0) + r["n"]
            by_type[r["job_type"]] = by_type.get(r["job_type"], 0) + r["n"]
        return {"total": sum(by_status.values()), "by_status": by_status,
                "by_job_type": dict(sorted(by_type.items()))}

    def list_tasks(self, job: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
        """job: the job's row (it exists)."""
        _check_known(query, TASK_PARAMETERS)
        stage = None
        raw = query.get("stage")
        if raw is not None and raw.strip() != "":
            try:
                stage = int(raw.strip())
            except ValueError:
                stage = -1
            if not 0 <= stage <= job["total_stages"]:
                raise QueryParameterError(
                    "stage", f"stage '{raw[:100]}' must be an integer from 1 to "
                             f"{job['total_stages']} (this job's stages), or 0 for its "
                             "cleanup task")
        statuses = _one_of(query, "status", TASK_STATUSES)
        include = tuple(_one_of(query, "include", list(INCLUDES)))
        limit = _limit(query)
        scope = {"job_id": job["job_id"], "stage": stage,
                 "statuses": statuses}
        after = decode_token(query, scope, _task_key)
        with self.database().connection() as conn:
            rows = self.queries.list_tasks(conn, job["job_id"], stage, statuses, after,
                                           limit + 1, include)
        more = len(rows) > limit
        rows = rows[:limit]
        token = (encode_token([rows[-1]["stage"], rows[-1]["task_index"]], scope)
                 if more else None)
        return {"job_id": job["job_id"], "tasks": [_task_row(r, include) for r in rows],
                "continuation_token": token}


def _task_row(row: dict[str, Any], include: tuple[str, ...]) -> dict[str, Any]:
    entry = {
        "task_id": row["task_id"], "task_type": row["task_type"], "stage": row["stage"],
        "task_index": row["task_index"], "status": row["status"],
        "retries": row["retry_count"], "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
        "duration_seconds": seconds_between(row["started_at"], row["finished_at"]),
        "error": row["error_details"],
    }
    if "parameters" in include:
        entry["parameters"] = row["parameters"]
    if "result" in include:
        entry["result"] = row["result_data"]
    return entry
