"""TEST DOUBLE of Azure Resource Manager on 127.0.0.1 (HTTPS, trustme certificate): NSGs, ASGs, NICs and VMs.

Never used on a production path.  It follows the ARM REST contract the azure-mgmt-network client relies on:
``api-version`` required, bearer token required, ``{"error": {"code", "message"}}`` bodies, ETag / If-Match /
If-None-Match (412), PUT answering 201/200 with an ``Azure-AsyncOperation`` status URL that answers
``InProgress`` then ``Succeeded``, DELETE answering 202 (+ Location) or 204, 404 ``ResourceNotFound``,
``SecurityRuleConflict`` for two rules with one priority and direction, list pages with ``nextLink``.
Effective security rules of a NIC (POST, a long-running operation whose Location answers the result) expand the
service tags for that NIC (``VirtualNetwork`` from the virtual networks added with ``add_vnet`` and their peers).
Application security groups: GET (404 when missing); NICs reference them per ip-configuration; a rule side holds
prefixes XOR ASGs (up to 10), which must exist in the NSG's region and, across one rule, be of one virtual network.
Error codes checked against public ARM answers: MissingApiVersionParameter, ResourceNotFound,
ResourceGroupNotFound, SecurityRuleConflict, SecurityRuleParameterContainsUnsupportedValue,
SecurityRuleInvalidAddressPrefix, SecurityRuleParametersMissing, InvalidResourceReference,
NumberOfApplicationSecurityGroupsReferencedInSecurityRuleLimitReached,
AllApplicationSecurityGroupsInSecurityRuleMustBeFromSameVnet, PreconditionFailed (message as the compute RP words
it); the other codes are plausible stand-ins.  Requests are counted per (method, kind) and the n-th request of a
kind can be made to fail (500, 429 + Retry-After, a hang until the client times out, or an accepted PUT whose
operation then fails).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.core.credentials import AccessToken

from simulators.https import serving_https

SUB = "00000000-0000-4000-8000-000000000000"
NET = "/providers/Microsoft.Network"
_NSG = rf"^/subscriptions/([^/]+)/resourceGroups/([^/]+){NET}/networkSecurityGroups/([^/]+)"
_PATTERNS = (
    ("nsg", rf"{_NSG}\Z"),
    ("rules", rf"{_NSG}/securityRules\Z"),
    ("asg", rf"^/subscriptions/([^/]+)/resourceGroups/([^/]+){NET}/applicationSecurityGroups/([^/]+)\Z"),
    ("operation", rf"^/subscriptions/([^/]+){NET}/locations/([^/]+)/operations/([^/]+)\Z"),
    ("operation-result", rf"^/subscriptions/([^/]+){NET}/locations/([^/]+)/operationResults/([^/]+)\Z"),
    ("nics", rf"^/subscriptions/([^/]+)(?:/resourceGroups/([^/]+))?{NET}/networkInterfaces\Z"),
    ("effective-nsgs",
     rf"^/subscriptions/([^/]+)/resourceGroups/([^/]+){NET}/networkInterfaces/([^/]+)/effectiveNetworkSecurityGroups\Z"),
    ("vms", r"^/subscriptions/([^/]+)(?:/resourceGroups/([^/]+))?/providers/Microsoft\.Compute/virtualMachines\Z"),
)
ROUTES = tuple((kind, re.compile(pattern, re.IGNORECASE)) for kind, pattern in _PATTERNS)
PROTOCOLS = {"tcp", "udp", "icmp", "esp", "ah", "*"}
TAGS = {"virtualnetwork", "internet", "azureloadbalancer"}
# Azure's default rules as ARM lists them: (name, direction, priority, access, source, destination) — from
# MicrosoftDocs/mslearn-hub-and-spoke-network-architecture azuredeploy.json (commit 092ce224…, the
# defaultSecurityRules of an exported NSG) and learn.microsoft.com "Network security groups: default security rules".
DEFAULT_RULES = (("AllowVnetInBound", "Inbound", 65000, "Allow", "VirtualNetwork", "VirtualNetwork"),
                 ("AllowAzureLoadBalancerInBound", "Inbound", 65001, "Allow", "AzureLoadBalancer", "*"),
                 ("DenyAllInBound", "Inbound", 65500, "Deny", "*", "*"),
                 ("AllowVnetOutBound", "Outbound", 65000, "Allow", "VirtualNetwork", "VirtualNetwork"),
                 ("AllowInternetOutBound", "Outbound", 65001, "Allow", "*", "Internet"),
                 ("DenyAllOutBound", "Outbound", 65500, "Deny", "*", "*"))


class ArmError(Exception):
    """An ARM error answer."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class FakeCredential:
    """A TokenCredential test double: a dummy bearer token, calls counted."""

    def __init__(self) -> None:
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return AccessToken("fake-arm-token", int(time.time()) + 3600)


