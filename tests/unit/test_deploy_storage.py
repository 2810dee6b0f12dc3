"""The jobs' storage in Azure, as infra/main.bicep and docs/deploy.md set it up, stays true to
config.py and to the rule "identity, never a connection string": the zone containers are
config.py's defaults, the app's identity has Storage Blob Data Contributor on the data account
that STORAGE_ACCOUNT_URL names, the host reaches its own account by identity too
(AzureWebJobsStorage__accountName), and the guide uploads with Entra sign-in only."""

from __future__ import annotations

import re

from config import Settings
from tests.unit.test_deploy_docs import BICEP, DEPLOY, ROOT, appsettings_commands, mentions, \
    template_settings

STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
INFRA_README = (ROOT / "infra" / "README.md").read_text()

# Bicep with its whole-line comments removed (a // inside a string, as in https://, stays).
CODE = "\n".join(line for line in BICEP.splitlines() if not line.lstrip().startswith("//"))
RESOURCE = re.compile(
    r"^resource (\w+) '([^'@]+)@([^']+)' = (?:\[for (\w+) in (\w+): )?\{", re.MULTILINE)


def zone_container_defaults() -> list[str]:
    """config.py's zone containers, in declaration order: (alias, default)."""
    return [field.default for name, field in Settings.model_fields.items()
            if name.endswith("_container")]


def zone_container_aliases() -> list[str]:
    return [field.alias for name, field in Settings.model_fields.items()
            if name.endswith("_container")]


def block(text: str, start: int) -> str:
    """The body of the {...} opening at text[start] (braces of ${...} are balanced)."""
    assert text[start] == "{"
    depth = 0
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start + 1:index]
    raise AssertionError("unbalanced braces")


def resources() -> dict[str, dict[str, str | None]]:
    """Each resource: its type, API version, loop variable and collection, and body."""
    found = {}
    for match in RESOURCE.finditer(CODE):
        symbol, rtype, version, loop_var, loop_over = match.groups()
        assert symbol not in found, symbol
        found[symbol] = {"type": rtype, "version": version, "loop_var": loop_var,
                         "loop_over": loop_over, "body": block(CODE, match.end() - 1)}
    assert found, "no resources parsed"
    return found


def prop(body: str, name: str) -> str:
    """A top-level-looking `name: value` line of a body (the first one)."""
    match = re.search(rf"^\s*{name}: ([^\n]+)$", body, re.MULTILINE)
    assert match, f"no {name} in {body[:200]!r}"
    return match[1].strip()


def string_var(name: str) -> str:
    match = re.search(rf"^var {name} = '([^']*)'$", CODE, re.MULTILINE)
    assert match, f"var {name}"
    return match[1]


def array_var(name: str) -> list[str]:
    match = re.search(rf"^var {name} = \[\n((?:\s*'[^']*'\n)+)\]", CODE, re.MULTILINE)
    assert match, f"var {name} = [ ... ]"
    return re.findall(r"'([^']*)'", match[1])


