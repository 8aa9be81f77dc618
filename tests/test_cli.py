"""The CLI end to end on the worked example (policies/, inventory/) and on broken input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli.main import main
from tests.conftest import REPO

TODAY = "2026-11-21"


def run(*args: str, cwd: Path = REPO) -> tuple[int, str, str]:
    runner = CliRunner()
    base = ["--policy", str(cwd / "policies"), "--inventory", str(cwd / "inventory"), "--today", TODAY]
    result = runner.invoke(main, [*base, *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def run_json(*args: str) -> tuple[int, dict]:
    code, out, _ = run(*args, "--json")
    return code, json.loads(out)


def test_validate_the_worked_example() -> None:
    code, data = run_json("validate")
    assert code == 0 and data["ok"]
    assert data["points"] == 13 and data["workloads"] == 22 and data["rules"] == 12
    assert [d for d in data["diagnostics"] if d["severity"] == "error"] == []


def test_lint_the_worked_example_is_clean() -> None:
    code, data = run_json("lint")
    assert code == 0 and data == {"ok": True, "findings": []}


def test_compile_json_is_deterministic_and_covers_every_point() -> None:
    first = run("compile", "--json")[1]
    assert first == run("compile", "--json")[1]
    points = json.loads(first)["points"]
    assert len(points) == 13
    sg = points["aws-sg-dev-web"]["ruleset"]
    assert sg["ordering"] == "unordered_allow" and {r["action"] for r in sg["rules"]} == {"permit"}
    ios = points["sw-dev-ios"]["ruleset"]
    assert not ios["stateful"]
    assert any(r["provenance"]["note"] == "return path" for r in ios["rules"])
    assert all(len(r["src"]) == 1 and len(r["dst"]) == 1 for r in ios["rules"])  # 1 prefix per ACE
    for point in points.values():
        assert point["stats"]["emitted"] == len(point["ruleset"]["rules"])


def test_compile_summary_agrees_with_the_full_compile_at_a_fraction_of_the_size() -> None:
    code, full = run_json("compile")
    code_summary, summary = run_json("compile", "--summary")
    assert code == code_summary == 0
    assert set(summary["points"]) == set(full["points"])
    for name, point in full["points"].items():
        rules = point["ruleset"]["rules"]
        counts = {d: sum(r["direction"] == d for r in rules) for d in ("egress", "ingress")}
        assert summary["points"][name]["rules"] == counts, name
        assert summary["points"][name]["stats"] == point["stats"]
        assert summary["points"][name]["stateful"] == point["ruleset"]["stateful"]
    assert summary["totals"]["emitted"] == sum(p["stats"]["emitted"] for p in full["points"].values())
    assert len(json.dumps(summary)) * 30 < len(json.dumps(full))
    code, out, _ = run("compile", "--summary")
    assert code == 0 and "compiled points" in out
    assert f"{len(full['points'])} points: " in out and "rules emitted" in out


def test_compile_one_target_and_unknown_target() -> None:
    code, data = run_json("compile", "--target", "db-prod-01")
    assert code == 0 and list(data["points"]) == ["db-prod-01"]
    code, _out, err = run("compile", "--target", "db-prod-1")
    assert code == 1 and "db-prod-01" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("src", "dst", "service", "verdict", "policy_rule"),
    [
        ("app-prod", "db-prod", "tcp/5432", "allowed", "shop-app-to-db-prod"),
        ("web-prod", "db-prod", "tcp/5432", "denied", None),
        ("10.30.2.11", "10.20.3.11", "tcp/5432", "denied", "deny-dev-to-prod"),
        ("8.8.8.8", "web-prod", "tcp/443", "allowed", "internet-to-web"),
        ("8.8.8.8", "app-prod", "tcp/8443", "denied", None),
        ("203.0.113.10", "app-prod", "tcp/8443", "allowed", "vendor-acme-api-tests"),
    ],
)
def test_check_flow_on_the_worked_example(src: str, dst: str, service: str, verdict: str,
                                          policy_rule: str | None) -> None:
    code, data = run_json("check-flow", "--from", src, "--to", dst, "--service", service)
    assert data["verdict"] == verdict
    assert code == (0 if verdict == "allowed" else 2)
    deciding = {name for d in data["policy"] for name in d["policy_rules"]}
    assert deciding == ({policy_rule} if policy_rule else set())
    assert data["points"], "every queried flow crosses at least one enforcement point of the example"
    for point in data["points"]:
        assert point["verdict"] in {"allowed", "denied"}


def test_check_flow_after_expiry_closes_the_temporary_hole() -> None:
    runner = CliRunner()
    args = ["--policy", str(REPO / "policies"), "--inventory", str(REPO / "inventory"), "--today", "2027-07-01",
            "check-flow", "--from", "203.0.113.10", "--to", "app-prod", "--service", "tcp/8443", "--json"]
    result = runner.invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 2 and json.loads(result.stdout)["verdict"] == "denied"


def test_check_flow_names_the_point_and_rule_that_decide() -> None:
    code, data = run_json("check-flow", "--from", "10.20.2.11", "--to", "10.20.3.11", "--service", "tcp/5432")
    assert code == 0
    by_point = {(p["point"], p["direction"]): p for p in data["points"]}
    assert set(by_point) >= {("app-prod-01", "egress"), ("db-prod-01", "ingress"), ("dc-prod-nxos", "ingress")}
    db = by_point[("db-prod-01", "ingress")]
    [decision] = db["decisions"]
    assert decision["action"] == "permit" and decision["policy_rules"] == ["shop-app-to-db-prod"]
    assert decision["rule"]["dst_ports"] == "5432"


def test_broken_policy_reports_every_error_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bad.yaml").write_text(
        "apiVersion: microseg/v1\n"
        "groups:\n"
        "  web: {selector: {tier: web}}\n"
        "  nets: {cidrs: [10.0.0.1/24]}\n"
        "rules:\n"
        "  - name: r1\n"
        "    form: web\n"
        "    to: wbe\n"
        "    services: [tcp/70000]\n"
        "    action: allow\n"
    )
    (tmp_path / "inventory").symlink_to(REPO / "inventory")
    code, out, err = run("validate", cwd=tmp_path)
    assert code == 1 and "Traceback" not in err
    assert "has 5 errors" in err
    assert "unknown group 'wbe' (did you mean 'web'?)" in err
    assert "bad.yaml:4:18" in err and "host bits set (did you mean 10.0.0.0/24?)" in err
    assert "bad.yaml:7:5" in err and "did you mean 'from'?" in err
    code, out, _ = run("validate", "--json", cwd=tmp_path)
    data = json.loads(out)
    assert code == 1 and data["ok"] is False
    assert {d["line"] for d in data["diagnostics"]} >= {4, 7}


def test_schema_command_writes_json_schema(tmp_path: Path) -> None:
    out = tmp_path / "policy.schema.json"
    result = CliRunner().invoke(main, ["schema", "-o", str(out)])
    assert result.exit_code == 0
    schema = json.loads(out.read_text())
    assert schema["$id"].endswith("policy-v1.json") and "rules" in schema["properties"]


def test_console_script_is_installed() -> None:
    """The `microseg` entry point of pyproject works as a real process."""
    exe = Path(sys.executable).with_name("microseg")
    proc = subprocess.run([str(exe), "--today", TODAY, "validate", "--json"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ok"] is True


def test_the_lazy_command_table_names_what_each_family_registers() -> None:
    """``microseg`` imports a command family only when one of its commands runs: the table must be true."""
    import importlib

    import click

    from orchestrator.cli.main import COMMAND_FAMILIES

    for module, commands in COMMAND_FAMILIES.items():
        group = click.Group()
        importlib.import_module(module).register(group)
        assert sorted(group.commands) == sorted(commands), module
    assert sorted(main.list_commands(click.Context(main))) == sorted(c for cs in COMMAND_FAMILIES.values() for c in cs)
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and all(name in result.output for name in ("validate", "rollback", "serve"))


HEAVY = ("sqlalchemy", "alembic", "netmiko", "paramiko", "boto3", "google.cloud.compute_v1", "azure.mgmt.network")


def test_validate_does_not_load_the_store_or_the_device_transports(tmp_path: Path) -> None:
    """Startup (issues #13, #15): validate and compile never open a store, a device or a cloud API, so
    SQLAlchemy, netmiko, paramiko and the cloud SDKs stay unloaded (~3 s of imports on this machine)."""
    script = (f"import sys; from orchestrator.cli.main import main\nHEAVY = {HEAVY!r}\n"
              "try: main(sys.argv[1:])\nexcept SystemExit as e: code = e.code\n"
              "heavy = sorted(m for m in HEAVY if m in sys.modules)\n"
              "print('HEAVY', code, heavy)")
    for command in ("validate", "compile"):
        proc = subprocess.run([sys.executable, "-c", script, "--today", TODAY, "--store", str(tmp_path / "none.db"),
                               command, "--json"], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
        assert proc.stdout.rstrip().splitlines()[-1] == "HEAVY 0 []", (command, proc.stdout[-500:], proc.stderr[-2000:])


def test_one_shot_commands_collect_garbage_rarely_long_running_ones_as_cpython_does() -> None:
    """Issue #13: a one-shot command raises the young-generation threshold (a fifth of a large compile went to
    collections that freed nothing); ``serve`` and ``worker`` keep CPython's default, and collection still runs."""
    from orchestrator.cli.main import COMMAND_FAMILIES, LONG_RUNNING
    from orchestrator.engine.runtime import BATCH_THRESHOLD

    assert set(LONG_RUNNING) <= {c for cs in COMMAND_FAMILIES.values() for c in cs}
    script = ("import gc, sys; from orchestrator.cli.main import main\n"
              "default = gc.get_threshold()\n"
              "try: main(sys.argv[1:])\nexcept SystemExit: pass\n"
              "before = gc.get_stats()[0]['collections']\n"
              "for _ in range(4 * gc.get_threshold()[0]): a = []; a.append(a)\n"  # cycles only a collection frees
              "print('GC', default[0], gc.get_threshold()[0], gc.get_stats()[0]['collections'] > before)")
    seen = {}
    for args in (["validate", "--json"], ["serve", "--help"], ["worker", "--help"]):
        proc = subprocess.run([sys.executable, "-c", script, "--today", TODAY, *args], cwd=REPO,
                              capture_output=True, text=True, timeout=120, check=False)
        seen[args[0]] = proc.stdout.rstrip().splitlines()[-1]
    assert seen == {"validate": f"GC 700 {BATCH_THRESHOLD} True", "serve": "GC 700 700 True",
                    "worker": "GC 700 700 True"}, seen


