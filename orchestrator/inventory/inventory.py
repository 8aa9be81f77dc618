"""Load the inventory: enforcement points from a Nornir SimpleInventory plus workloads from workload sources.

An inventory directory holds the Nornir SimpleInventory files ``hosts.yaml``,
``groups.yaml`` (optional) and ``defaults.yaml`` (optional), and the workload
sources: ``sources.yaml`` (optional; without it a static source reads
``workloads.yaml`` when that file exists).  Every Nornir host is an
enforcement point; its settings live under ``data: {microseg: {...}}`` and
are deep-merged from defaults, then its groups (Nornir precedence: the
host's first group wins, a parent group ranks right below its child), then
the host itself.  Nothing here knows about any particular driver.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from nornir.core.inventory import Defaults, Group, Groups, Host, Hosts, ParentGroups
from nornir.core.inventory import Inventory as NornirInventory
from nornir.plugins.inventory.simple import SimpleInventory
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from orchestrator.inventory.scope import BOTH_DIRECTIONS, EnforcementPoint, Inventory, PluginData, Protects, Workload
from orchestrator.inventory.workloads import load_workload_sources, validation_diagnostics
from orchestrator.model.capabilities import Capabilities
from orchestrator.model.errors import Diagnostic, InventoryError, Location, Severity, collect_errors
from orchestrator.model.policy import NAME_PATTERN, Name, Network
from orchestrator.model.rules import AddressSet, Direction, Mode
from orchestrator.model.suggest import name_hint
from orchestrator.policy.yamlsource import PathKey, PositionMap, load_yaml

if TYPE_CHECKING:
    from nornir.core.configuration import Config

__all__ = ["EnforcementPoint", "Inventory", "PointSettings", "Protects", "load_inventory", "load_nornir_inventory"]

NORNIR_CONFIG = "config.yaml"
HOSTS_FILE = "hosts.yaml"
GROUPS_FILE = "groups.yaml"
DEFAULTS_FILE = "defaults.yaml"
_NAME_RE = re.compile(NAME_PATTERN)
_ELEMENT_KEYS = ("hostname", "port", "username", "password", "platform", "groups", "data", "connection_options")


def _one_or_many(value: object) -> object:
    return (value,) if isinstance(value, str) else value


class PointSettings(BaseModel):
    """The ``data.microseg`` block of a Nornir host, after the deep merge."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    driver: Name
    protects: Protects
    directions: Annotated[frozenset[Direction], BeforeValidator(_one_or_many)] = Field(
        default=BOTH_DIRECTIONS, min_length=1)
    management: Annotated[tuple[Network, ...], BeforeValidator(_one_or_many)] = ()
    mode: Mode | None = None  # enforce | monitor for this point; default: the policy's defaults.mode
    queue: Name = "default"  # the Celery queue whose workers reach this point (``--executor celery``)
    capabilities: dict[str, Any] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)


@dataclass
class _File:
    """One parsed inventory YAML file."""

    path: Path
    data: Any = None
    positions: PositionMap = field(default_factory=lambda: PositionMap(""))

    @property
    def display(self) -> str:
        return str(self.path)


SettingsModels = Callable[[str], "type[BaseModel] | None"]
"""A driver name → the pydantic model of its points' ``settings`` (None: none declared or not installed)."""


@dataclass
class _Run:
    """Diagnostics of one load; ``blocking`` ones keep SimpleInventory from loading the files."""

    settings_models: SettingsModels | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    blocked: bool = False
    broken: set[str] = field(default_factory=set)
    """Hosts and groups (``host:x``, ``group:y``) whose own Nornir settings are unusable."""
    cyclic: set[str] = field(default_factory=set)
    not_points: list[str] = field(default_factory=list)  # hosts without data.microseg anywhere

    def add(self, diagnostic: Diagnostic, *, blocking: bool = False, element: str | None = None) -> None:
        self.diagnostics.append(diagnostic)
        self.blocked = self.blocked or blocking
        if blocking and element is not None:
            self.broken.add(element)