@dataclass
class Operation:
    """One long-running operation: answers InProgress ``remaining`` times, then Succeeded (or Failed)."""

    key: str | None
    remaining: int
    fail: bool = False
    result: Any = None  # what the operation's Location answers once it succeeded (None: 204, no body)


@dataclass
class FakeArm:
    """The state and controls of the fake (the HTTP side is :class:`_Handler`)."""

    polls_in_progress: int = 1
    lro_retry_after: str | None = None
    page_size: int = 50
    hang_seconds: float = 20.0
    nsgs: dict[str, dict[str, Any]] = field(default_factory=dict)
    asgs: dict[str, dict[str, Any]] = field(default_factory=dict)  # by lower-case resource id
    groups: set[str] = field(default_factory=lambda: {f"{SUB}/rg-shop-dev".lower()})
    nics: list[dict[str, Any]] = field(default_factory=list)
    vms: list[dict[str, Any]] = field(default_factory=list)
    vnets: dict[str, dict[str, Any]] = field(default_factory=dict)  # by lower-case id: address space, peers
    effective_answers: dict[str, Any] = field(default_factory=dict)  # NIC name (lower case) → a body to answer
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    faults: dict[tuple[str, str, int], tuple[str, int]] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    release: threading.Event = field(default_factory=threading.Event)
    base_url: str = ""
    ca_file: str = ""

    # ------------------------------------------------------------------ controls used by tests

    def fail(self, method: str, kind: str, nth: int = 1, fault: str = "500", retry_after: int = 1) -> None:
        """Make the ``nth`` (counted from now on) ``method`` request of ``kind`` fail with ``fault``."""
        self.faults[(method, kind, self.calls[(method, kind)] + nth)] = (fault, retry_after)

    def count(self, method: str, kind: str) -> int:
        return self.calls[(method, kind)]

    def writes(self) -> int:
        return sum(n for (method, _), n in self.calls.items() if method in ("PUT", "DELETE", "PATCH", "POST"))

    def nsg(self, rg: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.nsgs.get(_key(SUB, rg, name))
            return copy.deepcopy(found)

    def seed_nsg(self, rg: str, name: str, rules: list[dict[str, Any]], *, location: str = "westeurope",
                 tags: dict[str, str] | None = None) -> dict[str, Any]:
        """Create or replace an NSG out of band (as another tool would), validated like a PUT."""
        body: dict[str, Any] = {"location": location, "properties": {"securityRules": copy.deepcopy(rules)}}
        if tags is not None:
            body["tags"] = tags
        with self.lock:
            self.groups.add(f"{SUB}/{rg}".lower())
            self._store(SUB, rg, name, body, "Succeeded")
            return copy.deepcopy(self.nsgs[_key(SUB, rg, name)])

    def add_asg(self, rg: str, name: str, location: str = "westeurope") -> str:
        """Create an application security group (as ARM returns it); its resource id."""
        asg_id = f"/subscriptions/{SUB}/resourceGroups/{rg}{NET}/applicationSecurityGroups/{name}"
        with self.lock:
            self.groups.add(f"{SUB}/{rg}".lower())
            self.asgs[asg_id.lower()] = {
                "name": name, "id": asg_id, "etag": f'W/"{uuid.uuid4()}"', "location": location,
                "type": "Microsoft.Network/applicationSecurityGroups",
                "properties": {"resourceGuid": str(uuid.uuid4()), "provisioningState": "Succeeded"}}
        return asg_id

    def attach(self, rg: str, name: str, subnet_id: str) -> None:
        """Associate the NSG with a subnet or (given a NIC id) a network interface (read-only in the NSG's own
        API, as in ARM)."""
        kind = "networkInterfaces" if "/networkinterfaces/" in subnet_id.lower() else "subnets"
        with self.lock:
            self.nsgs[_key(SUB, rg, name)]["properties"].setdefault(kind, []).append({"id": subnet_id})

    def add_vnet(self, rg: str, name: str, prefixes: list[str], *, peers: tuple[str, ...] = (),
                 sub: str = SUB) -> str:
        """A virtual network with its address space, peered (both ways) with the named virtual networks of the
        same resource group; its resource id.  Only the VirtualNetwork tag's expansion reads it."""
        vnet_id = f"/subscriptions/{sub}/resourceGroups/{rg}{NET}/virtualNetworks/{name}"
        with self.lock:
            self.vnets[vnet_id.lower()] = {"addressSpace": list(prefixes), "peers": set()}
            for peer in peers:
                peer_id = f"/subscriptions/{sub}/resourceGroups/{rg}{NET}/virtualNetworks/{peer}".lower()
                self.vnets[vnet_id.lower()]["peers"].add(peer_id)
                self.vnets[peer_id]["peers"].add(vnet_id.lower())
        return vnet_id

    # ------------------------------------------------------------------ request handling

    def handle(self, method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        if not query.get("api-version"):
            raise ArmError(400, "MissingApiVersionParameter",
                           "The api-version query parameter (?api-version=) is required for all requests.")
        if not headers.get("authorization", "").startswith("Bearer "):
            raise ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
        kind, groups = _route(parts.path)
        with self.lock:
            self.calls[(method, kind)] += 1
            fault = self.faults.pop((method, kind, self.calls[(method, kind)]), None)
        if fault is not None and fault[0] != "fail-operation":
            self._fault(*fault)
        host = f"https://{headers.get('host', '127.0.0.1')}"
        with self.lock:
            if kind == "nsg":
                return self._nsg(method, groups, headers, body, host, query["api-version"][0], fault is not None)
            if kind == "effective-nsgs" and method == "POST":
                return self._effective_nsgs(groups, host, query["api-version"][0])
            if method != "GET":
                raise ArmError(405, "MethodNotAllowed", f"The requested method {method} is not allowed.")
            if kind == "operation":
                return self._operation(groups[2])
            if kind == "operation-result":
                done = self.operations.get(groups[2])
                if done is not None and done.remaining > 0:  # not finished: ARM answers 202 until it is
                    return 202, {}, None
                return (204, {}, None) if done is None or done.result is None else (200, {}, done.result)
            return self._read(kind, groups, host, parts.path, query)

    def _fault(self, fault: str, retry_after: int) -> None:
        if fault == "429":
            raise ArmError(429, "TooManyRequests", "The request is being throttled.",
                           {"Retry-After": str(retry_after)})
        if fault == "hang":
            self.release.wait(self.hang_seconds)
            raise ConnectionAbortedError("hung request released")
        raise ArmError(500, "InternalServerError", "An internal error occurred in the fake ARM server.")

    def _nsg(self, method: str, groups: tuple[str, ...], headers: dict[str, str], body: bytes, host: str,
             api: str, fail_operation: bool) -> tuple[int, dict[str, str], Any]:
        sub, rg, name = groups[:3]
        key = _key(sub, rg, name)
        current = self.nsgs.get(key)
        if method == "GET":
            if current is None:
                raise _not_found(rg, name)
            return 200, {"ETag": current["etag"]}, current
        _check_conditions(headers, current)
        location = (current or {}).get("location") or "westeurope"
        if method == "DELETE":
            if current is None:
                return 204, {}, None
            if current["properties"].get("subnets") or current["properties"].get("networkInterfaces"):
                raise ArmError(400, "InUseNetworkSecurityGroupCannotBeDeleted",
                               f"Network security group {current['id']} cannot be deleted because it is in use.")
            del self.nsgs[key]
            return 202, self._start(None, location, host, api, sub), None
        if method != "PUT":
            raise ArmError(405, "MethodNotAllowed", f"The requested method {method} is not allowed.")
        if f"{sub}/{rg}".lower() not in self.groups:
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("properties", {}), dict):
            raise ArmError(400, "InvalidRequestFormat", "Cannot parse the request.")
        if current is None and not payload.get("location"):
            raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
        self._store(sub, rg, name, payload, "Updating")
        stored = self.nsgs[key]
        announce = self._start(key, stored["location"], host, api, sub, fail=fail_operation)
        announce.pop("Location")  # a PUT's operation is announced by Azure-AsyncOperation only
        return (200 if current else 201), {"ETag": stored["etag"], **announce}, stored

    def _store(self, sub: str, rg: str, name: str, payload: dict[str, Any], state: str) -> None:
        key = _key(sub, rg, name)
        nsg_id = f"/subscriptions/{sub}/resourceGroups/{rg}{NET}/networkSecurityGroups/{name}"
        rules = payload.get("properties", {}).get("securityRules") or []
        _validate_rules(rules, nsg_id)
        old = self.nsgs.get(key) or {}
        for rule in rules:
            self._check_asgs(rule["properties"], f"{nsg_id}/securityRules/{rule['name']}",
                             payload.get("location") or old.get("location"))
        old_props = old.get("properties", {})
        etag = f'W/"{uuid.uuid4()}"'
        props = {k: v for k, v in payload.get("properties", {}).items() if k != "securityRules"}
        props.update({
            "provisioningState": state,
            "resourceGuid": old_props.get("resourceGuid", str(uuid.uuid4())),
            "securityRules": [_stored_rule(r, nsg_id, etag, state) for r in rules],
            "defaultSecurityRules": [_default_rule(d, nsg_id, etag) for d in DEFAULT_RULES],
        })
        for read_only in ("subnets", "networkInterfaces"):
            if read_only in old_props:
                props[read_only] = old_props[read_only]
        nsg = {"name": name, "id": nsg_id, "etag": etag, "type": "Microsoft.Network/networkSecurityGroups",
               "location": payload.get("location") or old.get("location"), "properties": props}
        if "tags" in payload:
            nsg["tags"] = payload["tags"]
        self.nsgs[key] = nsg

    def _start(self, key: str | None, location: str, host: str, api: str, sub: str,
               fail: bool = False) -> dict[str, str]:
        """Register an operation; the headers that announce it (Azure-AsyncOperation, Location, Retry-After)."""
        op = str(uuid.uuid4())
        self.operations[op] = Operation(key, self.polls_in_progress, fail)
        base = f"{host}/subscriptions/{sub}{NET}/locations/{location}"
        out = {"Azure-AsyncOperation": f"{base}/operations/{op}?api-version={api}",
               "Location": f"{base}/operationResults/{op}?api-version={api}"}
        if self.lro_retry_after is not None:
            out["Retry-After"] = self.lro_retry_after
        return out

    def _operation(self, op_id: str) -> tuple[int, dict[str, str], Any]:
        op = self.operations.get(op_id)
        if op is None:
            raise ArmError(404, "NotFound", f"Operation {op_id} was not found.")
        if op.remaining > 0:
            op.remaining -= 1
            return 200, {}, {"status": "InProgress"}
        state = "Failed" if op.fail else "Succeeded"
        nsg = self.nsgs.get(op.key) if op.key else None
        if nsg is not None:
            nsg["properties"]["provisioningState"] = state
            for rule in nsg["properties"]["securityRules"]:
                rule["properties"]["provisioningState"] = state
        if op.fail:
            return 200, {}, {"status": "Failed", "error": {"code": "InternalServerError",
                                                             "message": "The fake operation failed half-way."}}
        return 200, {}, {"status": "Succeeded"}

    def _read(self, kind: str, groups: tuple[str, ...], host: str, path: str,
              query: dict[str, list[str]]) -> tuple[int, dict[str, str], Any]:
        if kind == "rules":
            nsg = self.nsgs.get(_key(*groups[:3]))
            if nsg is None:
                raise _not_found(groups[1], groups[2])
            return 200, {}, {"value": nsg["properties"]["securityRules"]}
        if kind == "asg":
            asg = self.asgs.get(f"/subscriptions/{groups[0]}/resourceGroups/{groups[1]}{NET}/"
                                f"applicationSecurityGroups/{groups[2]}".lower())
            if asg is None and f"{groups[0]}/{groups[1]}".lower() not in self.groups:
                raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{groups[1]}' could not be found.")
            if asg is None:
                raise _not_found(groups[1], groups[2], "applicationSecurityGroups")
            return 200, {}, asg
        items = self.nics if kind == "nics" else self.vms
        scope = f"/subscriptions/{groups[0]}/" + (f"resourceGroups/{groups[1]}/" if groups[1] else "")
        chosen = [i for i in items if i["id"].lower().startswith(scope.lower())]
        start = int(query.get("$skiptoken", ["0"])[0])
        page: dict[str, Any] = {"value": chosen[start:start + self.page_size]}
        if start + self.page_size < len(chosen):
            api = query["api-version"][0]
            page["nextLink"] = f"{host}{path}?api-version={api}&$skiptoken={start + self.page_size}"
        return 200, {}, page

    def _effective_nsgs(self, groups: tuple[str, ...], host: str, api: str) -> tuple[int, dict[str, str], Any]:
        """POST …/effectiveNetworkSecurityGroups: 202 with the operation's headers; its Location then answers the
        NSGs that apply to the NIC (associated with it or with its subnet), each with its effective rules and tags
        expanded for that NIC.  A NIC no VM holds is refused (a plausible stand-in for Azure's refusal of a NIC
        not attached to a running VM)."""
        sub, rg, name = groups
        nic_id = f"/subscriptions/{sub}/resourceGroups/{rg}{NET}/networkInterfaces/{name}".lower()
        nic = next((n for n in self.nics if n["id"].lower() == nic_id), None)
        if nic is None:
            raise _not_found(rg, name, "networkInterfaces")
        if "virtualMachine" not in nic["properties"]:
            raise ArmError(400, "NicNotAttachedToRunningVm", f"Network interface {nic['id']} is not attached to a "
                           f"running virtual machine; effective security rules are only available for one that is.")
        subnets = {str(c["properties"].get("subnet", {}).get("id", "")).lower()
                   for c in nic["properties"]["ipConfigurations"]}
        tags = self._tag_expansions(nic)
        value = []
        for nsg in self.nsgs.values():
            props = nsg["properties"]
            on_nic = any(str(r.get("id", "")).lower() == nic_id for r in props.get("networkInterfaces") or [])
            on_subnet = [r for r in props.get("subnets") or [] if str(r.get("id", "")).lower() in subnets]
            if not on_nic and not on_subnet:
                continue
            association = {"networkInterface": {"id": nic["id"]}} if on_nic else {"subnet": on_subnet[0]}
            rules = [("securityRules", r) for r in props["securityRules"]] + \
                    [("defaultSecurityRules", r) for r in props["defaultSecurityRules"]]
            used: dict[str, list[str]] = {}
            effective = [_effective_rule(kind, rule, tags, used) for kind, rule in rules]
            value.append({"networkSecurityGroup": {"id": nsg["id"]}, "association": association,
                          "effectiveSecurityRules": effective, "tagMap": json.dumps(used)})
        op = str(uuid.uuid4())
        answer = self.effective_answers.get(name.lower(), {"value": value})  # a test's malformed answer
        self.operations[op] = Operation(None, self.polls_in_progress, result=answer)
        base = f"{host}/subscriptions/{sub}{NET}/locations/{nic['location']}"
        return 202, {"Azure-AsyncOperation": f"{base}/operations/{op}?api-version={api}",
                     "Location": f"{base}/operationResults/{op}?api-version={api}"}, None

    def _tag_expansions(self, nic: dict[str, Any]) -> dict[str, list[str]]:
        """What the tags stand for at a NIC: VirtualNetwork is its virtual network's address space, its peers'
        and the host's virtual IP 168.63.129.16 (as the Network Watcher security group view example shows);
        AzureLoadBalancer the host's virtual IP; Internet — a stand-in — the public unicast space outside them."""
        vnet_ids = {_vnet(c) for c in nic["properties"]["ipConfigurations"]}
        space: list[str] = []
        for vnet_id in sorted(vnet_ids):
            vnet = self.vnets.get(vnet_id, {"addressSpace": [], "peers": set()})
            space += vnet["addressSpace"]
            for peer in sorted(vnet["peers"]):
                space += self.vnets[peer]["addressSpace"]
        virtual = [str(n) for n in _collapsed([*space, "168.63.129.16/32"])]
        internet = _outside(["0.0.0.0/0", "2000::/3"], [*virtual, *NOT_INTERNET])
        return {"virtualnetwork": virtual, "azureloadbalancer": ["168.63.129.16/32"], "internet": internet}

    def _check_asgs(self, props: dict[str, Any], rule_id: str, location: str | None) -> None:
        """The ASGs a rule references exist in the NSG's region, and all come from one virtual network."""
        refs = [r for side in ("source", "destination") for r in props.get(f"{side}ApplicationSecurityGroups") or []]
        vnets: set[str] = set()
        for ref in refs:
            ref_id = str(ref.get("id", "")) if isinstance(ref, dict) else ""
            asg = self.asgs.get(ref_id.lower())
            if asg is None or str(asg["location"]).lower() != str(location).lower():
                raise ArmError(400, "InvalidResourceReference", f"Resource {ref_id} referenced by resource {rule_id} "
                               f"was not found. Please make sure that the referenced resource exists, and that both "
                               f"resources are in the same region.")
            vnets |= {_vnet(config) for config in self._ip_configs() if ref_id.lower() in _asg_ids(config)}
        if len(vnets) > 1:
            raise ArmError(400, "AllApplicationSecurityGroupsInSecurityRuleMustBeFromSameVnet", f"Security Rule "
                           f"{rule_id} has Application Security Groups (ASGs) from multiple virtual networks "
                           f"({', '.join(sorted(vnets))}). All ASGs on the Security Rule must be from the same "
                           f"virtual network.")

    def _ip_configs(self) -> Iterator[dict[str, Any]]:
        for nic in self.nics:
            yield from nic["properties"]["ipConfigurations"]

    # ------------------------------------------------------------------ VMs and NICs (workload source)

    def add_vm(self, rg: str, name: str, tags: dict[str, str], addresses: list[list[str]], *, sub: str = SUB,
               location: str = "westeurope", vnet: str = "vnet-shop-dev") -> None:
        """A VM with one NIC per address list (a NIC's ipConfigurations hold its addresses)."""
        vm_id = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}"
        nic_ids = [self.add_nic(rg, f"{name}-nic{i}", ips, vm_id, sub=sub, location=location, vnet=vnet)
                   for i, ips in enumerate(addresses)]
        self.vms.append({"name": name, "id": vm_id, "type": "Microsoft.Compute/virtualMachines",
                         "location": location, "tags": tags,
                         "properties": {"provisioningState": "Succeeded", "networkProfile": {
                             "networkInterfaces": [{"id": n} for n in nic_ids]}}})

    def add_nic(self, rg: str, name: str, ips: list[str], vm_id: str | None, asgs: tuple[str, ...] = (),
                vnet: str = "vnet-shop-dev", *, sub: str = SUB, location: str = "westeurope") -> str:
        """A NIC with one ip-configuration per address, each in subnet ``default`` of ``vnet`` and in ``asgs``."""
        nic_id = f"/subscriptions/{sub}/resourceGroups/{rg}{NET}/networkInterfaces/{name}"
        subnet = f"/subscriptions/{sub}/resourceGroups/{rg}{NET}/virtualNetworks/{vnet}/subnets/default"
        configs = [{"name": f"ipconfig{i}", "id": f"{nic_id}/ipConfigurations/ipconfig{i}",
                    "properties": {"privateIPAddress": ip, "primary": i == 0, "provisioningState": "Succeeded",
                                   "privateIPAllocationMethod": "Dynamic", "subnet": {"id": subnet},
                                   "privateIPAddressVersion": f"IPv{ipaddress.ip_address(ip).version}",
                                   **({"applicationSecurityGroups": [{"id": a} for a in asgs]} if asgs else {})}}
                   for i, ip in enumerate(ips)]
        props: dict[str, Any] = {"ipConfigurations": configs, "provisioningState": "Succeeded"}
        if vm_id is not None:
            props["virtualMachine"] = {"id": vm_id}
        self.nics.append({"name": name, "id": nic_id, "location": location,
                          "type": "Microsoft.Network/networkInterfaces", "properties": props})
        return nic_id