@pytest.mark.parametrize("args", [["drift", "--bogus"], ["--bogus"], ["nosuch"], ["check-flow"],
                                  ["validate", "--strict", "extra"], ["serve", "token", "add"],
                                  ["--today", "yesterday", "validate"]])
def test_usage_errors_exit_64_never_a_code_that_means_found(args: list[str]) -> None:
    """2 means drift found / denied / changes: a scheduler may take it as a normal outcome (the README's
    systemd unit does), so a mistyped flag must not produce it."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 64, (args, result.output)
    assert "Error:" in result.output and "Traceback" not in result.output


def test_every_command_lists_its_exit_codes_in_its_help() -> None:
    from orchestrator.cli.main import COMMAND_FAMILIES, EXIT_CODES

    for command in (c for cs in COMMAND_FAMILIES.values() for c in cs):
        result = CliRunner().invoke(main, [command, "--help"], terminal_width=200)
        assert result.exit_code == 0 and "Exit codes: " + EXIT_CODES[command] in " ".join(result.output.split())
        assert "64 a usage error" in result.output


def test_check_flow_text_keeps_ipv6_addresses() -> None:
    """The example flow's IPv6 addresses are bracketed (``[fd00::1]:443``), which the terminal renderer used
    to swallow as markup (`e.g. :0 -> :443 tcp`)."""
    code, out, _ = run("check-flow", "--from", "fd00:10::5", "--to", "fd00:20:1::10", "--service", "tcp/443")
    assert code == 2
    assert "[fd00:10::5]:0 → [fd00:20:1::10]:443/tcp" in out and "e.g. :0" not in out


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str) -> None:
    result = CliRunner().invoke(main, ["completion", shell])
    assert result.exit_code == 0 and "_MICROSEG_COMPLETE" in result.output


def test_completion_names_points_and_groups_from_the_inventory() -> None:
    """Through the protocol the bash script speaks: the words so far in, the candidates out."""
    exe = Path(sys.executable).with_name("microseg")

    def complete(words: str) -> list[str]:
        env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - (not words.endswith(" "))),
               "_MICROSEG_COMPLETE": "bash_complete"}
        done = subprocess.run([str(exe)], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
        return [line.split(",", 1)[1] for line in done.stdout.splitlines()]

    assert complete("microseg plan -t sw-") == ["sw-dev-ios"]
    assert set(complete("microseg drift -t ")) >= {"leaf-prod-eos", "web-prod-01", "aws-sg-dev-web"}
    assert "arista-eos" in complete("microseg apply -g ar")
    assert complete("microseg force-unlock db-prod-0") == ["db-prod-01", "db-prod-02"]
    assert "adopt" in complete("microseg ad")


def test_json_on_schema_and_token_revoke(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    result = CliRunner().invoke(main, ["schema", "-o", str(out), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == {"ok": True, "written": str(out)}
    store = f"sqlite:///{tmp_path}/state.db"
    result = CliRunner().invoke(main, ["--store", store, "serve", "token", "revoke", "nobody", "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout) == {"ok": False, "revoked": 0, "which": "nobody"}


def test_every_command_and_flag_the_readme_shows_exists() -> None:
    """The README's CLI reference table, row by row: the command path resolves and each flag it shows is an
    option of that command (or a global one)."""
    import re

    import click

    readme = (REPO / "README.md").read_text()
    table = readme.split("## CLI reference", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `microseg ")]
    assert len(rows) >= 18
    ctx = click.Context(main)
    global_flags = {o for p in main.params for o in getattr(p, "opts", [])} | {"--help", "-h"}
    for row in rows:
        usage = row.split("`")[1]  # the first code span: `microseg CMD [SUB] [OPTIONS] ARGS`
        for variant in usage.split(" / "):
            words = variant.removeprefix("microseg ").split()
            command: click.Command = main
            path = []
            for word in (w.split("\\|")[0] for w in words):  # `up\|down\|status`: the first names the command
                if not isinstance(command, click.Group) or not re.fullmatch(r"[a-z][a-z-]*", word):
                    break
                sub = command.get_command(ctx, word)
                if sub is None:
                    break
                command, path = sub, [*path, word]
            assert path, f"README names an unknown command: {variant}"
            flags = {o for p in command.params for o in getattr(p, "opts", [])} | global_flags
            for flag in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", variant):
                assert flag in flags, f"`microseg {' '.join(path)}` has no option {flag} (README: {variant})"


def test_no_color_and_quiet() -> None:
    """--no-color reaches every console the invocation makes (rich then prints no colour even on a terminal);
    --quiet is accepted globally (it silences progress lines; results still print)."""
    from orchestrator.cli.render import console

    colored = CliRunner().invoke(main, ["--today", TODAY, "--policy", str(REPO / "policies"),
                                        "--inventory", str(REPO / "inventory"), "--no-color", "-q", "validate"],
                                 color=True)
    assert colored.exit_code == 0 and "valid" in colored.output
    assert console().no_color is True  # what the invocation set; the next one sets it again
    plain = CliRunner().invoke(main, ["--today", TODAY, "validate"], color=True)
    assert plain.exit_code == 0 and console().no_color is False


def test_an_unreachable_lab_point_is_one_line_with_a_hint(tmp_path: Path) -> None:
    """The worked example with the lab down: each point fails in one line naming its address, and lab
    addresses get the hint to start the lab."""
    lab = tmp_path / ".microseg" / "lab"
    lab.mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-N", "", "-t", "ed25519", "-f", str(lab / "id_ed25519")], check=True)
    exe = Path(sys.executable).with_name("microseg")
    done = subprocess.run([str(exe), "-p", str(REPO / "policies"), "-i", str(REPO / "inventory"), "--today", TODAY,
                           "--store", f"sqlite:///{tmp_path}/state.db", "plan", "-t", "sw-dev-ios", "-t",
                           "web-prod-01"], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    lines = [line for line in done.stdout.splitlines() if "could not be planned" in line]
    assert len(lines) == 2 and all("connection refused" in line and "microseg lab up" in line for line in lines)
    assert "Common causes" not in done.stdout + done.stderr


def test_check_flow_takes_workload_names_and_suggests_the_closest() -> None:
    from orchestrator.inventory.inventory import load_inventory

    workloads = {w.name: w for w in load_inventory(REPO / "inventory").workloads}
    web, app = (str(workloads[name].addresses[0]) for name in ("web-prod-01", "app-prod-01"))
    for source, target, verdict in (("web-prod-01", "app-prod-01", "allowed"), ("web-prod-01", "db-prod", "denied")):
        _, by_name = run_json("check-flow", "--from", source, "--to", target, "--service", "tcp/8443")
        _, by_address = run_json("check-flow", "--from", web, "--to", app if target == "app-prod-01" else target,
                                 "--service", "tcp/8443")
        assert by_name["verdict"] == by_address["verdict"] == verdict, (source, target)
        # a workload name is all its addresses (IPv4 and IPv6): the same points decide
        assert {p["point"] for p in by_name["points"]} >= {p["point"] for p in by_address["points"]}
    code, _out, err = run("check-flow", "--from", "web-prod-1", "--to", "db-prod", "--service", "tcp/5432")
    assert code == 1 and "did you mean 'web-prod-01'?" in err and "Traceback" not in err


def test_flow_changes_read_as_group_pairs_with_one_example_format() -> None:
    from orchestrator.cli.render_runs import flow_summary
    from orchestrator.model.rules import Action, AddressSet, Direction, Rule

    a = AddressSet.of
    groups = {"prod": a(["10.20.0.0/16"]), "web-prod": a(["10.20.1.0/24"]), "db-prod": a(["10.20.3.0/24"]),
              "web6": a(["fd00:20:1::/64"]), "db6": a(["fd00:20:3::/64"])}
    regions = [Rule(Action.DENY, Direction.INGRESS, 6, a(["10.20.1.11/32"]), a(["10.20.3.0/24"]),
                    dst_ports=((5432, 5432),)),
               Rule(Action.DENY, Direction.INGRESS, 6, a(["10.20.1.12/31"]), a(["10.20.3.0/24"]),
                    dst_ports=((5432, 5432),)),
               Rule(Action.DENY, Direction.INGRESS, 6, a(["fd00:20:1::5/128"]), a(["fd00:20:3::/64"]),
                    dst_ports=((5432, 5432),)),
               Rule(Action.DENY, Direction.EGRESS, 17, a(["10.20.3.7/32"]), a(["192.0.2.1/32"]),
                    dst_ports=((53, 53),))]
    regions += [Rule(Action.DENY, Direction.INGRESS, number, a(["10.20.1.11/32"]), a(["10.20.3.0/24"]))
                for number in (0, 47, 99, 250)]  # GRE is named; 0, 99 and 250 are not
    lines = flow_summary(regions, groups, limit=10)
    assert ("web-prod → db-prod other IP protocols (ingress, 3 regions), e.g. 10.20.1.11 → 10.20.3.0 proto 0"
            in lines)
    assert "web-prod → db-prod gre (ingress), e.g. 10.20.1.11 → 10.20.3.0 gre" in lines
    assert "web-prod → db-prod tcp/5432 (ingress, 2 regions), e.g. 10.20.1.11:any → 10.20.3.0:5432/tcp" in lines
    assert "web6 → db6 tcp/5432 (ingress), e.g. [fd00:20:1::5]:any → [fd00:20:3::]:5432/tcp" in lines
    assert "db-prod → 192.0.2.1/32 udp/53 (egress), e.g. 10.20.3.7:any → 192.0.2.1:53/udp" in lines  # no group
    assert len(flow_summary(regions, groups, limit=1)) == 2 and "4 more group pairs" in flow_summary(
        regions, groups, limit=1)[-1]
