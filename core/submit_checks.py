"""Running a job's submit checks (jobs/declarations.py SubmitCheck) through
infrastructure, before anything is stored.

identity_values runs the checks that give the job's identity (at every submit, before
the id is derived); check_requirements runs the others (only when a job would be
created). A requirement not met is a RequirementError naming the parameter and the
resource (a 400); storage or a database that cannot be reached is a DatabaseError or
ResourceUnavailableError (a 503). Nothing is stored either way.
"""

from __future__ import annotations

from typing import Any, Iterable

from core.error_handler import classify
from exceptions import (
    DatabaseError, JobValidationError, RequirementError, ResourceUnavailableError,
)
from infrastructure.submit_checks import SUBMIT_CHECKS


def _applies(check: Any, params: dict[str, Any]) -> bool:
    if check.when is not None and not check.when(params):
        return False
    return all(params.get(name) is not None for name in check.arguments.values())


def _run(check: Any, params: dict[str, Any], resources: Any) -> Any:
    function = SUBMIT_CHECKS[check.check][0] if isinstance(check.check, str) else check.check
    arguments = {arg: params[name] for arg, name in check.arguments.items()}
    try:
        return function(resources, **arguments)
    except RequirementError as exc:
        value = params.get(check.parameter)
        raise RequirementError(
            f"Parameter '{check.parameter}' ({value!r}): {exc}", check.parameter,
            exc.resource) from None
    except (JobValidationError, DatabaseError, ResourceUnavailableError):
        raise
    except Exception as exc:
        info = classify(exc)
        if info.retryable:  # the resource could not be reached: a 503
            raise ResourceUnavailableError(
                f"submit check {check.name} for parameter '{check.parameter}' could not "
                f"reach its resource: {info.message}") from exc
        raise


def _checks(job_class: Any, identity: bool) -> Iterable[Any]:
    return [c for c in getattr(job_class, "submit_checks", ()) or ()
            if bool(c.identity) == identity]


def identity_values(job_class: Any, params: dict[str, Any], resources: Any
                    ) -> dict[str, Any]:
    """The values identity checks return, by their identity name."""
    values = {}
    for check in _checks(job_class, identity=True):
        if _applies(check, params):
            values[check.identity] = _run(check, params, resources)
    return values


def check_available(job_class: Any) -> None:
    """The job's `requires` (infrastructure/requirements.py): RequirementUnavailableError
    (a 503) when this deployment lacks one."""
    from infrastructure.requirements import REQUIREMENTS

    for name in getattr(job_class, "requires", ()) or ():
        REQUIREMENTS[name](job_class.job_type)


def check_requirements(job_class: Any, params: dict[str, Any], resources: Any) -> None:
    for check in _checks(job_class, identity=False):
        if _applies(check, params):
            _run(check, params, resources)