# private, shared, loopback, link-local, multicast and reserved space: never part of the fake's Internet tag
NOT_INTERNET = ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
                "192.168.0.0/16", "224.0.0.0/3")


def _collapsed(prefixes: list[str]) -> list[Any]:
    networks = [ipaddress.ip_network(p, strict=False) for p in prefixes]
    return [n for version in (4, 6)
            for n in ipaddress.collapse_addresses(x for x in networks if x.version == version)]


def _outside(universe: list[str], excluded: list[str]) -> list[str]:
    """The prefixes of ``universe`` outside ``excluded``."""
    left = _collapsed(universe)
    for cut in _collapsed(excluded):
        kept: list[Any] = []
        for net in left:
            if net.version != cut.version or not net.overlaps(cut):
                kept.append(net)
            elif not cut.supernet_of(net):
                kept.extend(net.address_exclude(cut))
        left = kept
    return [str(n) for n in _collapsed([str(n) for n in left])]


def _effective_rule(kind: str, rule: dict[str, Any], tags: dict[str, list[str]],
                    used: dict[str, list[str]]) -> dict[str, Any]:
    """One rule as the effective security rules list it: ``*`` protocols and ports spelled out, each tag side
    with its expansion (recorded in ``used``, the NSG's tagMap)."""
    props = rule["properties"]
    out: dict[str, Any] = {"name": f"{kind}/{rule['name']}", "access": props["access"],
                           "priority": props["priority"], "direction": props["direction"],
                           "protocol": "All" if props["protocol"] == "*" else props["protocol"]}
    for side in ("source", "destination"):
        port = props.get(f"{side}PortRange")
        out[f"{side}PortRange"] = "0-65535" if port == "*" else port
        prefix = props.get(f"{side}AddressPrefix")
        out[f"{side}AddressPrefix"] = prefix
        expanded = tags.get(str(prefix).lower()) if isinstance(prefix, str) else None
        out[f"expanded{side[0].upper()}{side[1:]}AddressPrefix"] = expanded or []
        if expanded:
            used[str(prefix)] = expanded
    return out