# --------------------------------------------------------------------------- public entry points


def load_inventory(directory: Path, settings_models: SettingsModels | None = None) -> Inventory:
    """Load every enforcement point and workload of ``directory``; all problems are raised together (but for a
    ``config.yaml`` or inventory plugin that cannot be read at all: that error alone).

    ``settings_models`` (the engine passes the installed drivers') types each point's ``settings`` when the
    inventory loads, so a wrong value is reported with file:line before any plan.
    """
    run = _Run(settings_models=settings_models)
    built: list[tuple[EnforcementPoint, PositionMap]] = []
    nornir: NornirInventory | None = None
    config = nornir_config(directory)
    if config is not None:  # a Nornir inventory plugin: its objects are the inventory (no file positions)
        nornir = _usable_hosts(plugin_inventory(config, directory), directory, run)
        files = _files_of(nornir, directory / NORNIR_CONFIG, config.inventory.plugin)
        _check_files(files, run)
        if run.blocked:
            nornir = None
    else:
        files = _read_files(directory, run)
    if not run.blocked and nornir is None and config is None:
        try:
            nornir = load_nornir_inventory(directory)
        except InventoryError as exc:
            run.diagnostics.extend(exc.diagnostics)
    for host in (nornir or _salvaged_inventory(files, run)).hosts.values():
        if nornir is None and {f"host:{host.name}", *(f"group:{g.name}" for g in host.extended_groups())} & run.broken:
            continue  # its own problems are reported already; more would only be their echo
        point = _build_point(host, files, run)
        if point is not None:
            built.append(point)
    sources = load_workload_sources(directory)
    run.diagnostics.extend(sources.diagnostics)
    run.diagnostics.extend(_cross_check(built, list(sources.workloads)))
    errors = collect_errors(run.diagnostics)
    if errors or nornir is None:
        noun = "error" if len(errors) == 1 else "errors"
        raise InventoryError(f"inventory {directory} has {len(errors)} {noun}", run.diagnostics)
    plugin_data = None if config is None else PluginData(
        files[HOSTS_FILE].display, {name: f.data for name, f in files.items()})
    return Inventory(points=tuple(p for p, _ in built), workloads=sources.workloads,
                     diagnostics=tuple(run.diagnostics), groups=tuple(nornir.groups),
                     not_points=tuple(run.not_points), plugin_data=plugin_data)


def nornir_config(directory: Path) -> Config | None:
    """The Nornir configuration of ``directory`` (``config.yaml``, as ``InitNornir`` reads it) when it names an
    inventory plugin other than SimpleInventory, options, or a ``transform_function``; None: the SimpleInventory
    files of the directory (read with positions).  SimpleInventory's file options are taken relative to the
    inventory directory (Nornir would take them relative to the working directory)."""
    path = directory / NORNIR_CONFIG
    if not path.is_file():
        return None
    from nornir.core.configuration import Config  # noqa: PLC0415  (only with a config.yaml)

    try:
        config = Config.from_file(str(path))
    except Exception as exc:  # any error of a third-party config loader is the file's problem
        message = f"Nornir cannot read {path}: {type(exc).__name__}: {exc}"
        raise InventoryError(message, [Diagnostic(message, Location(str(path)), code="nornir")]) from exc
    inventory = config.inventory
    if inventory.plugin == "SimpleInventory":
        if not inventory.transform_function and not inventory.options:
            return None
        files = {"host_file": HOSTS_FILE, "group_file": GROUPS_FILE, "defaults_file": DEFAULTS_FILE}
        inventory.options = {**{k: str(directory / v) for k, v in files.items()}, **{
            k: str(directory / v) if k in files and not Path(str(v)).is_absolute() else v
            for k, v in inventory.options.items()}}
    return config


_PLUGIN_CACHE: dict[tuple[Path, str], tuple[float, NornirInventory]] = {}
_PLUGIN_REUSE_SECONDS = 60.0


