"""docs/deploy.md and infra/main.bicep stay true to the code: every setting the app reads is
explained, the queues are the ones the triggers listen on, the publish command is the one
that works, and the queue properties are the ones the embedded queue imitates."""

from __future__ import annotations

import ast
import fnmatch
import functools
import json
import re
import subprocess
import sys
from pathlib import Path

from config import JOBS_QUEUE, SERVICE_BUS_CONNECTION, TASKS_QUEUE, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = (ROOT / "docs" / "deploy.md").read_text()
BICEP = (ROOT / "infra" / "main.bicep").read_text()
PUBLISH = "func azure functionapp publish <app> --python --build remote"
FUNCIGNORE = [line.strip().rstrip("/") for line in (ROOT / ".funcignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
# A setting name: letters, digits, underscores, and dots inside (the Functions host's
# AzureWebJobs.<function>.Disabled).
SETTING_NAME = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*"
# The Functions host setting that disables one function, with the function's name in group 1.
FUNCTION_SWITCH = re.compile(r"AzureWebJobs\.([A-Za-z_][A-Za-z0-9_]*)\.Disabled")
# Any AzureWebJobs.<x>.<y> in prose: it must be a FUNCTION_SWITCH of a real function.
DOTTED_HOST_SETTING = re.compile(r"(?<![A-Za-z0-9_.])AzureWebJobs\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+")
TASK_TRIGGERS = {"process_task_batch", "process_task_message"}


def not_deployed(path: Path) -> bool:
    """Whether .funcignore keeps path out of the published package (any part matches)."""
    return any(fnmatch.fnmatch(part, pattern)
               for part in path.relative_to(ROOT).parts for pattern in FUNCIGNORE)


def mentions(text: str, name: str) -> bool:
    """name appears as a whole word: ServiceBusConnection does not count as mentioned by
    ServiceBusConnection__fullyQualifiedNamespace, nor AzureWebJobs.f.Disabled by
    AzureWebJobs.f.Disabled.x (a dot followed by a word character continues a name; a full
    stop ending a sentence does not)."""
    pattern = rf"(?<![A-Za-z0-9_.]){re.escape(name)}(?!\.?[A-Za-z0-9_])"
    return re.search(pattern, text) is not None


def example_values() -> dict[str, str]:
    return json.loads((ROOT / "local.settings.json.example").read_text())["Values"]


def example_settings() -> set[str]:
    return set(example_values())


def template_settings() -> dict[str, str]:
    """The function app's app settings in the template: name -> value expression (Bicep)."""
    found = re.findall(rf"name: '({SETTING_NAME})'\s*\n\s*value: ([^\n]+)", BICEP)
    settings = dict(found)
    assert len(settings) == len(found), "a setting is set twice"
    return settings


def template_parameter(name: str) -> tuple[list[str], str]:
    """A string parameter's allowed values and default."""
    match = re.search(rf"@allowed\(\[\s*((?:'[^']*'\s*)+)\]\)\s*\nparam {name} string = '([^']*)'",
                      BICEP)
    assert match, f"param {name} with @allowed and a default"
    return re.findall(r"'([^']*)'", match[1]), match[2]


def template_value(expression: str, parameters: dict[str, str]) -> str:
    """Evaluates the forms of string values the template's function switches use: a literal
    'x', or <param> == 'a' ? 'x' : 'y'."""
    if literal := re.fullmatch(r"'([^']*)'", expression):
        return literal[1]
    conditional = re.fullmatch(r"(\w+) == '([^']*)' \? '([^']*)' : '([^']*)'", expression)
    assert conditional, f"cannot evaluate {expression!r}"
    name, equals, then, otherwise = conditional.groups()
    return then if parameters[name] == equals else otherwise


def disabled(settings: dict[str, str]) -> set[str]:
    """The functions AzureWebJobs.<function>.Disabled turns off ("true" or "1", as the host
    and local_host.settings.is_disabled read it)."""
    return {match[1] for name, value in settings.items()
            if (match := FUNCTION_SWITCH.fullmatch(name))
            and value.strip().lower() in ("true", "1")}


def appsettings_commands(text: str) -> list[dict[str, str]]:
    """The "NAME=VALUE" arguments of each az functionapp config appsettings set command."""
    commands = re.findall(r"az functionapp config appsettings set(?:[^\n]*\\\n)*[^\n]*", text)
    return [dict(re.findall(rf'"({SETTING_NAME})=([^"]*)"', command)) for command in commands]


def guide_table_values() -> dict[str, str]:
    """Step 9's table: a row's setting and the first `value` of its explanation."""
    return dict(re.findall(rf"^\| `({SETTING_NAME})` \| `([^`]*)`", DEPLOY, re.MULTILINE))


# Reads the app's functions in a fresh process: azure-functions allows one read per process.
FUNCTION_NAMES_PROBE = r"""
import json, function_app
print(json.dumps([f.get_function_name() for f in function_app.app.get_functions()]))
"""


@functools.cache
def function_names() -> frozenset[str]:
    probe = subprocess.run([sys.executable, "-c", FUNCTION_NAMES_PROBE], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    return frozenset(json.loads(probe.stdout.strip().splitlines()[-1]))


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


# The Functions host's own settings the template sets (not read by config.py).
HOST_TEMPLATE_SETTINGS = {"FUNCTIONS_EXTENSION_VERSION", "FUNCTIONS_WORKER_RUNTIME",
                          "AzureWebJobsStorage__accountName",
                          "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE",
                          "APPLICATIONINSIGHTS_CONNECTION_STRING"}


def test_the_template_deploys_the_settings_the_app_needs_in_azure():
    settings = set(template_settings())
    assert {"DATABASE_URL", "DATABASE_AUTH", "QUEUE_BACKEND",
            f"{SERVICE_BUS_CONNECTION}__fullyQualifiedNamespace",
            "APPLICATIONINSIGHTS_CONNECTION_STRING", "AzureWebJobsStorage__accountName",
            "STORAGE_ACCOUNT_URL", "FUNCTIONS_WORKER_RUNTIME"} <= settings
    # The identity-based connections and a connection string must not both be set: the host
    # would use AzureWebJobsStorage's string, the app STORAGE_ACCOUNT_URL's identity only
    # because no STORAGE_CONNECTION_STRING is there to tempt anyone.
    assert SERVICE_BUS_CONNECTION not in settings
    assert "AzureWebJobsStorage" not in settings
    assert "STORAGE_CONNECTION_STRING" not in settings
    # Every engine setting it sets is one the code reads.
    engine = settings - HOST_TEMPLATE_SETTINGS
    engine = {name for name in engine if not FUNCTION_SWITCH.fullmatch(name)}
    assert engine <= {field.alias for field in Settings.model_fields.values()}


def test_the_only_secret_in_the_app_settings_is_the_content_share():
    """An account key reaches the app only through WEBSITE_CONTENTAZUREFILECONNECTIONSTRING
    (Azure Files takes no managed identity); every other setting is free of keys."""
    settings = template_settings()
    keyed = {name for name, value in settings.items()
             if "listKeys" in value
             or ("ConnectionString" in value and "appInsights" not in value)}
    assert keyed == {"WEBSITE_CONTENTAZUREFILECONNECTIONSTRING"}, keyed
    # The variable holding the key is used there and nowhere else in the template.
    [variable] = re.findall(r"^var (\w+) = '[^\n]*listKeys\(\)", BICEP, re.MULTILINE)
    assert settings["WEBSITE_CONTENTAZUREFILECONNECTIONSTRING"] == variable
    assert len(re.findall(rf"\b{variable}\b", BICEP)) == 2  # defined, used once
    assert BICEP.count("listKeys") == 1


def test_setting_names_with_dots_are_read_whole():
    assert "AzureWebJobs.process_task_message.Disabled" in template_settings()
    assert "AzureWebJobs.process_task_message.Disabled" in guide_table_values()
    assert any("AzureWebJobs.process_task_message.Disabled" in command
               for command in appsettings_commands(DEPLOY))
    text = "set `AzureWebJobs.f.Disabled`. Then AzureWebJobs.f.Disabled.x"
    assert mentions(text, "AzureWebJobs.f.Disabled")
    assert not mentions("AzureWebJobs.f.Disabled.x", "AzureWebJobs.f.Disabled")
    assert not mentions("AzureWebJobs.f.Disabled", "f.Disabled")


def test_exactly_one_task_trigger_is_enabled_the_same_one_everywhere():
    choices, default = template_parameter("taskTrigger")
    settings = template_settings()
    by_choice = {
        choice: disabled({name: template_value(value, {"taskTrigger": choice})
                          for name, value in settings.items() if FUNCTION_SWITCH.fullmatch(name)})
        for choice in choices}
    # Every choice of the template disables exactly one of the two, a different one each.
    assert {frozenset(off) for off in by_choice.values()} == {
        frozenset({name}) for name in TASK_TRIGGERS}
    [main] = [command for command in appsettings_commands(DEPLOY) if "QUEUE_BACKEND" in command]
    table = {name: value for name, value in guide_table_values().items()
             if FUNCTION_SWITCH.fullmatch(name)}
    everywhere = {"template (default)": by_choice[default], "deploy.md command": disabled(main),
                  "deploy.md table": disabled(table), "example": disabled(example_values())}
    assert all(off == {"process_task_message"} for off in everywhere.values()), everywhere
    # The guide's command and table both set the two switches, so neither is left to chance.
    for settings_shown in (main, table):
        assert {FUNCTION_SWITCH.fullmatch(name)[1] for name in settings_shown
                if FUNCTION_SWITCH.fullmatch(name)} == TASK_TRIGGERS


def test_the_guide_switches_task_triggers_by_swapping_both_settings():
    [switch] = [command for command in appsettings_commands(DEPLOY)
                if command and all(FUNCTION_SWITCH.fullmatch(name) for name in command)]
    assert set(switch) == {f"AzureWebJobs.{name}.Disabled" for name in TASK_TRIGGERS}
    assert disabled(switch) == {"process_task_batch"}
    assert "taskTrigger=single" in DEPLOY


def test_function_switches_name_real_functions():
    functions = function_names()
    assert TASK_TRIGGERS <= functions
    dotted = {name for name in set(template_settings()) | example_settings() if "." in name}
    for command in appsettings_commands(DEPLOY):
        dotted |= {name for name in command if "." in name}
    texts = {"docs/deploy.md": DEPLOY, "infra/main.bicep": BICEP,
             "infra/README.md": (ROOT / "infra" / "README.md").read_text(),
             "local.settings.json.example": (ROOT / "local.settings.json.example").read_text()}
    for where, text in texts.items():
        found = set(DOTTED_HOST_SETTING.findall(text))
        assert found, f"{where} names no AzureWebJobs.<function>.Disabled"
        dotted |= found
    wrong = sorted(name for name in dotted
                   if not (match := FUNCTION_SWITCH.fullmatch(name)) or match[1] not in functions)
    assert not wrong, f"not AzureWebJobs.<function>.Disabled of a function in {sorted(functions)}"


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