def _key(sub: str, rg: str, name: str) -> str:
    return f"{sub}/{rg}/{name}".lower()


def _route(path: str) -> tuple[str, tuple[str, ...]]:
    for kind, pattern in ROUTES:
        match = pattern.match(path)
        if match:
            return kind, tuple(match.groups())
    raise ArmError(404, "InvalidResourceType", f"The resource path '{path}' is not served by the fake ARM server.")


def _not_found(rg: str, name: str, kind: str = "networkSecurityGroups") -> ArmError:
    return ArmError(404, "ResourceNotFound", f"The Resource 'Microsoft.Network/{kind}/{name}' under "
                    f"resource group '{rg}' was not found. For more details please go to "
                    f"https://aka.ms/ARMResourceNotFoundFix")


def _asg_ids(config: dict[str, Any]) -> set[str]:
    """The (lower-case) ids of the ASGs a NIC ip-configuration is in."""
    return {str(a["id"]).lower() for a in config["properties"].get("applicationSecurityGroups", [])}


def _vnet(config: dict[str, Any]) -> str:
    """The virtual network of a NIC ip-configuration (its subnet's parent), lower case."""
    return str(config["properties"].get("subnet", {}).get("id", "")).lower().split("/subnets/")[0]


def _check_conditions(headers: dict[str, str], current: dict[str, Any] | None) -> None:
    if_match, if_none = headers.get("if-match"), headers.get("if-none-match")
    etag = current["etag"] if current else None
    if if_match is not None and (current is None or if_match not in ("*", etag)):
        raise ArmError(412, "PreconditionFailed",
                       f"Etag provided in if-match header {if_match} does not match etag {etag} of resource.")
    if if_none == "*" and current is not None:
        raise ArmError(412, "PreconditionFailed", "The resource exists and if-none-match is '*'.")


