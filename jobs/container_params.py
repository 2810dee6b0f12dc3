"""The parameters the container jobs share (summarize_container, list_container_contents,
list_container_contents_diamond): the container, a filter, a file limit and a snapshot.

Extensions are normalized (".tif", "tif" and "TIF" are the same, so they are the same
job); rules across parameters (a size or date range the wrong way round) are checked
after the schema's."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from exceptions import JobValidationError
from jobs.declarations import SubmitCheck
from jobs.validation_errors import named_pattern_error

# Azure's container names: 3-63 characters, lowercase letters, digits and single hyphens,
# starting and ending with a letter or digit.
CONTAINER_NAME = r"(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*"

FILTER_FIELDS = {
    "prefix": {"type": "str", "min_length": 1, "max_length": 1024,
               "description": "only blobs whose names start with this"},
    "extensions": {"type": "list", "min_length": 1, "max_length": 100,
                   "items": {"type": "str", "pattern": r"\.?[A-Za-z0-9_+-]{1,32}"},
                   "description": "only these extensions (.tif, tif and TIF are the same)"},
    "min_size_mb": {"type": "float", "min": 0, "description": "only blobs at least this big"},
    "max_size_mb": {"type": "float", "min": 0, "description": "only blobs at most this big"},
    "modified_after": {"type": "datetime", "description": "only blobs modified after this"},
    "modified_before": {"type": "datetime",
                        "description": "only blobs modified before this"},
}


def container_parameters(file_limit: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "container_name": {"type": "str", "required": True, "pattern": CONTAINER_NAME,
                           "description": "the container (3-63 lowercase letters, digits "
                                          "and single hyphens)"},
        "file_limit": file_limit,
        "filter": {"type": "object", "default": {}, "fields": FILTER_FIELDS},
        "snapshot": {"type": "str", "min_length": 1, "max_length": 200,
                     "description": "a label of your own: the same container scanned again "
                                    "under another snapshot is a new job"},
    }


CONTAINER_EXISTS = SubmitCheck("container_exists", parameter="container_name",
                               arguments={"container": "container_name"})


CONTAINER_RULE = ("3 to 63 characters: lowercase letters, digits and single hyphens, "
                  "starting and ending with a letter or digit (Azure's rule)")


def validate_container_job(validate: Any, params: Any) -> dict[str, Any]:
    """validate: the schema's validation (JobBaseMixin's); a container name that breaks
    Azure's rule is named with the rule in words, not as a regular expression."""
    with named_pattern_error(params, {"container_name": CONTAINER_RULE}):
        validated = validate(params)
    return normalize_container_parameters(validated)


def normalize_container_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """The validated parameters with extensions normalized (lowercase, no dot, sorted,
    once each); raises JobValidationError for a range the wrong way round."""
    flt = dict(params.get("filter") or {})
    if "extensions" in flt:
        flt["extensions"] = sorted({e.lstrip(".").lower() for e in flt["extensions"]})
    low, high = flt.get("min_size_mb"), flt.get("max_size_mb")
    if low is not None and high is not None and low > high:
        raise JobValidationError(
            f"Parameter 'filter.max_size_mb' ({high}) must be at least filter.min_size_mb "
            f"({low})", "filter.max_size_mb")
    after, before = flt.get("modified_after"), flt.get("modified_before")
    if after is not None and before is not None and \
            datetime.fromisoformat(after) >= datetime.fromisoformat(before):
        raise JobValidationError(
            f"Parameter 'filter.modified_before' ({before}) must be later than "
            f"filter.modified_after ({after})", "filter.modified_before")
    return {**params, "filter": flt}


class ContainerJobMixin:
    """What the container jobs share: the container must exist at submit, and their
    parameters are normalized and checked across fields. Put it before JobBaseMixin."""

    submit_checks = (CONTAINER_EXISTS,)

    @classmethod
    def validate_job_parameters(cls, params: Any) -> dict[str, Any]:
        return validate_container_job(super().validate_job_parameters, params)  # type: ignore[misc]