def plugin_inventory(config: Config, directory: Path) -> NornirInventory:
    """The inventory a Nornir inventory plugin (and ``transform_function``) builds, as ``InitNornir`` would —
    registered by name, through the plugins' entry points — without its logging or runner.  One command reads
    it once: the engine's Nornir runner gets the inventory ``load_inventory`` checked moments before (the same
    process, the same ``config.yaml``, within a minute), not a second read of a CMDB that may have moved."""
    import time  # noqa: PLC0415

    from nornir.init_nornir import load_inventory as nornir_load_inventory  # noqa: PLC0415

    where = directory / NORNIR_CONFIG
    key, now = (directory.resolve(), where.read_text(encoding="utf-8")), time.monotonic()
    cached = _PLUGIN_CACHE.get(key)
    if cached is not None and now - cached[0] < _PLUGIN_REUSE_SECONDS:
        return cached[1]
    try:
        loaded: NornirInventory = nornir_load_inventory(config)
    except Exception as exc:  # a plugin is someone else's code: whatever it raises is reported
        message = (f"Nornir inventory plugin {config.inventory.plugin!r} (configured in {where}) failed: "
                   f"{type(exc).__name__}: {exc}")
        raise InventoryError(message, [Diagnostic(message, Location(str(where)), code="nornir")]) from exc
    _PLUGIN_CACHE.clear()  # one directory's inventory at a time is all a command needs
    _PLUGIN_CACHE[key] = (now, loaded)
    return loaded


def _usable_hosts(nornir: NornirInventory, directory: Path, run: _Run) -> NornirInventory:
    """The plugin's inventory without the hosts whose names microseg cannot use and that are no points anyway
    (no ``data.microseg`` on them, their groups or the defaults): a CMDB's ``Rack 12 PDU`` is reported, not
    fatal.  A host with ``data.microseg`` keeps its name, and its name's error."""
    unusable = [name for name, host in nornir.hosts.items()
                if not _NAME_RE.fullmatch(name) and host.get("microseg") is None]
    if not unusable:
        return nornir
    for name in unusable:
        run.add(Diagnostic(f"host {name!r} of the Nornir inventory plugin: microseg cannot use the name (letters, "
                           f"digits, '_', '.', '-'); it has no data.microseg, so it is simply not a point",
                           Location(str(directory / NORNIR_CONFIG)), severity=Severity.WARNING, code="not-a-point"))
        run.not_points.append(name)
    hosts = Hosts({name: host for name, host in nornir.hosts.items() if name not in unusable})
    return NornirInventory(hosts=hosts, groups=nornir.groups, defaults=nornir.defaults)


def load_nornir_inventory(directory: Path) -> NornirInventory:
    """The real Nornir inventory of ``directory`` (what the executor runs tasks on): the plugin ``config.yaml``
    names, else the SimpleInventory files."""
    config = nornir_config(directory)
    if config is not None:
        return plugin_inventory(config, directory)
    hosts = directory / HOSTS_FILE
    plugin = SimpleInventory(host_file=str(hosts), group_file=str(directory / GROUPS_FILE),
                             defaults_file=str(directory / DEFAULTS_FILE))
    try:
        loaded: NornirInventory = plugin.load()
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(str(mark.name), mark.line + 1, mark.column + 1) if mark else Location(str(hosts))
        message = f"Nornir cannot read the inventory: {exc.problem or exc}"
        raise InventoryError(message, [Diagnostic(message, where, code="nornir")]) from exc
    except (OSError, KeyError, TypeError, AttributeError, ValueError, YAMLError) as exc:
        message = f"Nornir cannot load the inventory in {directory}: {type(exc).__name__}: {exc}"
        raise InventoryError(message, [Diagnostic(message, Location(str(hosts)), code="nornir")]) from exc
    return loaded


# --------------------------------------------------------------------------- the Nornir files, checked