def _stored_rule(rule: dict[str, Any], nsg_id: str, etag: str, state: str) -> dict[str, Any]:
    props = dict(rule["properties"])
    for plural in ("sourceAddressPrefixes", "destinationAddressPrefixes", "sourcePortRanges",
                   "destinationPortRanges"):
        props.setdefault(plural, [])  # ARM answers with empty lists for the unset plural fields
    props["provisioningState"] = state
    return {"name": rule["name"], "id": f"{nsg_id}/securityRules/{rule['name']}", "etag": etag,
            "type": "Microsoft.Network/networkSecurityGroups/securityRules", "properties": props}


def _default_rule(spec: tuple[str, str, int, str, str, str], nsg_id: str, etag: str) -> dict[str, Any]:
    name, direction, priority, access, source, destination = spec
    props = {"protocol": "*", "sourcePortRange": "*", "destinationPortRange": "*", "access": access,
             "priority": priority, "direction": direction, "provisioningState": "Succeeded",
             "sourceAddressPrefix": source, "destinationAddressPrefix": destination}
    return {"name": name, "id": f"{nsg_id}/defaultSecurityRules/{name}", "etag": etag,
            "type": "Microsoft.Network/networkSecurityGroups/defaultSecurityRules", "properties": props}


def _validate_rules(rules: list[Any], nsg_id: str) -> None:
    """The checks ARM makes on a PUT of an NSG's securityRules (a faithful subset)."""
    seen: dict[tuple[int, str], str] = {}
    names: set[str] = set()
    for rule in rules:
        name, props = (rule.get("name"), rule.get("properties")) if isinstance(rule, dict) else (None, None)
        if not isinstance(name, str) or not isinstance(props, dict) or name.lower() in names:
            raise ArmError(400, "InvalidRequestFormat", f"Cannot parse the request (rule {name!r}).")
        names.add(name.lower())
        rule_id, priority, direction = f"{nsg_id}/securityRules/{name}", props.get("priority"), props.get("direction")
        if not isinstance(priority, int) or not 100 <= priority <= 4096:
            raise ArmError(400, "SecurityRuleInvalidPriority", f"Security rule has invalid Priority. Value provided: "
                           f"{priority} Allowed range 100-4096.")
        if direction not in ("Inbound", "Outbound") or props.get("access") not in ("Allow", "Deny") or \
                str(props.get("protocol", "")).lower() not in PROTOCOLS:
            raise ArmError(400, "SecurityRuleInvalidParameter", f"Security rule {rule_id} has an invalid direction, "
                           f"access or protocol.")
        families = {f for side in ("source", "destination") for f in _check_side(props, side, rule_id)}
        if len(families) > 1:
            raise ArmError(400, "SecurityRuleInvalidAddressPrefix", f"Security rule {rule_id} mixes IPv4 and IPv6.")
        other = seen.setdefault((priority, str(direction)), name)
        if other != name:
            raise ArmError(400, "SecurityRuleConflict", f"Security rule {other} conflicts with rule {name}. Rules "
                           f"cannot have the same Priority and Direction. To learn more, see aka.ms/nsgrules.")


