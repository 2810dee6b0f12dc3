"""The project's exception tree. Each class's docstring says what it means."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigurationError(EngineError):
    """A setting is missing or wrong."""


class RegistryError(EngineError):
    """ALL_JOBS or ALL_HANDLERS is inconsistent; the app refuses to start."""


class ContractViolationError(EngineError):
    """A job or handler broke the engine's contract (a programming error, never retried)."""


class JobValidationError(EngineError, ValueError):
    """Job parameters broke a rule of the job's parameters_schema."""

    def __init__(self, message: str, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter


class UnknownNameError(EngineError, KeyError):
    """A name that is not registered; the message lists the registered ones."""

    kind = "name"

    def __init__(self, name: str, available: list[str]):
        super().__init__(name)
        self.name = name
        self.available = available

    def __str__(self) -> str:
        return f"Unknown {self.kind} '{self.name}'. Available: {', '.join(self.available)}"


class UnknownJobTypeError(UnknownNameError):
    """No job of this type is registered in ALL_JOBS."""

    kind = "job type"


class UnknownTaskTypeError(UnknownNameError):
    """No handler of this task type is registered in ALL_HANDLERS."""

    kind = "task type"


class PoisonMessageError(EngineError):
    """A queue message that can never succeed: it is recorded in app.dead_letters and
    completed, never retried."""


class MessageFormatError(PoisonMessageError, ValueError):
    """A queue message cannot be parsed or has an unsupported format version."""


class TaskTimeoutError(EngineError, TimeoutError):
    """A task handler ran longer than its stage's timeout (a transient failure)."""


class DatabaseError(EngineError):
    """The database failed; the operation may succeed when retried."""


class QueueError(EngineError):
    """Sending to or receiving from a queue failed."""


class WorkerLostError(EngineError):
    """A task's lease lapsed: the worker running it stopped (a transient failure)."""


class TransientError(EngineError):
    """A failure that may pass: the task is retried with backoff (not sooner than
    retry_after seconds, when given)."""

    def __init__(self, message: str = "", retry_after: float | None = None):
        super().__init__(message or self.__doc__)
        self.retry_after = retry_after


class PermanentError(EngineError):
    """A failure that retrying cannot fix: the task fails at once."""


class RequirementError(JobValidationError):
    """A job's submit check found a requirement not met (a container, blob or table
    missing, or a table already there): a 400 naming the parameter and the resource."""

    def __init__(self, message: str, parameter: str | None = None,
                 resource: str | None = None):
        super().__init__(message, parameter)
        self.resource = resource


class ResourceUnavailableError(EngineError):
    """Storage or a database a submit check or task builder needs cannot be reached right
    now (a 503 at submit; a transient failure elsewhere)."""


class CleanupPendingError(EngineError):
    """A failed job's cleanup task has not finished: its parameters start a new attempt
    only once it has (a 409), so the cleanup never runs beside the new attempt."""


class GeoUnavailableError(EngineError):
    """The geospatial database (PostGIS and the pgstac catalogue) cannot be used here:
    `reason` says why, `hint` what to install or which setting to set."""

    def __init__(self, reason: str, hint: str = ""):
        super().__init__(f"{reason}; {hint}" if hint else reason)
        self.reason = reason
        self.hint = hint


class RequirementUnavailableError(EngineError):
    """A job needs something this deployment lacks (its `requires`, e.g. the geospatial
    database): submit answers 503 naming the requirement, why, and what to install or set."""

    def __init__(self, message: str, requirement: str, hint: str = ""):
        super().__init__(message)
        self.requirement = requirement
        self.hint = hint


class QueryParameterError(EngineError, ValueError):
    """A read request's query parameter is malformed or not allowed (a 400 naming the
    `parameter` and, where there is a list, the `allowed` values)."""

    def __init__(self, parameter: str, message: str, allowed: list[str] | None = None):
        super().__init__(message)
        self.parameter = parameter
        self.allowed = allowed
