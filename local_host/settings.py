"""local.settings.json, read as `func start` reads it: its "Values" become environment
variables, except that a variable already set in the environment wins."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, MutableMapping, Optional

from config import reset_settings
from core.startup import timespan_seconds

logger = logging.getLogger(__name__)

SETTINGS_FILE = "local.settings.json"
HOST_FILE = "host.json"
DEFAULT_PORT = 7071


class SettingsFileError(Exception):
    pass


def read_settings_file(path: str | Path = SETTINGS_FILE) -> Optional[dict[str, Any]]:
    """The parsed file, or None when there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise SettingsFileError(f"{path}: not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsFileError(f"{path}: expected a JSON object")
    if data.get("IsEncrypted"):
        # func start decrypts with a machine key; there is none here.
        raise SettingsFileError(f"{path}: IsEncrypted is true; the local host reads only "
                                "plain-text settings")
    values = data.get("Values", {})
    if not isinstance(values, dict):
        raise SettingsFileError(f"{path}: \"Values\" must be an object")
    return data


def load_local_settings(
    path: str | Path = SETTINGS_FILE, environ: Optional[MutableMapping[str, str]] = None
) -> list[str]:
    """Copy the file's Values into the environment; returns the names it set."""
    environ = os.environ if environ is None else environ
    data = read_settings_file(path)
    applied = []
    for name, value in (data or {}).get("Values", {}).items():
        if name in environ or value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        environ[name] = str(value)
        applied.append(name)
    if data is not None:
        logger.info("read %s: %d value(s) applied, environment variables take precedence",
                    path, len(applied))
    reset_settings()
    return applied


def default_port(path: str | Path = SETTINGS_FILE) -> int:
    """Host.LocalHttpPort from the file (as func start honours it), else 7071."""
    try:
        data = read_settings_file(path) or {}
        return int(data.get("Host", {}).get("LocalHttpPort", DEFAULT_PORT))
    except (SettingsFileError, TypeError, ValueError, AttributeError):
        return DEFAULT_PORT


def max_lock_renewal_seconds(path: str | Path = HOST_FILE) -> Optional[float]:
    """host.json's extensions.serviceBus.maxAutoLockRenewalDuration; None: unbounded."""
    try:
        host = json.loads(Path(path).read_text(encoding="utf-8-sig"))
        text = host["extensions"]["serviceBus"]["maxAutoLockRenewalDuration"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        return timespan_seconds(str(text))
    except ValueError:
        logger.warning("%s: maxAutoLockRenewalDuration %r is not hh:mm:ss; locks are "
                       "renewed without limit", path, text)
        return None


def max_message_batch_size(path: str | Path = HOST_FILE) -> int:
    """host.json's extensions.serviceBus.maxMessageBatchSize (Service Bus's default 1000):
    the most messages a cardinality "many" trigger receives at once."""
    try:
        host = json.loads(Path(path).read_text(encoding="utf-8-sig"))
        return max(int(host["extensions"]["serviceBus"]["maxMessageBatchSize"]), 1)
    except (OSError, ValueError, KeyError, TypeError):
        return 1000


def is_disabled(function_name: str) -> bool:
    """The Functions setting AzureWebJobs.<function>.Disabled, as func start reads it."""
    value = os.environ.get(f"AzureWebJobs.{function_name}.Disabled", "")
    return value.strip().lower() in ("true", "1")