def _asg_side(props: dict[str, Any], side: str, rule_id: str, prefixes: bool) -> bool:
    """Whether a side holds ASGs (then no prefixes, at most 10, each an ``{"id"}``); none and no prefix: 400."""
    asgs = props.get(f"{side}ApplicationSecurityGroups") or []
    field_name = f"{side.title()}ApplicationSecurityGroups"
    if not asgs and not prefixes:
        raise ArmError(400, "SecurityRuleParametersMissing", f"Required security rule parameters are missing for "
                       f"security rule with Id: {rule_id}. Security rule must specify {side.title()}AddressPrefixes, "
                       f"{side.title()}AddressPrefix, or {field_name}.")
    if asgs and prefixes:
        raise ArmError(400, "SecurityRuleInvalidAddressPrefix", f"Security rule {rule_id}: {field_name} cannot be "
                       f"combined with {side.title()}AddressPrefix or {side.title()}AddressPrefixes.")
    if len(asgs) > 10:
        raise ArmError(400, "NumberOfApplicationSecurityGroupsReferencedInSecurityRuleLimitReached", f"A security "
                       f"rule may have up to 10 Application Security Groups in the source or destination fields. "
                       f"The requested configuration has {len(asgs)} in the {field_name} field.")
    if not all(isinstance(a, dict) and isinstance(a.get("id"), str) for a in asgs):
        raise ArmError(400, "InvalidRequestFormat", f"Cannot parse the request ({field_name} of {rule_id}).")
    return bool(asgs)


