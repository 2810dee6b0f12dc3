"""Structured log fields for every line logged while a message is processed.

log_context(job_id=..., task_id=..., stage=...) sets fields for the current thread or task
(a contextvar); a log-record factory copies them onto every LogRecord, whichever logger made
it, so they reach Application Insights as custom dimensions (infrastructure/telemetry.py).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

FIELDS = ("job_id", "task_id", "stage", "operation", "correlation_id", "message_id")

_fields: ContextVar[dict[str, Any]] = ContextVar("engine_log_fields", default={})


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    token = _fields.set({**_fields.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _fields.reset(token)


def current_fields() -> dict[str, Any]:
    return dict(_fields.get())


def install_record_factory() -> None:
    """Idempotent: wraps the current LogRecord factory once, and Logger.makeRecord so that
    a field passed explicitly in extra= wins over the context (logging would otherwise
    raise KeyError for overwriting an attribute the factory set)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_engine_fields", False):
        return
    make_record = logging.Logger.makeRecord

    def make_record_extra_wins(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        # Logger._log passes (name, level, fn, lno, msg, args, exc_info, func, extra, sinfo).
        extra = args[8] if len(args) > 8 else kwargs.get("extra")
        fields = _fields.get()
        if extra and any(key in fields for key in extra):
            token = _fields.set({k: v for k, v in fields.items() if k not in extra})
            try:
                return make_record(self, *args, **kwargs)
            finally:
                _fields.reset(token)
        return make_record(self, *args, **kwargs)

    logging.Logger.makeRecord = make_record_extra_wins  # type: ignore[method-assign]

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        for key, value in _fields.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return record

    factory._engine_fields = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


install_record_factory()