def _read_files(directory: Path, run: _Run) -> dict[str, _File]:
    files: dict[str, _File] = {}
    for name in (HOSTS_FILE, GROUPS_FILE, DEFAULTS_FILE):
        path = directory / name
        if not path.is_file():
            if name == HOSTS_FILE:
                what = "directory does not exist" if not directory.is_dir() else f"no {HOSTS_FILE}"
                run.add(Diagnostic(f"inventory {directory}: {what} (a Nornir SimpleInventory host file is needed)",
                                   Location(str(path)), code="io"), blocking=True)
            files[name] = _File(path, {}, PositionMap(str(path)))
            continue
        data, positions, problems = load_yaml(path, display=str(path))
        for problem in problems:
            run.add(problem, blocking=True)
        files[name] = _File(path, {} if data is None else data, positions)
    _check_files(files, run)
    return files


def _files_of(nornir: NornirInventory, config: Path, plugin: str) -> dict[str, _File]:
    """A plugin's inventory in the shape of the SimpleInventory files, so that it is checked the same way (its
    diagnostics name the config file and the plugin; there are no lines to point at)."""
    def element(item: Host | Group | Defaults, *, with_groups: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(item, k) for k in ("hostname", "port", "username", "password", "platform")
                               if getattr(item, k, None) is not None}
        if with_groups and getattr(item, "groups", None):
            out["groups"] = [g.name for g in item.groups]  # type: ignore[union-attr]
        if item.data:
            out["data"] = dict(item.data)
        if item.connection_options:
            out["connection_options"] = {
                name: {k: v for k, v in (("hostname", o.hostname), ("port", o.port), ("username", o.username),
                                         ("password", o.password), ("platform", o.platform), ("extras", o.extras))
                       if v is not None} for name, o in item.connection_options.items()}
        return out

    shown = Path(f"{config} (Nornir inventory plugin {plugin})")
    data = {HOSTS_FILE: {name: element(h) for name, h in nornir.hosts.items()},
            GROUPS_FILE: {name: element(g) for name, g in nornir.groups.items()},
            DEFAULTS_FILE: element(nornir.defaults, with_groups=False)}
    return {name: _File(shown, value, PositionMap(str(shown))) for name, value in data.items()}


def _check_files(files: dict[str, _File], run: _Run) -> None:
    """What Nornir needs of hosts, groups and defaults, and no key it would silently ignore."""
    if files[HOSTS_FILE].data == {} and not run.blocked:
        run.add(Diagnostic(f"{files[HOSTS_FILE].path} defines no hosts (no enforcement points)",
                           Location(files[HOSTS_FILE].display), severity=Severity.WARNING, code="empty"))
    groups = files[GROUPS_FILE]
    known = [str(g) for g in groups.data] if isinstance(groups.data, dict) else []
    _check_elements(files[HOSTS_FILE], "host", known, run)
    _check_elements(groups, "group", known, run)
    _check_element(files[DEFAULTS_FILE], (), "defaults", known, run)
    _check_cycles(groups, run)


def _elements(file: _File) -> list[tuple[str, dict[str, Any]]]:
    """The well-formed (name, settings) entries of hosts.yaml or groups.yaml."""
    if not isinstance(file.data, dict):
        return []
    return [(k, v) for k, v in file.data.items()
            if isinstance(k, str) and _NAME_RE.fullmatch(k) and isinstance(v, dict)]


def _check_elements(file: _File, kind: str, groups: list[str], run: _Run) -> None:
    if not isinstance(file.data, dict):
        run.add(Diagnostic(f"{file.path.name} must map {kind} names to their settings", file.positions.locate(())),
                blocking=True)
        return
    for name in file.data:
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            run.add(Diagnostic(f"invalid {kind} name {name!r}: use letters, digits, '_', '.', '-'",
                               file.positions.locate_key((name,))), blocking=True)
            continue
        _check_element(file, (name,), kind, groups, run)


