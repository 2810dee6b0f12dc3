"""docs/deploy.md and infra/main.bicep stay true to the code: every setting the app reads is
explained, the queues are the ones the triggers listen on, the publish command is the one
that works, and the queue properties are the ones the embedded queue imitates."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
from pathlib import Path

from config import JOBS_QUEUE, SERVICE_BUS_CONNECTION, TASKS_QUEUE, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = (ROOT / "docs" / "deploy.md").read_text()
BICEP = (ROOT / "infra" / "main.bicep").read_text()
PUBLISH = "func azure functionapp publish <app> --python --build remote"
FUNCIGNORE = [line.strip().rstrip("/") for line in (ROOT / ".funcignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]


def not_deployed(path: Path) -> bool:
    """Whether .funcignore keeps path out of the published package (any part matches)."""
    return any(fnmatch.fnmatch(part, pattern)
               for part in path.relative_to(ROOT).parts for pattern in FUNCIGNORE)


def mentions(text: str, name: str) -> bool:
    """name appears as a whole word: ServiceBusConnection does not count as mentioned by
    ServiceBusConnection__fullyQualifiedNamespace."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None


def example_settings() -> set[str]:
    return set(json.loads((ROOT / "local.settings.json.example").read_text())["Values"])


def environment_variables_read_by_deployed_code() -> set[str]:
    """Literal names in os.environ.get("X"), os.environ["X"], os.getenv("X")."""
    names = set()
    for path in ROOT.rglob("*.py"):
        if not_deployed(path):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            target = None
            if isinstance(node, ast.Call) and node.args:
                func = ast.unparse(node.func)
                if func in ("os.environ.get", "os.getenv", "environ.get", "getenv"):
                    target = node.args[0]
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in (
                "os.environ", "environ"
            ):
                target = node.slice
            if isinstance(target, ast.Constant) and isinstance(target.value, str):
                names.add(target.value)
    return names


def test_every_setting_of_the_example_is_explained():
    missing = sorted(name for name in example_settings() if not mentions(DEPLOY, name))
    assert not missing, f"docs/deploy.md does not mention {missing}"


def test_every_setting_the_code_reads_is_explained():
    read = {field.alias for field in Settings.model_fields.values()}
    read |= environment_variables_read_by_deployed_code()
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in read  # the scan works
    missing = sorted(name for name in read if not mentions(DEPLOY, name))
    assert not missing, f"docs/deploy.md does not mention {missing}"


def test_identity_based_connection_settings_are_explained():
    for name in (f"{SERVICE_BUS_CONNECTION}__fullyQualifiedNamespace",
                 f"{SERVICE_BUS_CONNECTION}__credential",
                 f"{SERVICE_BUS_CONNECTION}__clientId", "AZURE_CLIENT_ID"):
        assert mentions(DEPLOY, name), name


def test_both_queues_are_in_the_guide_and_the_template():
    for queue in (JOBS_QUEUE, TASKS_QUEUE):
        assert f"`{queue}`" in DEPLOY
        assert f"'{queue}'" in BICEP


def test_the_publish_command_appears_verbatim():
    assert PUBLISH in DEPLOY
    assert PUBLISH in (ROOT / "infra" / "README.md").read_text()


def test_the_template_deploys_the_settings_the_app_needs_in_azure():
    settings = set(re.findall(r"name: '([A-Za-z_]+)'\s*\n\s*value:", BICEP))
    assert {"DATABASE_URL", "DATABASE_AUTH", "QUEUE_BACKEND",
            f"{SERVICE_BUS_CONNECTION}__fullyQualifiedNamespace",
            "APPLICATIONINSIGHTS_CONNECTION_STRING", "AzureWebJobsStorage",
            "FUNCTIONS_WORKER_RUNTIME"} <= settings
    # The identity-based connection and a connection string must not both be set.
    assert SERVICE_BUS_CONNECTION not in settings
    # Every engine setting it sets is one the code reads.
    engine = settings - {"FUNCTIONS_EXTENSION_VERSION", "FUNCTIONS_WORKER_RUNTIME",
                         "AzureWebJobsStorage", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
                         "WEBSITE_CONTENTSHARE", "APPLICATIONINSIGHTS_CONNECTION_STRING"}
    assert engine <= {field.alias for field in Settings.model_fields.values()}


def test_queue_properties_match_what_the_embedded_queue_imitates():
    # The embedded queue's defaults are "Service Bus's own": the deployed queues must agree.
    defaults = Settings.model_fields
    lock_minutes = defaults["queue_lock_seconds"].default / 60
    max_deliveries = defaults["queue_max_delivery_count"].default
    assert f"lockDuration: 'PT{lock_minutes:g}M'" in BICEP
    assert f"maxDeliveryCount: {max_deliveries}" in BICEP
    assert f"--lock-duration PT{lock_minutes:g}M" in DEPLOY
    assert f"--max-delivery-count {max_deliveries}" in DEPLOY
    for text in (BICEP, DEPLOY):
        assert "PT10M" in text
    assert "requiresDuplicateDetection: true" in BICEP
    assert "deadLetteringOnMessageExpiration: true" in BICEP


def test_host_json_limits_the_guide_relies_on():
    host = json.loads((ROOT / "host.json").read_text())
    assert f"`{host['functionTimeout']}`" in DEPLOY
    renewal = host["extensions"]["serviceBus"]["maxAutoLockRenewalDuration"]
    assert f"`{renewal}`" in DEPLOY


def test_the_template_runs_python_3_11_with_its_own_identity():
    assert "linuxFxVersion: 'Python|3.11'" in BICEP
    assert "type: 'SystemAssigned'" in BICEP
    assert "activeDirectoryAuth: 'Enabled'" in BICEP
    for role in ("69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",    # Azure Service Bus Data Sender
                 "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0"):   # Azure Service Bus Data Receiver
        assert role in BICEP
