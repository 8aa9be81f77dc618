"""Azure workload source: the NICs attached to VMs, one workload per VM (named by it, labelled by its tags)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.pipeline import policies
from azure.core.rest import HttpRequest, HttpResponse
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy
from azure.mgmt.network import NetworkManagementClient
from pydantic import ValidationError

from drivers.azure_nsg.layout import PUBLIC_ARM_ENDPOINT
from drivers.azure_nsg.transport import arm_error, client_options, default_credential
from orchestrator.inventory import Workload, WorkloadLoad, label_mapping
from orchestrator.model import Diagnostic, InventoryError, PermanentDriverError, Severity

COMPUTE_API_VERSION = "2024-07-01"
SETTINGS = ("subscription_id", "resource_group", "base_url", "ca_bundle", "label_tags", "timeout")


def _config_error(message: str) -> InventoryError:
    return InventoryError(f"azure workload source: {message}", [Diagnostic(f"azure workload source: {message}")])



def _labels(value: object) -> dict[str, str] | None:
    try:
        return label_mapping(value)
    except ValueError as exc:
        raise _config_error(str(exc)) from exc


class AzureWorkloadSource:
    """Workloads from Azure VMs: each NIC attached to a VM contributes its ipConfigurations' private addresses.

    Config: ``subscription_id`` (required), ``resource_group`` (optional; the whole subscription otherwise),
    ``base_url`` (ARM endpoint), ``ca_bundle``, ``label_tags`` (which VM tags become labels: a list, or a mapping
    tag → label; default every tag), ``timeout`` (seconds per request, default 30).  A VM with several NICs is one
    workload holding every NIC's addresses.  Public IPs are not read (NSGs see private addresses).
    """

    def __init__(self, config: Mapping[str, Any], base_dir: Path, *, credential: TokenCredential | None = None) -> None:
        unknown = sorted(str(k) for k in config if k not in SETTINGS)
        if unknown:
            raise _config_error(f"unknown setting {unknown[0]!r} (settings: {', '.join(SETTINGS)})")
        subscription = config.get("subscription_id")
        if not isinstance(subscription, str) or not subscription.strip():
            raise _config_error("'subscription_id' is required")
        self.subscription = subscription.strip()
        group = config.get("resource_group")
        self.resource_group = str(group) if group else None
        self.base_url = str(config.get("base_url") or PUBLIC_ARM_ENDPOINT).rstrip("/")
        self.ca_bundle = str(config["ca_bundle"]) if config.get("ca_bundle") else None
        self.labels = _labels(config.get("label_tags"))
        timeout = config.get("timeout", 30)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise _config_error(f"'timeout' must be a positive number of seconds, not {timeout!r}")
        self.timeout = float(timeout)
        self._credential = credential
        self.name = f"azure:{self.subscription}/{self.resource_group or '*'}"

    def load(self) -> WorkloadLoad:
        """List the VMs and NICs (two paged listings), then build one workload per VM that has addresses."""
        try:
            credential = self._credential or default_credential("azure workload source")
        except PermanentDriverError as exc:
            raise _config_error(exc.message) from exc
        try:
            vms = {str(vm["id"]).lower(): vm for vm in self._vms(credential)}
            addresses = self._addresses(credential)
        except AzureError as exc:
            detail = f"HTTP {exc.status_code} {': '.join(arm_error(exc))}" if isinstance(exc, HttpResponseError) \
                else f"{type(exc).__name__}: {exc}"
            raise _config_error(f"listing VMs/NICs of {self.name} failed: {detail}") from exc
        diagnostics: list[Diagnostic] = []
        workloads: list[Workload] = []
        for vm_id, vm in vms.items():
            found = addresses.pop(vm_id, [])
            if not found:
                diagnostics.append(Diagnostic(f"Azure VM {vm.get('name')!r} has no NIC with a private address",
                                              severity=Severity.WARNING, code="no-address"))
                continue
            workload = self._workload(vm, found, diagnostics)
            if workload is not None:
                workloads.append(workload)
        for vm_id in addresses:
            diagnostics.append(Diagnostic(f"a NIC is attached to VM {vm_id.rsplit('/', 1)[-1]!r}, which is not listed "
                                          f"in {self.name}", severity=Severity.WARNING, code="vm-not-listed"))
        return WorkloadLoad(tuple(sorted(workloads, key=lambda w: w.name)), tuple(diagnostics))

    def _workload(self, vm: Mapping[str, Any], found: list[str], diagnostics: list[Diagnostic]) -> Workload | None:
        tags = vm.get("tags") if isinstance(vm.get("tags"), Mapping) else {}
        assert isinstance(tags, Mapping)
        if self.labels is None:
            labels = {str(k): v for k, v in tags.items()}
        else:
            labels = {label: tags[tag] for tag, label in self.labels.items() if tag in tags}
        try:
            return Workload.model_validate({"name": vm.get("name"), "addresses": list(dict.fromkeys(found)),
                                            "labels": labels})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            diagnostics.append(Diagnostic(f"Azure VM {vm.get('name')!r}: {problems}", code="invalid"))
            return None

    def _vms(self, credential: TokenCredential) -> Iterator[Mapping[str, Any]]:
        """Microsoft.Compute/virtualMachines, every page (raw ARM GETs through azure-mgmt-core's pipeline)."""
        scope = f"/subscriptions/{self.subscription}" + (
            f"/resourceGroups/{self.resource_group}" if self.resource_group else "")
        options = client_options(self.base_url, self.ca_bundle, self.timeout)
        scopes = options.pop("credential_scopes", [f"{PUBLIC_ARM_ENDPOINT}/.default"])
        pipeline = [policies.RequestIdPolicy(), policies.HeadersPolicy(), policies.UserAgentPolicy("microseg"),
                    policies.RetryPolicy(retry_total=0), ARMChallengeAuthenticationPolicy(credential, *scopes),
                    policies.ContentDecodePolicy()]
        url: str | None = (f"{self.base_url}{scope}/providers/Microsoft.Compute/virtualMachines"
                           f"?api-version={COMPUTE_API_VERSION}")
        client: ARMPipelineClient[HttpRequest, HttpResponse] = ARMPipelineClient(
            base_url=self.base_url, policies=pipeline, **options)
        with client:
            while url:
                response = client.send_request(HttpRequest("GET", url))
                if response.status_code != 200:
                    raise HttpResponseError(response=response)
                page = response.json()
                yield from (vm for vm in page.get("value", []) if isinstance(vm, Mapping) and vm.get("id"))
                url = page.get("nextLink")

    def _addresses(self, credential: TokenCredential) -> dict[str, list[str]]:
        """VM id (lower case) → the private addresses of the NICs attached to it (azure-mgmt-network, paged)."""
        options = client_options(self.base_url, self.ca_bundle, self.timeout)
        out: dict[str, list[str]] = {}
        with NetworkManagementClient(credential, self.subscription, base_url=self.base_url, **options) as client:
            nics = (client.network_interfaces.list(self.resource_group) if self.resource_group
                    else client.network_interfaces.list_all())
            for nic in nics:
                if nic.virtual_machine is None or not nic.virtual_machine.id:
                    continue
                found = out.setdefault(nic.virtual_machine.id.lower(), [])
                for config in nic.ip_configurations or []:
                    if config.private_ip_address:
                        found.append(config.private_ip_address)  # Workload validation reports bad ones
        return out