def _check_side(props: dict[str, Any], side: str, rule_id: str) -> set[int]:
    """One side's address prefixes and port ranges: singular XOR list, no '*'/tags in lists, valid values."""
    families: set[int] = set()
    for kind, plural in (("AddressPrefix", "AddressPrefixes"), ("PortRange", "PortRanges")):
        single, many = props.get(f"{side}{kind}"), props.get(f"{side}{plural}") or []
        if kind == "AddressPrefix" and _asg_side(props, side, rule_id, bool(single or many)):
            continue
        for value in many:
            if str(value) == "*" or str(value).lower() in TAGS:
                raise ArmError(400, "SecurityRuleParameterContainsUnsupportedValue", f"Security rule parameter "
                               f"{side.title()}{plural} for rule with Id {rule_id} cannot specify existing "
                               f"VIRTUALNETWORK, INTERNET, AZURELOADBALANCER, '*' or system tags. Unsupported value "
                               f"used: {value}.")
        if bool(single) == bool(many):
            raise ArmError(400, f"SecurityRuleInvalid{kind}", f"Security rule {rule_id}: set exactly one of "
                           f"{side}{kind} and {side}{plural}.")
        for value in map(str, [single] if single else many):
            if kind == "AddressPrefix" and value != "*" and value.lower() not in TAGS:
                try:
                    families.add(ipaddress.ip_network(value, strict=False).version)
                except ValueError:
                    raise ArmError(400, "SecurityRuleInvalidAddressPrefix", f"Security rule {rule_id} has invalid "
                                   f"Address prefix. Value provided: {value}.") from None
            lo, sep, hi = value.partition("-")
            if kind == "PortRange" and value != "*" and not (
                    lo.isdigit() and (not sep or hi.isdigit()) and int(lo) <= int(hi or lo) <= 65535):
                raise ArmError(400, "SecurityRuleInvalidPortRange", f"Security rule has invalid Port range. Value "
                               f"provided: {value}. Value should be an integer OR integer range with '-' delimiter. "
                               f"Valid range 0-65535.")
    return families


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    arm: FakeArm

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, out_headers, payload = self.arm.handle(self.command, self.path, headers, body)
        except ArmError as exc:
            status, out_headers, payload = exc.status, exc.headers, {"error": {"code": exc.code,
                                                                               "message": exc.message}}
        except ConnectionAbortedError:
            self.close_connection = True
            return
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for key, value in {**out_headers, "x-ms-request-id": str(uuid.uuid4())}.items():
            self.send_header(key, value)
        if payload is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_POST = _serve


