"""The app's functions, read from the FunctionApp object itself, and invoking them the way
the Python worker does (the trigger argument passed by its binding name)."""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

logger = logging.getLogger("local_host.functions")

HTTP_TRIGGER = "httpTrigger"
SERVICE_BUS_TRIGGER = "serviceBusTrigger"
TIMER_TRIGGER = "timerTrigger"

_APP_SETTING = re.compile(r"%([^%]+)%")


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    trigger_type: str
    arg_name: str
    function: Callable[..., Any]
    binding: dict[str, Any] = field(repr=False)

    # -- httpTrigger ----------------------------------------------------------------------
    @property
    def route(self) -> str:
        # Without a route the Functions host uses the function's name.
        return (self.binding.get("route") or self.name).strip("/")

    @property
    def methods(self) -> Optional[tuple[str, ...]]:
        """Allowed methods, upper case; None: any."""
        methods = self.binding.get("methods")
        return tuple(str(m).upper() for m in methods) if methods else None

    @property
    def auth_level(self) -> str:
        return str(self.binding.get("authLevel") or "function")

    # -- serviceBusTrigger ----------------------------------------------------------------
    @property
    def queue_name(self) -> str:
        return resolve_app_settings(self.binding.get("queueName") or "")

    # -- timerTrigger ---------------------------------------------------------------------
    @property
    def schedule(self) -> str:
        return resolve_app_settings(self.binding.get("schedule") or "")

    @property
    def run_on_startup(self) -> bool:
        return bool(self.binding.get("runOnStartup"))


def resolve_app_settings(text: str) -> str:
    """Binding expressions like %QueueName% name app settings, as in the Functions host."""
    def setting(match: re.Match) -> str:
        value = os.environ.get(match.group(1))
        if value is None:
            raise LookupError(f"binding expression {match.group(0)}: no app setting "
                              f"named {match.group(1)}")
        return value
    return _APP_SETTING.sub(setting, text)


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


_lock = threading.Lock()
# azure-functions refuses a second app.get_functions() in one process, so each app's
# functions are read once and kept (tests start several hosts on the same app).
_discovered: dict[int, tuple[Any, list[FunctionSpec]]] = {}


def discover(app: Any) -> list[FunctionSpec]:
    with _lock:
        cached = _discovered.get(id(app))
        if cached is not None and cached[0] is app:
            return list(cached[1])
        specs = []
        for fn in app.get_functions():
            bindings = [_plain(b) for b in fn.get_bindings_dict()["bindings"]]
            trigger = next((b for b in bindings if str(b.get("type", "")).endswith("Trigger")),
                           bindings[0])
            specs.append(FunctionSpec(
                name=fn.get_function_name(), trigger_type=trigger["type"],
                arg_name=trigger["name"], function=fn.get_user_function(), binding=trigger,
            ))
        _discovered[id(app)] = (app, specs)
        return list(specs)


def invoke(spec: FunctionSpec, argument: Any, reason: str) -> Any:
    """Call the user function, logging as the Functions host does. An exception is logged
    here, once, and re-raised for the caller to act on (500, abandon)."""
    invocation_id = uuid.uuid4()
    logger.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", spec.name, reason,
                invocation_id)
    started = time.monotonic()
    try:
        result = spec.function(**{spec.arg_name: argument})
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
    except Exception:
        logger.exception("Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)", spec.name,
                         invocation_id, (time.monotonic() - started) * 1000)
        raise
    logger.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)", spec.name,
                invocation_id, (time.monotonic() - started) * 1000)
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable
