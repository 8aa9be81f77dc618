"""Secret references: resolved into the PointContext at run time (env, file, Vault through hvac, plug-ins), checked
at load without resolving, and never in a repr, an error, a plan or the store."""

from __future__ import annotations

import json
import os
import socket
import textwrap
from datetime import date
from importlib.metadata import EntryPoint, EntryPoints
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from click.testing import CliRunner

from drivers.nftables import NftSettings
from orchestrator.cli.main import main
from orchestrator.engine import secrets as secrets_module
from orchestrator.engine.engine import Actor, Engine, EngineOptions
from orchestrator.engine.project import load_checked_inventory, load_project
from orchestrator.engine.registry import driver_settings_model
from orchestrator.engine.retry import RetryPolicy
from orchestrator.engine.secret_check import WHERE_RESOLVED
from orchestrator.engine.secrets import (
    SECRET_BACKEND_ENTRY_POINT_GROUP,
    SecretLookupError,
    SecretText,
    parse_reference,
)
from orchestrator.engine.sessions import Sessions
from orchestrator.engine.transaction import ApplyOptions, apply_plan
from orchestrator.engine.vault import VaultReference, parse_vault_reference
from orchestrator.inventory.inventory import load_nornir_inventory
from orchestrator.model import (
    Action,
    ApplyReport,
    Capabilities,
    Checkpoint,
    NativeChange,
    Observed,
    Ordering,
    PointContext,
    RenderRequest,
    Ruleset,
    Snapshot,
    canonical_json,
)
from orchestrator.model.errors import InventoryError, PermanentDriverError, TransientDriverError
from orchestrator.store import Store, open_store
from tests.vault_fake import FakeVault, vault

__all__ = ["vault"]  # the pytest fixture, used by name

TODAY = date(2026, 11, 21)
FAST = RetryPolicy(attempts=3, base=0.0, cap=0.0)
ENV_SECRET = "env-S3cret!pw"
FILE_SECRET = "file-S3cret!enable"
VAULT_SECRET = "vault-S3cret!pw"
VAULT_ENABLE = "vault-S3cret!enable"
VAULT_TOKEN_VALUE = "vault-S3cret!api-token"
EVERY_SECRET = (ENV_SECRET, FILE_SECRET, VAULT_SECRET, VAULT_ENABLE, VAULT_TOKEN_VALUE)

POLICY = """\
apiVersion: microseg/v1
defaults: {action: deny}
groups:
  web: {selector: {app: web}}
  admins: {cidrs: [10.9.0.0/24]}
rules:
  - name: admin-ssh
    from: admins
    to: web
    services: [tcp/22]
    action: allow
"""


def host(workload: str, **fields: Any) -> dict[str, Any]:
    """A hosts.yaml entry (an nftables point protecting ``workload``); ``extras``/``settings`` go where they belong."""
    extras = fields.pop("extras", None)
    settings = fields.pop("settings", {})
    entry: dict[str, Any] = {"hostname": "127.0.0.1", "username": "admin", **fields}
    if extras is not None:
        entry["connection_options"] = {"nftables": {"extras": extras}}
    entry["data"] = {"microseg": {"driver": "nftables", "protects": {"workloads": [workload]}, "settings": settings}}
    return entry


def write_project(root: Path, hosts: dict[str, Any] | str) -> tuple[Path, Path]:
    """A policy directory and an inventory (hosts given as data, or as hosts.yaml text); their paths."""
    policies, inventory = root / "policies", root / "inventory"
    policies.mkdir(parents=True, exist_ok=True)
    inventory.mkdir(parents=True, exist_ok=True)
    (policies / "policy.yaml").write_text(POLICY)
    text = hosts if isinstance(hosts, str) else yaml.safe_dump(hosts, sort_keys=False)
    (inventory / "hosts.yaml").write_text(textwrap.dedent(text))
    workloads = [{"name": f"web{i}", "addresses": [f"10.1.0.{i}"], "labels": {"app": "web"}} for i in (1, 2)]
    (inventory / "workloads.yaml").write_text(yaml.safe_dump({"workloads": workloads}))
    return policies, inventory


class Recorder:
    """A driver factory that keeps the PointContext every driver instance was built with."""

    def __init__(self) -> None:
        self.contexts: dict[str, PointContext] = {}
        self.built = 0
        recorder = self

        class RecordingDriver:
            name: ClassVar[str] = "nftables"
            capabilities: ClassVar[Capabilities] = Capabilities()

            def __init__(self, context: PointContext) -> None:
                recorder.contexts[context.name] = context
                recorder.built += 1

            def close(self) -> None:
                return None

        self.driver = RecordingDriver


class StandInSettings(NftSettings):
    """The settings of the stand-in drivers these tests put in nftables' place: secret-named settings too."""

    api_token: str | None = None
    client_secret: str | None = None
    private_key_passphrase: str | None = None
    region: str | None = None


@pytest.fixture(autouse=True)
def _stand_in_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inventory is typed with the stand-in driver's settings model, as it would be for a driver that
    declares secret settings (no built-in driver reads a credential from its settings today)."""
    monkeypatch.setattr("orchestrator.engine.project.driver_settings_model",
                        lambda name: StandInSettings if name == "nftables" else driver_settings_model(name))


def sessions(inventory_dir: Path, recorder: Recorder) -> Sessions:
    inventory = load_checked_inventory(inventory_dir)
    return Sessions(inventory, load_nornir_inventory(inventory_dir), 5.0, {"nftables": recorder.driver}, retry=FAST)


def context_of(inventory_dir: Path, point: str = "fw1") -> PointContext:
    recorder = Recorder()
    with_sessions = sessions(inventory_dir, recorder)
    try:
        with_sessions.driver(point)
    finally:
        assert with_sessions.close() == []
    return recorder.contexts[point]


def secret_file(directory: Path, content: str, mode: int = 0o600) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "enable.secret"
    path.write_text(content)
    path.chmod(mode)
    return path


def assert_no_secret(text: str) -> None:
    for value in EVERY_SECRET:
        assert value not in text


# ------------------------------------------------------------------------------ env and file


def test_env_and_file_references_reach_the_driver_as_plain_values(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSEG_T_FW1_PASSWORD", ENV_SECRET)
    monkeypatch.setenv("MSEG_T_API_TOKEN", VAULT_TOKEN_VALUE)
    path = secret_file(tmp_path / "secrets", FILE_SECRET + "\n")
    _, inventory = write_project(tmp_path, {"fw1": host(
        "web1", password="${env:MSEG_T_FW1_PASSWORD}",
        extras={"secret": f"${{file:{path}}}", "key_passphrase": "$${literally-this}", "host_key_policy": "strict"},
        settings={"table": "microseg", "api_token": "${env:MSEG_T_API_TOKEN}", "client_secret": VAULT_ENABLE},
    )})
    context = context_of(inventory)
    connection = context.connection
    assert connection.password == ENV_SECRET and isinstance(connection.password, SecretText)
    assert connection.extras == {"secret": FILE_SECRET, "key_passphrase": "${literally-this}",
                                 "host_key_policy": "strict"}  # trailing newline stripped, $${ unescaped
    assert context.settings == {"table": "microseg", "api_token": VAULT_TOKEN_VALUE, "client_secret": VAULT_ENABLE}
    assert connection.username == "admin" and connection.hostname == "127.0.0.1"
    # what a driver or the engine could print about its context shows no secret, resolved or written plainly
    shown = repr(context) + str(context) + f"{connection!r} {dict(connection.extras)} {context.settings}"
    assert_no_secret(shown)
    assert "'***'" in shown and "strict" in shown and "microseg" in shown
    assert json.loads(json.dumps({"pw": connection.password})) == {"pw": ENV_SECRET}  # still the real text in use


def test_a_missing_variable_or_file_names_point_field_and_reference_never_a_value(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSEG_T_MISSING", raising=False)
    monkeypatch.setenv("MSEG_T_FW1_PASSWORD", ENV_SECRET)
    monkeypatch.setenv("MSEG_T_EMPTY", "")
    missing = tmp_path / "nowhere" / "enable.secret"
    _, inventory = write_project(tmp_path, {
        "fw1": host("web1", password="${env:MSEG_T_MISSING}"),
        "fw2": host("web2", password="${env:MSEG_T_FW1_PASSWORD}", extras={"secret": f"${{file:{missing}}}"}),
    })
    with pytest.raises(PermanentDriverError) as caught:
        context_of(inventory, "fw1")
    assert str(caught.value) == ("fw1 (nftables): password: ${env:MSEG_T_MISSING}: environment variable "
                                 "MSEG_T_MISSING is not set (export it before running microseg)")
    with pytest.raises(PermanentDriverError) as caught:
        context_of(inventory, "fw2")
    assert str(caught.value) == f"fw2 (nftables): extras.secret: ${{file:{missing}}}: file {missing} does not exist"
    assert_no_secret(str(caught.value))
    directory = secret_file(tmp_path / "secrets", "x").parent
    _, inventory = write_project(tmp_path, {"fw1": host("web1", password=f"${{file:{directory}}}"),
                                            "fw2": host("web2", password="${env:MSEG_T_EMPTY}")})
    with pytest.raises(PermanentDriverError, match=r"fw1 \(nftables\): password: .* is a directory"):
        context_of(inventory, "fw1")
    with pytest.raises(PermanentDriverError, match="environment variable MSEG_T_EMPTY is empty"):
        context_of(inventory, "fw2")


def test_the_cli_reports_an_unresolvable_reference_as_a_failed_point_without_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSEG_T_MISSING", raising=False)
    policies, inventory = write_project(tmp_path, {"fw1": host("web1", password="${env:MSEG_T_MISSING}")})
    args = ["--policy", str(policies), "--inventory", str(inventory), "--today", "2026-11-21",
            "--store", f"sqlite:///{tmp_path}/state.db", "plan"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "password: ${env:MSEG_T_MISSING}: environment variable MSEG_T_MISSING is not set" in result.output


# ------------------------------------------------------------------------------ Vault (KV v2) through hvac


def vault_inventory(root: Path, **overrides: str) -> Path:
    fields = {"username": "${vault:secret/net/fw1#username}", "password": "${vault:secret/net/fw1#password}",
              "secret": "${vault:secret/data/net/fw1#enable}", **overrides}
    _, inventory = write_project(root, {
        "fw1": host("web1", username=fields["username"], password=fields["password"],
                    extras={"secret": fields["secret"]}),
        "fw2": host("web2", password="${vault:secret/net/fw1#password}"),
    })
    return inventory


def test_vault_references_resolve_through_hvac_one_read_per_secret_per_run(tmp_path: Path, vault: FakeVault) -> None:
    vault.put("secret", "net/fw1", {"username": "netops", "password": VAULT_SECRET, "enable": VAULT_ENABLE})
    recorder = Recorder()
    run = sessions(vault_inventory(tmp_path), recorder)
    try:
        first, again = run.driver("fw1"), run.driver("fw1")
        run.driver("fw2")
    finally:
        assert run.close() == []
    assert first is again and recorder.built == 2  # once per point and run
    connection = recorder.contexts["fw1"].connection
    assert (connection.username, connection.password, dict(connection.extras)) == (
        "netops", VAULT_SECRET, {"secret": VAULT_ENABLE})
    assert recorder.contexts["fw2"].connection.password == VAULT_SECRET
    assert [(s.path, s.token, s.status) for s in vault.seen] == [("/v1/secret/data/net/fw1", vault.token, 200)]
    assert_no_secret(repr(recorder.contexts["fw1"]))


def test_a_bad_vault_token_is_a_permanent_error_naming_the_fix(tmp_path: Path, vault: FakeVault,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    vault.put("secret", "net/fw1", {"username": "netops", "password": VAULT_SECRET, "enable": VAULT_ENABLE})
    monkeypatch.setenv("VAULT_TOKEN", "s.not-the-token")
    with pytest.raises(PermanentDriverError) as caught:
        context_of(vault_inventory(tmp_path))
    message = str(caught.value)
    assert not isinstance(caught.value, TransientDriverError)
    assert message.startswith("fw1 (nftables): username: ${vault:secret/net/fw1#username}: Vault refused the token "
                              "(HTTP 403, permission denied): check VAULT_TOKEN")
    assert "s.not-the-token" not in message and vault.token not in message
    assert vault.reads() == 1  # not retried


def test_a_missing_vault_secret_key_or_version_is_a_permanent_error(tmp_path: Path, vault: FakeVault) -> None:
    vault.put("secret", "net/fw1", {"username": "netops", "password": VAULT_SECRET, "enable": VAULT_ENABLE})
    with pytest.raises(PermanentDriverError) as caught:
        context_of(vault_inventory(tmp_path, username="admin", password="${vault:secret/net/fw9#password}"))
    assert str(caught.value) == (f"fw1 (nftables): password: ${{vault:secret/net/fw9#password}}: no secret at "
                                 f"{vault.url}/v1/secret/data/net/fw9 (HTTP 404)")
    with pytest.raises(PermanentDriverError) as caught:
        context_of(vault_inventory(tmp_path / "b", username="admin", secret="${vault:secret/net/fw1#enabel}"))
    assert str(caught.value).endswith("Vault secret secret/data/net/fw1 has no key 'enabel' "
                                      "(its keys: enable, password, username)")
    assert_no_secret(str(caught.value))
    vault.delete_latest("secret", "net/fw1")
    with pytest.raises(PermanentDriverError, match=r"no secret at .*/v1/secret/data/net/fw1 \(HTTP 404"):
        context_of(vault_inventory(tmp_path / "c", username="admin"))
    assert vault.reads() == 3  # a permanent error is not retried


def test_a_pinned_version_and_the_namespace_are_sent_as_vault_expects(tmp_path: Path, vault: FakeVault,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    vault.put("secret", "net/fw1", {"password": "old-" + VAULT_SECRET})
    vault.put("secret", "net/fw1", {"password": VAULT_SECRET})
    vault.put("teams/net", "fw1", {"enable": VAULT_ENABLE})
    monkeypatch.setenv("VAULT_NAMESPACE", "ns1/")
    pinned = "${vault:secret/net/fw1?version=1#password}"
    context = context_of(vault_inventory(tmp_path, username="admin", password=pinned,
                                         secret="${vault:teams/net/data/fw1#enable}"))
    assert context.connection.password == "old-" + VAULT_SECRET
    assert context.connection.extras == {"secret": VAULT_ENABLE}
    assert sorted((s.path, s.namespace) for s in vault.seen) == [
        ("/v1/secret/data/net/fw1?version=1", "ns1/"), ("/v1/teams/net/data/fw1", "ns1/")]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_throttled_or_failing_vault_is_transient_and_retried(tmp_path: Path, vault: FakeVault, status: int) -> None:
    vault.put("secret", "net/fw1", {"username": "netops", "password": VAULT_SECRET, "enable": VAULT_ENABLE})
    vault.fail(status, times=1)
    assert context_of(vault_inventory(tmp_path)).connection.password == VAULT_SECRET  # the retry succeeded
    assert [s.status for s in vault.seen] == [status, 200]
    vault.fail(status, times=FAST.attempts)
    with pytest.raises(TransientDriverError) as caught:
        context_of(vault_inventory(tmp_path / "again"))
    assert f"Vault is unavailable (HTTP {status}" in str(caught.value)
    assert [s.status for s in vault.seen[2:]] == [status] * FAST.attempts


def test_an_unreachable_vault_is_transient(tmp_path: Path, vault: FakeVault, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("VAULT_ADDR", f"http://127.0.0.1:{port}")
    with pytest.raises(TransientDriverError, match=f"cannot reach Vault at http://127.0.0.1:{port}"):
        context_of(vault_inventory(tmp_path))
    monkeypatch.delenv("VAULT_ADDR")
    with pytest.raises(PermanentDriverError, match="VAULT_ADDR is not set"):
        context_of(vault_inventory(tmp_path / "b"))
    monkeypatch.setenv("VAULT_ADDR", vault.url)
    monkeypatch.delenv("VAULT_TOKEN")
    with pytest.raises(PermanentDriverError, match="no Vault token: set VAULT_TOKEN"):
        context_of(vault_inventory(tmp_path / "c"))
    Path(os.environ["HOME"], ".vault-token").write_text(vault.token + "\n")  # what `vault login` leaves
    vault.put("secret", "net/fw1", {"username": "netops", "password": VAULT_SECRET, "enable": VAULT_ENABLE})
    assert context_of(vault_inventory(tmp_path / "d")).connection.password == VAULT_SECRET


def test_vault_reference_syntax() -> None:
    assert parse_vault_reference("secret/net/sw1#password") == VaultReference("secret", "net/sw1", "password")
    assert parse_vault_reference("secret/data/net/sw1#password") == VaultReference("secret", "net/sw1", "password")
    assert parse_vault_reference("teams/net/data/sw1?version=3#enable") == VaultReference("teams/net", "sw1",
                                                                                          "enable", 3)
    for bad in ("secret/net/sw1", "secret#password", "secret/#password", "secret/net/../x#k", "s/n?version=0#k",
                "secret/net/sw1#a#b"):
        with pytest.raises(ValueError, match="MOUNT/PATH#KEY"):
            parse_vault_reference(bad)


# ------------------------------------------------------------------------------ checked at load, never resolved


BROKEN_HOSTS = """\
fw1:
  hostname: 127.0.0.1
  username: admin
  password: "${vualt:secret/net/fw1#password}"
  connection_options:
    nftables:
      extras:
        secret: "${env:}"
        enable_password: "${vault:secret/net/fw1}"
        key_file: "${env:KEY_FILE}"
  data:
    microseg:
      driver: nftables
      protects: {workloads: [web1]}
      settings:
        api_token: "${file:relative/token}"
        region: "${env:REGION}"
        private_key_passphrase: "pre${env:PASSPHRASE}"
