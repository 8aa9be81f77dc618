"""EC2 workload source: every running instance becomes a workload (name, tag labels, ENI addresses)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import botocore.exceptions as boto_errors  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from pydantic import ValidationError

from drivers.aws_sg.settings import endpoint_refusal
from drivers.aws_sg.transport import classify
from orchestrator.inventory import Workload, WorkloadLoad, label_mapping
from orchestrator.model import NAME_PATTERN, Diagnostic, InventoryError, Severity, name_hint

KEYS = ("region", "endpoint_url", "filters", "label_tags", "profile")
NAME = re.compile(NAME_PATTERN)
RUNNING = {"Name": "instance-state-name", "Values": ["running"]}


def _fail(message: str, hint: str | None = None) -> InventoryError:
    return InventoryError(f"ec2 workload source: {message}" + (f" ({hint})" if hint else ""),
                          [Diagnostic(f"ec2 workload source: {message}", hint=hint)])


def _filters(value: Any) -> list[dict[str, Any]]:
    """``{name: value | [values]}`` or EC2's ``[{Name, Values}]`` → EC2 filters."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        value = [{"Name": k, "Values": v if isinstance(v, list) else [v]} for k, v in value.items()]
    if not isinstance(value, list) or not all(
            isinstance(f, Mapping) and isinstance(f.get("Name"), str) and isinstance(f.get("Values"), list)
            for f in value):
        raise _fail(f"'filters' must map filter names to values (e.g. {{'tag:env': dev}}), not {value!r}")
    return [{"Name": str(f["Name"]), "Values": [str(v) for v in f["Values"]]} for f in value]



def _labels(value: object) -> dict[str, str] | None:
    try:
        return label_mapping(value)
    except ValueError as exc:
        raise _fail(str(exc)) from exc


class Ec2WorkloadSource:
    """Running EC2 instances as workloads: named by their ``Name`` tag (else the instance id), labelled by tags.

    Config: ``region`` (required), ``endpoint_url``, ``profile``, ``filters`` (EC2 describe_instances filters,
    ``{name: values}``), ``label_tags`` (tag keys to use as labels, or ``{tag: label}``; default: every tag but
    ``Name`` and ``aws:*``).  Addresses are the private IPv4 and IPv6 addresses of the instance's ENIs.
    """

    def __init__(self, config: Mapping[str, Any], base_dir: Path) -> None:
        unknown = sorted(str(k) for k in config if k not in KEYS)
        if unknown:
            raise _fail(f"unknown setting {unknown[0]!r}", name_hint(unknown[0], list(KEYS), noun="settings"))
        region = config.get("region")
        if not isinstance(region, str) or not region:
            raise _fail("'region' is required (e.g. region: eu-west-1)")
        endpoint = config.get("endpoint_url")
        if endpoint is not None and (not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://"))):
            raise _fail(f"'endpoint_url' must be an http(s) URL, not {endpoint!r}")
        if (refusal := endpoint_refusal(endpoint)) is not None:
            raise _fail(refusal)
        profile = config.get("profile")
        if profile is not None and not isinstance(profile, str):
            raise _fail(f"'profile' must be a profile name, not {profile!r}")
        self.region, self.endpoint_url, self.profile = region, endpoint, profile
        self.filters = _filters(config.get("filters"))
        self.label_tags = _labels(config.get("label_tags"))
        self.name = f"ec2:{region}"
        self.base_dir = base_dir

    def _instances(self) -> Iterator[dict[str, Any]]:
        config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=10, read_timeout=30)
        try:
            client = boto3.session.Session(profile_name=self.profile).client(
                "ec2", region_name=self.region, endpoint_url=self.endpoint_url, config=config)
            pages = client.get_paginator("describe_instances").paginate(
                Filters=[*self.filters, RUNNING], PaginationConfig={"PageSize": 1000})
            for page in pages:
                for reservation in page.get("Reservations", []):
                    yield from reservation.get("Instances", [])
        except (boto_errors.BotoCoreError, boto_errors.ClientError) as exc:
            raise _fail(f"describe_instances in {self.region} failed: {classify(exc)[1]}") from exc

    def load(self) -> WorkloadLoad:
        """Describe the running instances (paginated); per-instance problems are diagnostics, the rest is kept."""
        diagnostics: list[Diagnostic] = []
        workloads: dict[str, Workload] = {}
        owners: dict[str, str] = {}
        for instance in self._instances():
            workload = self._workload(instance, diagnostics)
            if workload is None:
                continue
            if workload.name in workloads:
                diagnostics.append(Diagnostic(f"{self.name}: two running instances are named {workload.name!r} "
                                              f"({instance['InstanceId']} is skipped)", code="duplicate"))
                continue
            workloads[workload.name] = workload
            for address in map(str, workload.addresses):
                first = owners.setdefault(address, workload.name)
                if first != workload.name:
                    diagnostics.append(Diagnostic(f"{self.name}: address {address} is used by {first!r} and by "
                                                  f"{workload.name!r}", severity=Severity.WARNING,
                                                  code="shared-address"))
        return WorkloadLoad(tuple(workloads.values()), tuple(diagnostics))

    def _workload(self, instance: Mapping[str, Any], diagnostics: list[Diagnostic]) -> Workload | None:
        instance_id = str(instance["InstanceId"])
        tags = {str(t["Key"]): str(t["Value"]) for t in instance.get("Tags", [])}
        name = tags.get("Name", instance_id)
        if not NAME.fullmatch(name):
            diagnostics.append(Diagnostic(f"{self.name}: {instance_id}: Name tag {name!r} is not a valid workload "
                                          f"name; using the instance id", severity=Severity.WARNING, code="name"))
            name = instance_id
        addresses = _addresses(instance)
        if not addresses:
            diagnostics.append(Diagnostic(f"{self.name}: {instance_id} ({name}) has no private address; skipped",
                                          severity=Severity.WARNING, code="no-address"))
            return None
        try:
            return Workload.model_validate({"name": name, "addresses": addresses, "labels": self._labels(tags)})
        except ValidationError as exc:
            problems = "; ".join(str(e["msg"]) for e in exc.errors(include_url=False))
            diagnostics.append(Diagnostic(f"{self.name}: {instance_id} ({name}): {problems}", code="invalid"))
            return None

    def _labels(self, tags: Mapping[str, str]) -> dict[str, str]:
        if self.label_tags is None:
            return {k: v for k, v in tags.items() if k != "Name" and not k.startswith("aws:")}
        return {label: tags[key] for key, label in self.label_tags.items() if key in tags}


def _addresses(instance: Mapping[str, Any]) -> list[str]:
    """Private IPv4 then IPv6 addresses of every ENI (the primary address when no ENI is listed), without repeats."""
    found: list[str] = []
    for eni in instance.get("NetworkInterfaces", []):
        found += [a["PrivateIpAddress"] for a in eni.get("PrivateIpAddresses", []) if a.get("PrivateIpAddress")]
        found += [a["Ipv6Address"] for a in eni.get("Ipv6Addresses", []) if a.get("Ipv6Address")]
    if not found and instance.get("PrivateIpAddress"):
        found.append(instance["PrivateIpAddress"])
    return list(dict.fromkeys(str(a) for a in found))