def _check_element(file: _File, path: PathKey, kind: str, groups: list[str], run: _Run) -> None:
    """One host, group or the defaults: the shapes Nornir needs, and no key Nornir would silently ignore."""
    value = file.data.get(path[0]) if path else file.data
    where = file.positions.locate_key(path) if path else file.positions.locate(())
    subject, element = (f"{kind} {path[0]!r}", f"{kind}:{path[0]}") if path else (kind, None)
    if not isinstance(value, dict):
        run.add(Diagnostic(f"{subject} must be a mapping (hostname, groups, data …)", where), blocking=True,
                element=element)
        return
    allowed = [k for k in _ELEMENT_KEYS if path or k != "groups"]
    for key in value:
        if key not in allowed:
            hint = ("move it under data:, as data.microseg" if key == "microseg"
                    else name_hint(str(key), allowed, noun="keys"))
            run.add(Diagnostic(f"{subject}: unknown key {key!r} (Nornir would ignore it)",
                               file.positions.locate_key((*path, key)), code="unknown-field", hint=hint))
    _check_connection_fields(file, path, value, subject, run)
    for key in ("data", "connection_options"):
        if value.get(key) is not None and not isinstance(value[key], dict):
            run.add(Diagnostic(f"{subject}: {key} must be a mapping", file.positions.locate((*path, key))),
                    blocking=True, element=element)
    refs = value.get("groups")
    if refs is not None and (not isinstance(refs, list) or not all(isinstance(g, str) for g in refs)):
        run.add(Diagnostic(f"{subject}: groups must be a list of group names",
                           file.positions.locate((*path, "groups"))), blocking=True, element=element)
        return
    for index, group in enumerate(refs or ()):
        if group not in groups:
            run.add(Diagnostic(f"{subject}: unknown group {group!r}", file.positions.locate((*path, "groups", index)),
                               code="unknown-group", hint=name_hint(group, groups, noun="groups")),
                    blocking=True, element=element)


def _check_connection_fields(file: _File, path: PathKey, value: Mapping[str, Any], subject: str, run: _Run) -> None:
    """The connection fields a driver hands to SSH or an API client have the types those expect."""
    for key in ("hostname", "username", "password", "platform"):
        field_value = value.get(key)
        if field_value is not None and (not isinstance(field_value, str) or not field_value
                                        or any(ord(c) < 32 or ord(c) == 127 for c in field_value)):
            shown = "a value" if key == "password" else repr(field_value)  # never echo a password
            run.add(Diagnostic(f"{subject}: {key} must be one line of text, not {shown} of type "
                               f"{type(field_value).__name__}", file.positions.locate((*path, key)), code="invalid"))
    port = value.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        run.add(Diagnostic(f"{subject}: port must be a TCP port number (1-65535), not {port!r}",
                           file.positions.locate((*path, "port")), code="invalid"))


def _parents(file: _File) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in _elements(file):
        refs = value.get("groups")
        out[name] = [r for r in refs if isinstance(r, str)] if isinstance(refs, list) else []
    return out


def _check_cycles(file: _File, run: _Run) -> None:
    """A group that is its own ancestor would send Nornir into endless recursion."""
    parents = _parents(file)
    for start in parents:
        trails: list[tuple[str, ...]] = [(start,)]
        seen: set[str] = set()
        while trails:
            trail = trails.pop()
            if start in parents.get(trail[-1], []):
                run.add(Diagnostic(f"group {start!r} is its own parent: {' -> '.join((*trail, start))}",
                                   file.positions.locate((start, "groups")), code="cycle"),
                        blocking=True, element=f"group:{start}")
                run.cyclic.add(start)
                break
            for parent in set(parents.get(trail[-1], [])) - seen:
                seen.add(parent)
                trails.append((*trail, parent))