fw2:
  hostname: 127.0.0.1
  password: "${env:MSEG_T_NEVER_SET}"
  connection_options: {nftables: {extras: {secret: "${vault:secret/net/fw2#enable}"}}}
  data: {microseg: {driver: nftables, protects: {workloads: [web2]}}}
"""


def test_validation_checks_reference_syntax_with_file_and_line_without_resolving(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MSEG_T_NEVER_SET", "VAULT_ADDR", "VAULT_TOKEN"):
        monkeypatch.delenv(name, raising=False)  # fw2 is valid: nothing is resolved, so nothing is missing
    _, inventory = write_project(tmp_path, BROKEN_HOSTS)
    with pytest.raises(InventoryError) as caught:
        load_checked_inventory(inventory)
    hosts = inventory / "hosts.yaml"
    found = [(str(d.location), d.code, d.message, d.hint) for d in caught.value.diagnostics]
    assert found == [
        (f"{hosts}:4:13", "unknown-secret-backend", "host 'fw1': password: unknown secret backend 'vualt'",
         "did you mean 'vault'?"),
        (f"{hosts}:8:17", "secret-reference", "host 'fw1': connection_options.nftables.extras.secret: a secret "
         "reference needs something after the backend name (e.g. ${env:NAME}) (write '$${' for a literal '${')",
         None),
        (f"{hosts}:9:26", "secret-reference", "host 'fw1': connection_options.nftables.extras.enable_password: "
         "${vault:secret/net/fw1}: 'secret/net/fw1' is not MOUNT/PATH#KEY (e.g. secret/net/sw1#password; "
         "?version=N before '#' pins a version)", None),
        (f"{hosts}:10:19", "secret-reference-place", "host 'fw1': connection_options.nftables.extras.key_file: "
         f"${{env:KEY_FILE}} would be used as written: {WHERE_RESOLVED}", None),
        (f"{hosts}:16:20", "secret-reference", "host 'fw1': data.microseg.settings.api_token: "
         "${file:relative/token}: 'relative/token' is not an absolute path (a relative one would depend on where "
         "microseg runs)", None),
        (f"{hosts}:17:17", "secret-reference-place", "host 'fw1': data.microseg.settings.region: ${env:REGION} "
         f"would be used as written: {WHERE_RESOLVED}", None),
        (f"{hosts}:18:33", "secret-reference", "host 'fw1': data.microseg.settings.private_key_passphrase: a secret "
         "reference must be the whole value (nothing is resolved inside a longer text)", None),
    ]
    assert WHERE_RESOLVED.startswith("references are resolved only in username, password")
    assert str(caught.value).startswith(f"inventory {inventory} has 7 errors")
    result = CliRunner().invoke(main, ["--policy", str(tmp_path / "policies"), "--inventory", str(inventory),
                                       "--today", "2026-11-21", "validate"], catch_exceptions=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{hosts}:4:13: error: host 'fw1': password: unknown secret backend 'vualt' (did you mean 'vault'?)" in \
        " ".join(result.output.split())


def test_a_secret_file_others_can_read_is_a_warning(tmp_path: Path) -> None:
    private = secret_file(tmp_path / "private", FILE_SECRET)
    shared = secret_file(tmp_path / "shared", FILE_SECRET, mode=0o644)
    policies, inventory = write_project(tmp_path, {"fw1": host("web1", password=f"${{file:{private}}}"),
                                                   "fw2": host("web2", password=f"${{file:{shared}}}")})
    project = load_project(policies, inventory, today=TODAY)
    warnings = [(d.severity.value, d.code, d.message) for d in project.diagnostics if d.code == "secret-file-mode"]
    assert warnings == [("warning", "secret-file-mode", f"host 'fw2': password: secret file {shared} is readable by "
                         "every user (mode 644): chmod 600 it")]


def test_reference_grammar() -> None:
    assert str(parse_reference("${vault:secret/x#k}")) == "${vault:secret/x#k}"
    assert parse_reference("plain") is None and parse_reference("$${env:X}") is None
    for bad in ("${env:X", "${envX}", "${:X}", "${env:}", "${1env:X}"):
        with pytest.raises(InventoryError) as caught:
            parse_reference(bad)
        assert bad not in str(caught.value)


# ------------------------------------------------------------------------------ third-party backends


class _FakeKeyring:
    """A third-party backend: ``${keyring:service/user}``."""

    closed = 0

    def check(self, reference: str) -> str | None:
        return None if reference.count("/") == 1 else f"{reference!r} is not SERVICE/USER"

    def resolve(self, reference: str) -> str:
        if reference == "net/gone":
            raise SecretLookupError("no such keyring entry")
        return {"net/fw1": VAULT_ENABLE}.get(reference, "")

    def close(self) -> None:
        type(self).closed += 1


def test_a_third_party_backend_plugs_in_through_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = EntryPoint("keyring", f"{__name__}:_FakeKeyring", SECRET_BACKEND_ENTRY_POINT_GROUP)
    monkeypatch.setattr(secrets_module, "entry_points",
                        lambda *, group: EntryPoints([fake] if group == SECRET_BACKEND_ENTRY_POINT_GROUP else []))
    _, inventory = write_project(tmp_path, {"fw1": host("web1", password="${keyring:net/fw1}"),
                                            "fw2": host("web2", password="${keyring:net/gone}")})
    context = context_of(inventory)
    assert context.connection.password == VAULT_ENABLE and _FakeKeyring.closed == 1
    with pytest.raises(PermanentDriverError, match=r"fw2 \(nftables\): password: \$\{keyring:net/gone\}: no such"):
        context_of(inventory, "fw2")
    _, broken = write_project(tmp_path / "b", {"fw1": host("web1", password="${keyring:no-slash}"),
                                               "fw2": host("web2", password="${vault:secret/x#k}")})
    with pytest.raises(InventoryError) as caught:
        load_checked_inventory(broken)
    assert [(d.code, d.message) for d in caught.value.diagnostics] == [
        ("secret-reference", "host 'fw1': password: ${keyring:no-slash}: 'no-slash' is not SERVICE/USER"),
        ("unknown-secret-backend", "host 'fw2': password: unknown secret backend 'vault'"),  # not installed here
    ]
    assert caught.value.diagnostics[1].hint == "known secret backends: env, file, keyring"


# ------------------------------------------------------------------------------ a whole run, recorded


class EchoDriver:
    """An in-memory point whose driver echoes its whole context into everything the engine keeps (a careless driver)."""

    name: ClassVar[str] = "nftables"
    capabilities: ClassVar[Capabilities] = Capabilities()
    states: ClassVar[dict[str, Any]] = {}

    def __init__(self, context: PointContext) -> None:
        self.context = context
        self.point = context.name

    def fetch(self) -> Snapshot:
        owned = self.states.get(self.point)
        native = {"owned": owned, "seen": repr(self.context), "auth": {"password": self.context.connection.password}}
        return Snapshot(self.point, self.name, native, stable={"owned": owned})

    def normalize(self, snapshot: Snapshot) -> Observed:
        owned = snapshot.native["owned"]
        if owned is None:
            return Observed(Ruleset(self.point, Ordering.FIRST_MATCH, Action.DENY, ()))
        return Observed(Ruleset.from_dict(owned))

    def render(self, request: RenderRequest) -> NativeChange:
        owned = canonical_json(request.intended.to_dict(with_provenance=False))
        return NativeChange(self.point, self.name, "json", (owned, f"# as {self.context.connection!r}"))

    def checkpoint(self) -> Checkpoint:
        snapshot = self.fetch()
        return Checkpoint(self.point, self.name, snapshot.native, snapshot.fingerprint())

    def apply(self, change: NativeChange) -> ApplyReport:
        self.states[self.point] = json.loads(change.commands[0])
        return ApplyReport(self.point, 1, len(change.commands), 0.0, output=f"applied with {self.context!r}")

    def rollback(self, checkpoint: Checkpoint) -> None:
        self.states[self.point] = checkpoint.native["owned"]

    def close(self) -> None:
        return None


def run_with_secrets(root: Path, store: Store, vault: FakeVault, monkeypatch: pytest.MonkeyPatch) -> tuple[str, ...]:
    """Plan, record and apply a project whose secrets come from ``${env:…}``, ``${file:…}`` and the Vault fake, with
    one point whose reference fails; returns the secret values the run used."""
    monkeypatch.setenv("MSEG_T_FW1_PASSWORD", ENV_SECRET)
    vault.put("secret", "net/fw", {"enable": VAULT_ENABLE, "password": VAULT_SECRET, "api": VAULT_TOKEN_VALUE})
    path = secret_file(root / "secrets", FILE_SECRET)
    policies, inventory = write_project(root, {
        "fw1": host("web1", password="${env:MSEG_T_FW1_PASSWORD}", extras={"secret": "${vault:secret/net/fw#enable}"},
                    settings={"api_token": "${vault:secret/net/fw#api}", "client_secret": f"${{file:{path}}}"}),
        "fw2": host("web2", password="${vault:secret/net/fw#password}", extras={"secret": "${vault:secret/net/fw#x}"}),
    })
    project = load_project(policies, inventory, today=TODAY)
    EchoDriver.states.clear()
    engine = Engine(project, load_nornir_inventory(inventory), store, Actor("tester"),
                    EngineOptions(workers=2, retry=FAST), driver_overrides={"nftables": EchoDriver})
    with engine:
        plan = engine.plan()
        assert sorted(plan.points) == ["fw1"] and "has no key 'x'" in plan.failures["fw2"], plan.failures
        engine.record_plan("plan", plan, {"source": "test"})
        result = apply_plan(engine, plan, ApplyOptions(), {})
        assert result.by_state() == {"new": ["fw1"]}, result.to_dict()
    for failure in plan.failures.values():
        assert_no_secret(failure)
    assert EchoDriver.states["fw1"]["rules"]  # the change really went through
    return EVERY_SECRET


def test_a_run_with_referenced_secrets_keeps_them_out_of_plans_and_reports(tmp_path: Path, vault: FakeVault,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with open_store(f"sqlite:///{tmp_path}/state.db") as store:
        used = run_with_secrets(tmp_path, store, vault, monkeypatch)
        runs = store.runs(limit=10)
        shown = json.dumps([store.plans(r.id) for r in runs] + [r.to_dict() for r in runs], default=str)
    assert all(value not in shown for value in used)
    assert "'***'" in shown  # the careless driver's echo is there, masked
    assert [s.path for s in vault.seen] == ["/v1/secret/data/net/fw"]  # one read for the whole run



def test_only_the_points_a_run_works_on_resolve_their_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSEG_T_FW1_PASSWORD", ENV_SECRET)
    monkeypatch.delenv("MSEG_T_MISSING", raising=False)
    policies, inventory = write_project(tmp_path, {"fw1": host("web1", password="${env:MSEG_T_FW1_PASSWORD}"),
                                                   "fw2": host("web2", password="${env:MSEG_T_MISSING}")})
    EchoDriver.states.clear()
    with open_store(f"sqlite:///{tmp_path}/state.db") as store, Engine(
            load_project(policies, inventory, today=TODAY), load_nornir_inventory(inventory), store, Actor("tester"),
            EngineOptions(retry=FAST), driver_overrides={"nftables": EchoDriver}) as engine:
        assert not engine.plan(["fw1"]).failures  # fw2's missing variable is never looked up
        assert list(engine.plan().failures) == ["fw2"]
