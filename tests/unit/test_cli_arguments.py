"""The geojobs command line's argument handling, without a host: --param values parsed as
JSON when they parse, dotted keys, --file merged under --param, the query strings sent,
base URLs, and that typer and rich stay out of the Functions app's requirements."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from cli.client import normalize_base_url, query_string
from cli.main import merge, parse_params, parse_value, run, split_values

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("raw, value", [
    ("5", 5), ("0.5", 0.5), ("true", True), ("false", False), ("null", None),
    ("Hi", "Hi"), ("hello world", "hello world"), ('"5"', "5"), ('["a", 1]', ["a", 1]),
    ('{"k": 1}', {"k": 1}), ("", ""), ("2024/", "2024/"), ("a=b", "a=b"),
])
def test_values_are_json_when_they_parse(raw, value):
    assert parse_value(raw) == value


def test_params_with_dotted_keys_and_repeats():
    assert parse_params(["n=5", "message=x=y", "filter.prefix=2024/",
                         'filter.extensions=["tif"]', "n=6"]) == {
        "n": 6, "message": "x=y", "filter": {"prefix": "2024/", "extensions": ["tif"]}}
    for bad in (["novalue"], ["=5"], ["n=1", "n.x=2"]):
        with pytest.raises(typer.BadParameter):
            parse_params(bad)


def test_file_params_are_merged_under_the_command_line():
    from_file = {"n": 2, "message": "file", "filter": {"prefix": "a/", "extensions": ["tif"]}}
    given = {"n": 3, "filter": {"prefix": "b/"}}
    assert merge(from_file, given) == {
        "n": 3, "message": "file", "filter": {"prefix": "b/", "extensions": ["tif"]}}


def test_query_strings():
    assert split_values(["failed,completed", " queued ", ""]) == [
        "failed", "completed", "queued"]
    assert query_string({"status": ["failed", "completed"], "job_type": [], "limit": 5,
                         "created_after": "2026-01-31T00:00:00+00:00", "id_prefix": None}
                        ) == ("status=failed%2Ccompleted&limit=5"
                              "&created_after=2026-01-31T00%3A00%3A00%2B00%3A00")


@pytest.mark.parametrize("url, base", [
    ("http://127.0.0.1:7071", "http://127.0.0.1:7071"),
    ("http://127.0.0.1:7071/", "http://127.0.0.1:7071"),
    ("http://127.0.0.1:7071/api/", "http://127.0.0.1:7071"),
    ("https://app.azurewebsites.net/api", "https://app.azurewebsites.net"),
])
def test_base_urls(url, base):
    assert normalize_base_url(url) == base


def test_usage_errors_exit_2_without_a_host(capsys):
    assert run(["submit", "hello_world", "-p", "oops"]) == 2
    assert "oops" in capsys.readouterr().err
    assert run(["--url", "ftp://x", "list"]) == 2
    assert run(["cancel"]) == 2
    assert run(["--help"]) == 0


def test_typer_and_rich_are_not_the_apps_requirements():
    app_requirements = (ROOT / "requirements.txt").read_text().lower()
    assert "typer" not in app_requirements and "rich" not in app_requirements
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'packages = ["cli"]' in pyproject
    assert 'geojobs = "cli.main:main"' in pyproject
    constraints = (ROOT / "constraints.txt").read_text().splitlines()
    for dependency in ('"typer==', '"rich=='):
        pinned = pyproject.split(dependency, 1)[1].split('"', 1)[0]
        assert f"{dependency[1:]}{pinned}" in constraints