def _salvaged_inventory(files: dict[str, _File], run: _Run) -> NornirInventory:
    """Nornir objects built from whatever parsed, when SimpleInventory cannot load the files.

    Only used to report the problems of every host in one run; never returned.
    """
    def attributes(value: Mapping[str, Any]) -> dict[str, Any]:
        data = value.get("data")
        return {**{k: value.get(k) for k in ("hostname", "port", "username", "password", "platform")},
                "data": data if isinstance(data, dict) else None}

    raw_defaults = files[DEFAULTS_FILE].data
    defaults = Defaults(**attributes(raw_defaults)) if isinstance(raw_defaults, dict) else Defaults()
    groups = Groups({n: Group(n, defaults=defaults, **attributes(v)) for n, v in _elements(files[GROUPS_FILE])})
    for name, refs in _parents(files[GROUPS_FILE]).items():
        if name not in run.cyclic:
            groups[name].groups = ParentGroups([groups[g] for g in refs if g in groups])
    hosts = Hosts()
    for name, value in _elements(files[HOSTS_FILE]):
        wanted: object = value.get("groups")
        names = [g for g in wanted if isinstance(g, str)] if isinstance(wanted, list) else []
        member_of = [groups[g] for g in names if g in groups]
        hosts[name] = Host(name, defaults=defaults, **attributes(value), groups=ParentGroups(member_of))
    return NornirInventory(hosts=hosts, groups=groups, defaults=defaults)


# --------------------------------------------------------------------------- one enforcement point


@dataclass(frozen=True)
class _Layer:
    value: Mapping[str, Any]
    positions: PositionMap
    path: PathKey
    shared: bool = False  # defaults.yaml's block: values every host shares, which make no host a point


def _layers(host: Host, files: dict[str, _File]) -> list[_Layer]:
    """The ``data.microseg`` blocks that apply to ``host``, lowest precedence first."""
    owners: list[tuple[Mapping[str, Any], _File, PathKey]] = [
        (host.defaults.data, files[DEFAULTS_FILE], ()),
        *((g.data, files[GROUPS_FILE], (g.name,)) for g in reversed(host.extended_groups())),
        (host.data, files[HOSTS_FILE], (host.name,)),
    ]
    return [_Layer(data["microseg"], file.positions, (*path, "data", "microseg"), shared=not path)
            for data, file, path in owners if data.get("microseg") is not None]


def _record(origins: PositionMap, layer: _Layer, rel: PathKey, value: object) -> None:
    """Remember where ``value`` (at ``rel`` of the merged block) was written, replacing what was there."""
    for table in (origins.values, origins.keys):
        for stale in [p for p in table if len(p) > len(rel) and p[:len(rel)] == rel]:
            del table[stale]
    _record_tree(origins, layer, rel, value)


def _record_tree(origins: PositionMap, layer: _Layer, rel: PathKey, value: object) -> None:
    origins.values[rel] = layer.positions.locate((*layer.path, *rel))
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        if isinstance(value, dict):
            origins.keys[(*rel, key)] = layer.positions.locate_key((*layer.path, *rel, key))
        _record_tree(origins, layer, (*rel, key), child)


def _merge(target: dict[str, Any], value: Mapping[str, Any], layer: _Layer, origins: PositionMap,
           rel: PathKey = ()) -> None:
    """Deep-merge ``value`` into ``target``: mappings merge key by key, anything else is replaced."""
    for key, item in value.items():
        here = (*rel, key)
        origins.keys[here] = layer.positions.locate_key((*layer.path, *here))
        if isinstance(item, dict) and isinstance(target.get(key), dict):
            origins.values[here] = layer.positions.locate((*layer.path, *here))
            _merge(target[key], item, layer, origins, here)
        else:
            target[key] = copy.deepcopy(item)
            _record(origins, layer, here, item)


def _merged_settings(host: Host, files: dict[str, _File],
                     run: _Run) -> tuple[dict[str, Any] | None, PositionMap]:
    """The host's ``data.microseg`` deep-merged over its groups and defaults, and where each value came from;
    None when neither the host nor any of its groups has a ``data.microseg`` (the host is not a point)."""
    merged: dict[str, Any] = {}
    origins = PositionMap(files[HOSTS_FILE].display, values={(): files[HOSTS_FILE].positions.locate_key((host.name,))})
    layers = _layers(host, files)
    if all(layer.shared for layer in layers):  # only defaults (or nothing) name microseg: shared values do not
        return None, origins  # make every host a point; its own or a group's block does
    for layer in layers:
        if isinstance(layer.value, dict):
            _merge(merged, layer.value, layer, origins)
        else:
            run.add(Diagnostic(f"host {host.name!r}: data.microseg must be a mapping",
                               layer.positions.locate(layer.path)))
    return merged, origins


