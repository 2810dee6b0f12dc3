"""Every setting config.py reads is documented in local.settings.json.example, and the
example documents nothing config.py does not read (besides the Functions host's own)."""

import json
import re
from pathlib import Path

from config import Settings

ROOT = Path(__file__).resolve().parents[2]
HOST_SETTINGS = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}
# The host's per-function switch (dotted): which one the example sets is checked, with the
# function names, in test_deploy_docs.
FUNCTION_SWITCH = re.compile(r"AzureWebJobs\.[A-Za-z_][A-Za-z0-9_]*\.Disabled")


def test_example_and_config_name_the_same_settings():
    example = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    read_by_config = {field.alias for field in Settings.model_fields.values()}
    host = {name for name in example if name in HOST_SETTINGS or FUNCTION_SWITCH.fullmatch(name)}
    assert "AzureWebJobs.process_task_message.Disabled" in host
    assert set(example) - host == read_by_config


def test_settings_need_nothing_to_load(monkeypatch):
    for name in ("DATABASE_URL", "QUEUE_BACKEND", "ServiceBusConnection",
                 "ServiceBusConnection__fullyQualifiedNamespace"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.effective_queue_backend == "embedded"
    assert settings.database_url is None


def test_service_bus_connection_selects_service_bus(monkeypatch):
    monkeypatch.delenv("QUEUE_BACKEND", raising=False)
    monkeypatch.setenv("ServiceBusConnection", "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v")
    assert Settings().effective_queue_backend == "servicebus"



def test_readme_settings_table_names_every_setting():
    """README's Settings table names every setting config.py reads."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            documented.update(re.findall(r"`([^`]+)`", line.split("|")[1]))
    read_by_config = {field.alias for field in Settings.model_fields.values()}
    assert read_by_config - documented == set()