def nsg_settings(arm: FakeArm, **overrides: Any) -> dict[str, Any]:
    """The worked example's settings (azure-nsg-dev-app), pointed at the fake."""
    return {"subscription_id": SUB, "resource_group": "rg-shop-dev", "nsg_name": "nsg-shop-dev-app",
            "location": "westeurope", "rule_name_prefix": "mseg-", "priority_min": 100, "priority_max": 1999,
            "base_url": arm.base_url, "ca_bundle": arm.ca_file, "poll_interval": 0.01, **overrides}


@contextmanager
def running_fake_arm(directory: Path, *, address: str = "127.0.0.1", port: int = 0, ca_name: str = "fake-arm-ca.pem",
                     arm: FakeArm | None = None, **options: Any) -> Iterator[FakeArm]:
    """Serve ``arm`` (default: a new fake with ``options``) on a loopback port (default: a free one) over HTTPS,
    its CA written to ``directory / ca_name``; stopped on exit."""
    arm = FakeArm(**options) if arm is None else arm
    arm.ca_file = str(directory / ca_name)
    handler = type("Handler", (_Handler,), {"arm": arm})
    with serving_https(handler, directory / ca_name, address=address, port=port, name="fake-arm") as url:
        arm.base_url = url
        try:
            yield arm
        finally:
            arm.release.set()  # hanging requests end before the server stops