def _validated(
    merged: dict[str, Any], origins: PositionMap, subject: str, settings_models: SettingsModels | None = None
) -> tuple[PointSettings | None, list[Diagnostic]]:
    """The merged block as PointSettings (None when invalid), and every problem of it."""
    problems: list[Diagnostic] = []
    driver, driver_settings = merged.get("driver"), merged.get("settings", {})
    model = settings_models(driver) if settings_models and isinstance(driver, str) else None
    if model is not None and isinstance(driver_settings, dict):
        try:
            model.model_validate(driver_settings)
        except ValidationError as exc:
            problems += validation_diagnostics(exc, origins, subject=subject, model=model, prefix=("settings",),
                                               root="microseg.settings")
    settings: PointSettings | None = None
    try:
        settings = PointSettings.model_validate(merged)
    except ValidationError as exc:
        problems += validation_diagnostics(exc, origins, subject=subject, model=PointSettings, root="microseg")
    overrides = merged.get("capabilities")
    if isinstance(overrides, dict):
        try:
            Capabilities.model_validate(overrides)
        except ValidationError as exc:
            problems += validation_diagnostics(exc, origins, subject=subject, model=Capabilities,
                                               prefix=("capabilities",), root="microseg.capabilities")
    return (settings if not problems else None), problems


def _build_point(host: Host, files: dict[str, _File], run: _Run) -> tuple[EnforcementPoint, PositionMap] | None:
    """One enforcement point from one Nornir host; its problems go to ``run``."""
    merged, origins = _merged_settings(host, files, run)
    where = origins.values[()]
    if merged is None:  # a host of the team's inventory that microseg does not enforce on
        run.not_points.append(host.name)
        return None
    if not merged:
        run.add(Diagnostic(f"host {host.name!r} has an empty data.microseg (driver and protects missing)", where,
                           code="missing", hint="add data.microseg (driver, protects) to it, a group or defaults — "
                           "or remove data.microseg: a host without it is not an enforcement point"))
        return None
    settings, problems = _validated(merged, origins, f"host {host.name!r}", run.settings_models)
    run.diagnostics.extend(problems)
    if settings is None:
        return None
    point = EnforcementPoint(
        name=host.name, hostname=_text(host.hostname), platform=_text(host.platform), driver=settings.driver,
        groups=tuple(g.name for g in host.groups), all_groups=tuple(g.name for g in host.extended_groups()),
        protects=settings.protects, directions=settings.directions, management=AddressSet.of(settings.management),
        mode=settings.mode, queue=settings.queue, capabilities_overrides=dict(settings.capabilities),
        settings=dict(settings.settings),
        location=where,
    )
    return point, origins


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _cross_check(built: Iterable[tuple[EnforcementPoint, PositionMap]], workloads: list[Workload]) -> list[Diagnostic]:
    """Named workloads must exist; a selector that matches nothing is probably a typo."""
    names = [w.name for w in workloads]
    out: list[Diagnostic] = []
    for point, origins in built:
        subject = f"host {point.name!r}"
        for index, name in enumerate(point.protects.workloads):
            if name not in names:
                out.append(Diagnostic(f"{subject}: microseg.protects.workloads[{index}]: unknown workload {name!r}",
                                      origins.locate(("protects", "workloads", index)), code="unknown-workload",
                                      hint=name_hint(name, names, noun="workloads")))
        selector = point.protects.selector
        if selector is not None and not any(selector.matches(w.labels) for w in workloads):
            out.append(Diagnostic(f"{subject}: microseg.protects.selector ({selector.describe()}) matches no workload",
                                  origins.locate(("protects", "selector")), severity=Severity.WARNING,
                                  code="empty-selector"))
    return out
