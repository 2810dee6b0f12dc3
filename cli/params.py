"""geojobs' parsing of arguments: KEY=VALUE parameters (values as JSON when they parse,
dotted keys into objects), a parameters file merged under them, repeated or
comma-separated filter values."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import typer

__all__ = ["merge", "parse_params", "parse_value", "read_params_file", "split_values"]


def parse_value(raw: str) -> Any:
    """JSON when it parses (5 -> 5, true -> true, [1,2] -> a list), else the text."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """k=v pairs; a dotted key (filter.prefix=x) sets a field of an object."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        target = params
        *parents, leaf = key.strip().split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise typer.BadParameter(f"{key!r}: {part} is given a value and fields",
                                         param_hint="--param")
        target[leaf] = parse_value(raw)
    return params


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """over on top of base; objects merged field by field."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_params_file(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise typer.BadParameter(f"{path}: {exc.strerror or exc}", param_hint="--file") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{path} is not JSON: {exc}", param_hint="--file") from None
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path} holds a JSON {type(data).__name__}, not an object",
                                 param_hint="--file")
    return data


def split_values(values: Optional[Sequence[str]]) -> list[str]:
    """--status failed --status completed and --status failed,completed alike."""
    return [v.strip() for value in values or () for v in value.split(",") if v.strip()]