def role_assignments(role_id: str) -> list[dict[str, str | None]]:
    """The roleAssignments resources whose roleDefinitionId is role_id (through a var)."""
    found = []
    for symbol, resource in resources().items():
        if resource["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        definition = prop(resource["body"], "roleDefinitionId")
        var = re.fullmatch(
            r"subscriptionResourceId\('Microsoft\.Authorization/roleDefinitions', (\w+)\)",
            definition)
        if var and re.search(rf"^var {var[1]} = ", CODE, re.MULTILINE) \
                and string_var(var[1]) == role_id:
            found.append({"symbol": symbol, **resource})
    return found


def storage_accounts() -> dict[str, str]:
    """Storage account symbol -> body."""
    return {symbol: resource["body"] for symbol, resource in resources().items()
            if resource["type"] == "Microsoft.Storage/storageAccounts"}


def data_account() -> str:
    """The storage account STORAGE_ACCOUNT_URL names (by its symbol)."""
    url = template_settings()["STORAGE_ACCOUNT_URL"]
    match = re.fullmatch(r"'https://\$\{(\w+)\.name\}\.blob\.\$\{environment\(\)\.suffixes\.storage\}'",
                         url)
    assert match, f"STORAGE_ACCOUNT_URL is not https://<account>.blob.<suffix>: {url}"
    assert match[1] in storage_accounts()
    return match[1]


def host_account() -> str:
    """The storage account AzureWebJobsStorage__accountName names."""
    value = template_settings()["AzureWebJobsStorage__accountName"]
    match = re.fullmatch(r"(\w+)\.name", value)
    assert match and match[1] in storage_accounts(), value
    return match[1]


# -- the template -----------------------------------------------------------------------


def test_config_has_the_seven_zone_containers():
    assert zone_container_defaults() == [
        "bronze-vectors", "bronze-rasters", "bronze-misc", "silver-cogs", "silver-vectors",
        "silver-stac-assets", "silver-temp"]
    assert zone_container_aliases() == [
        "BRONZE_VECTORS_CONTAINER", "BRONZE_RASTERS_CONTAINER", "BRONZE_MISC_CONTAINER",
        "SILVER_COGS_CONTAINER", "SILVER_VECTORS_CONTAINER", "SILVER_STAC_ASSETS_CONTAINER",
        "SILVER_TEMP_CONTAINER"]


def test_the_template_creates_config_defaults_as_containers_of_the_data_account():
    all_resources = resources()
    [containers] = [resource for resource in all_resources.values()
                    if resource["type"] == "Microsoft.Storage/storageAccounts/blobServices/containers"]
    assert containers["loop_over"], "one container resource per name, in a loop"
    assert array_var(containers["loop_over"]) == zone_container_defaults()
    assert prop(containers["body"], "name") == containers["loop_var"]
    assert prop(containers["body"], "publicAccess") == "'None'"
    service = all_resources[prop(containers["body"], "parent")]
    assert service["type"] == "Microsoft.Storage/storageAccounts/blobServices"
    assert prop(service["body"], "name") == "'default'"
    assert prop(service["body"], "parent") == data_account()
    # The app does not set the container settings: their defaults are these containers.
    assert not set(zone_container_aliases()) & set(template_settings())


def test_the_data_account_is_not_the_hosts():
    accounts = storage_accounts()
    assert len(accounts) == 2
    assert data_account() != host_account()
    assert prop(accounts[data_account()], "name") != prop(accounts[host_account()], "name")
    for body in accounts.values():
        assert prop(body, "allowBlobPublicAccess") == "false"
        assert prop(body, "minimumTlsVersion") == "'TLS1_2'"
    # Data: Entra identities only by default.
    shared_key = prop(accounts[data_account()], "allowSharedKeyAccess")
    assert re.search(rf"^param {shared_key} bool = false$", CODE, re.MULTILINE)


def test_the_app_has_blob_data_contributor_on_the_data_account():
    assignments = role_assignments(STORAGE_BLOB_DATA_CONTRIBUTOR)
    for_app = [a for a in assignments
               if prop(a["body"], "principalId") == "functionApp.identity.principalId"]
    assert len(for_app) == 1, "one assignment of Storage Blob Data Contributor to the app"
    [assignment] = for_app
    assert assignment["loop_over"] is None  # unconditional
    assert prop(assignment["body"], "scope") == data_account()
    assert prop(assignment["body"], "principalType") == "'ServicePrincipal'"
    # Every assignment of the role, uploaders' too, is on the data account, never the host's.
    assert {prop(a["body"], "scope") for a in assignments} == {data_account()}


def test_the_host_reaches_its_storage_by_identity():
    settings = template_settings()
    assert "AzureWebJobsStorage" not in settings
    assert "AzureWebJobsStorage__accountName" in settings
    [assignment] = role_assignments(STORAGE_BLOB_DATA_OWNER)
    assert prop(assignment["body"], "scope") == host_account()
    assert prop(assignment["body"], "principalId") == "functionApp.identity.principalId"
    # The content share's connection string is the host account's (Azure Files needs a key).
    variable = settings["WEBSITE_CONTENTAZUREFILECONNECTIONSTRING"]
    assert re.search(rf"^var {variable} = '[^\n]*\$\{{{host_account()}\.listKeys\(\)",
                     CODE, re.MULTILINE)


def test_the_jobs_storage_is_never_a_connection_string():
    settings = template_settings()
    assert "STORAGE_ACCOUNT_URL" in settings
    assert "STORAGE_CONNECTION_STRING" not in settings
    assert "STORAGE_CONNECTION_STRING" not in CODE  # not even a commented-out one
    # Nothing reads the data account's keys.
    assert f"{data_account()}.listKeys" not in CODE


def test_storage_api_versions_are_one_published_version():
    storage = {resource["version"] for resource in resources().values()
               if resource["type"].startswith("Microsoft.Storage/")}
    assert storage == {"2023-05-01"}
    assert "Microsoft.Storage 2023-05-01" in INFRA_README


def test_every_template_parameter_is_in_the_infra_readme():
    parameters = re.findall(r"^param (\w+) ", CODE, re.MULTILINE)
    assert "dataUploaderPrincipalIds" in parameters
    missing = [name for name in parameters
               if not re.search(rf"(?<![A-Za-z0-9_]){name}(?![A-Za-z0-9_])", INFRA_README)]
    assert not missing, f"infra/README.md does not name {missing}"


def test_the_outputs_give_the_upload_target():
    for output in ("dataStorageAccountName", "storageAccountUrl", "zoneContainerNames"):
        assert re.search(rf"^output {output} ", CODE, re.MULTILINE), output


# -- the guide ----------------------------------------------------------------------------


def test_the_guide_creates_the_same_containers():
    loops = re.findall(r"^for CONTAINER in ([^;\n]+); do\n\s*az storage container-rm create",
                       DEPLOY, re.MULTILINE)
    assert len(loops) == 1
    assert loops[0].split() == zone_container_defaults()
    for alias, default in zip(zone_container_aliases(), zone_container_defaults()):
        assert mentions(DEPLOY, alias) and f"`{default}`" in DEPLOY


def test_the_guide_grants_the_same_storage_roles():
    grants = re.findall(r"az role assignment create --assignee-object-id \"\$PRINCIPAL_ID\" \\\n"
                        r"\s*--assignee-principal-type ServicePrincipal --role \"([^\"]+)\" "
                        r"--scope \"\$(\w+)\"", DEPLOY)
    assert ("Storage Blob Data Contributor", "DATA_ID") in grants
    assert ("Storage Blob Data Owner", "STORAGE_ID") in grants
    assert 'DATA_ID=$(az storage account show -g "$RG" -n "$DATA_STORAGE"' in DEPLOY
    assert 'STORAGE_ID=$(az storage account show -g "$RG" -n "$STORAGE"' in DEPLOY
    assert "--allow-shared-key-access false" in DEPLOY


def test_the_guide_sets_storage_by_identity_and_removes_the_connection_string():
    [main] = [command for command in appsettings_commands(DEPLOY) if "QUEUE_BACKEND" in command]
    assert main["STORAGE_ACCOUNT_URL"] == "https://$DATA_STORAGE.blob.core.windows.net"
    assert main["AzureWebJobsStorage__accountName"] == "$STORAGE"
    for command in appsettings_commands(DEPLOY):
        assert "STORAGE_CONNECTION_STRING" not in command
        assert "AzureWebJobsStorage" not in command
    assert re.search(r"az functionapp config appsettings delete [^\n]*"
                     r"--setting-names AzureWebJobsStorage$", DEPLOY, re.MULTILINE)
    for name in ("AzureWebJobsStorage__accountName", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
                 "WEBSITE_CONTENTSHARE", "STORAGE_ACCOUNT_URL", "STORAGE_CONNECTION_STRING"):
        assert re.search(rf"^\| [^|]*`{re.escape(name)}`[^|]* \|", DEPLOY, re.MULTILINE), \
            f"step 9's table has no row for {name}"


def test_the_guide_explains_the_separate_data_account():
    assert "### Why a separate data account" in DEPLOY
    assert "(#why-a-separate-data-account)" in DEPLOY


def test_the_guide_uploads_into_bronze_with_entra_sign_in_only():
    commands = re.findall(r"^az storage blob (?:[^\n]*\\\n)*[^\n]*", DEPLOY, re.MULTILINE)
    assert any(command.startswith("az storage blob upload-batch") for command in commands)
    for command in commands:
        assert "--auth-mode login" in command, command
        assert "--account-key" not in command and "--connection-string" not in command
    bronze = {name for name in zone_container_defaults() if name.startswith("bronze-")}
    targets = set(re.findall(r"(?:--destination|--container-name|-c) (\S+)",
                             "\n".join(commands)))
    assert targets and targets <= bronze, targets
    azcopy = re.findall(r"^azcopy copy \S+ \"https://\$DATA_STORAGE\.blob\.core\.windows\.net/"
                        r"([a-z0-9-]+)/", DEPLOY, re.MULTILINE)
    assert azcopy and set(azcopy) <= bronze
    assert "AZCOPY_AUTO_LOGIN_TYPE" in DEPLOY and "azcopy login" in DEPLOY
    assert "(#putting-files-into-the-bronze-containers)" in DEPLOY
