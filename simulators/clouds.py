"""``python -m simulators.clouds SPEC.json``: the lab's cloud counterparts (TEST DOUBLES) until SIGTERM/SIGINT.

Each endpoint of the spec gets one server on its loopback address and port:

* ``aws``: moto's server (EC2), seeded through boto3 with each point's VPC — the inventory's ``vpc_id`` (moto
  draws random ids; this process fixes the id while it creates the VPC), the /16 and /56 around the members'
  addresses, a subnet per /24 (and /64), and one ENI per member workload tagged with its name and labels;
* ``azure``: the ARM simulator (:mod:`simulators.azure_arm`, HTTPS with a trustme CA written to ``ca_file``) with
  each point's resource group and a VM + NIC per member workload, tagged with its labels;
* ``gcp``: the Compute simulator (:mod:`simulators.gcp_compute`) with an instance per member workload in the
  point's network, carrying the point's target tags and the workload's labels.

Nothing here is on the production path: the drivers talk to these through the unmodified SDKs, exactly as they
talk to the clouds.  The endpoints start listening only when every seed is in place (moto is seeded through a
private server on a free port first), so "listening" means "ready".
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

GCP_ZONE = "europe-west1-b"
ANONYMOUS = {"aws_access_key_id": "anonymous", "aws_secret_access_key": "anonymous"}


def _addresses(workload: Mapping[str, Any], version: int) -> list[str]:
    return [a for a in workload["addresses"] if ipaddress.ip_address(a).version == version]


@contextlib.contextmanager
def _fixed_ids(vpc_id: str, ipv6: str | None) -> Iterator[None]:
    """moto hands out random VPC ids and IPv6 blocks: while one VPC is created, hand out these instead."""
    from moto.ec2.models import vpcs  # noqa: PLC0415  (moto only in the lab process)

    saved = vpcs.random_vpc_id, vpcs.random_ipv6_cidr
    vpcs.random_vpc_id = lambda: vpc_id
    if ipv6 is not None:
        vpcs.random_ipv6_cidr = lambda: ipv6
    try:
        yield
    finally:
        vpcs.random_vpc_id, vpcs.random_ipv6_cidr = saved


def seed_aws(endpoint: str, seed: Mapping[str, Any]) -> list[str]:
    """The point's VPC, subnets and one ENI per member workload; returns what was skipped (and why)."""
    import boto3  # noqa: PLC0415  (loaded with the AWS seed only)

    ec2 = boto3.session.Session(**ANONYMOUS).client("ec2", region_name=seed["region"], endpoint_url=endpoint)
    workloads = seed["workloads"]
    v4 = [a for w in workloads for a in _addresses(w, 4)]
    v6 = [a for w in workloads for a in _addresses(w, 6)]
    cidr4 = ipaddress.ip_network(f"{v4[0]}/16", strict=False) if v4 else ipaddress.ip_network("10.0.0.0/16")
    cidr6 = ipaddress.ip_network(f"{v6[0]}/56", strict=False) if v6 else None
    vpc_id = seed["vpc_id"]
    known = ec2.describe_vpcs()["Vpcs"]  # creates the region's default VPC now, before the ids are fixed
    if not any(v["VpcId"] == vpc_id for v in known):
        with _fixed_ids(vpc_id, None if cidr6 is None else str(cidr6)):
            ec2.create_vpc(CidrBlock=str(cidr4), AmazonProvidedIpv6CidrBlock=cidr6 is not None)
    skipped: list[str] = []
    subnets: dict[ipaddress.IPv4Network, str] = {}
    for workload in workloads:
        mine4 = [a for a in _addresses(workload, 4) if ipaddress.ip_address(a) in cidr4]
        mine6 = [a for a in _addresses(workload, 6) if cidr6 is not None and ipaddress.ip_address(a) in cidr6]
        if not mine4:
            skipped.append(f"{workload['name']}: no IPv4 address in {cidr4} (the VPC the lab made for "
                           f"{seed['point']})")
            continue
        block = ipaddress.ip_network(f"{mine4[0]}/24", strict=False)
        if block not in subnets:
            params: dict[str, Any] = {"VpcId": vpc_id, "CidrBlock": str(block)}
            if mine6:
                params["Ipv6CidrBlock"] = str(ipaddress.ip_network(f"{mine6[0]}/64", strict=False))
            subnets[block] = ec2.create_subnet(**params)["Subnet"]["SubnetId"]
        tags = [{"Key": "Name", "Value": workload["name"]},
                *({"Key": str(k), "Value": str(v)} for k, v in workload.get("labels", {}).items())]
        eni: dict[str, Any] = {"SubnetId": subnets[block], "PrivateIpAddress": mine4[0],
                               "Description": f"lab workload {workload['name']}",
                               "TagSpecifications": [{"ResourceType": "network-interface", "Tags": tags}]}
        if mine6:
            eni["Ipv6Addresses"] = [{"Ipv6Address": a} for a in mine6]
        ec2.create_network_interface(**eni)
    return skipped


def seed_azure(arm: Any, seed: Mapping[str, Any]) -> None:
    """The point's resource group and a VM (one NIC with every address) per member workload."""
    sub, group = seed["subscription_id"], seed["resource_group"]
    location = seed.get("location") or "westeurope"
    with arm.lock:
        arm.groups.add(f"{sub}/{group}".lower())
        for workload in seed["workloads"]:
            arm.add_vm(group, workload["name"], {str(k): str(v) for k, v in workload.get("labels", {}).items()},
                       [list(workload["addresses"])], sub=sub, location=location)


def seed_gcp(fake: Any, seed: Mapping[str, Any]) -> None:
    """An instance per member workload, in the point's network, with its target tags and the workload's labels."""
    for workload in seed["workloads"]:
        nic: dict[str, str] = {}
        if v4 := _addresses(workload, 4):
            nic["networkIP"] = v4[0]
        if v6 := _addresses(workload, 6):
            nic["ipv6Address"] = v6[0]
        labels = {str(k).lower(): str(v).lower() for k, v in workload.get("labels", {}).items()}
        fake.add_instance(seed["project"], GCP_ZONE, workload["name"], labels=labels, interfaces=[nic],
                          tags=tuple(seed.get("target_tags") or ()), network=seed.get("network") or "default")


class Clouds:
    """The servers of one spec; :meth:`start` returns once every endpoint listens with its seed in place."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        self._stack = contextlib.ExitStack()
        self.skipped: list[str] = []

    def start(self) -> Clouds:
        try:
            for endpoint in self.spec["endpoints"]:
                starter = {"aws": self._aws, "azure": self._azure, "gcp": self._gcp}[endpoint["kind"]]
                starter(endpoint)
        except BaseException:
            self._stack.close()
            raise
        return self

    def stop(self) -> None:
        self._stack.close()

    def _aws(self, endpoint: Mapping[str, Any]) -> None:
        from moto.server import ThreadedMotoServer  # noqa: PLC0415  (moto only in the lab process)

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        private = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        private.start()  # the seed goes in here; the backends are this process's, shared by both servers
        try:
            host, port = private.get_host_and_port()
            for seed in endpoint["points"]:
                self.skipped += seed_aws(f"http://{host}:{port}", seed)
        finally:
            private.stop()
        public = ThreadedMotoServer(ip_address=endpoint["address"], port=int(endpoint["port"]), verbose=False)
        public.start()
        self._stack.callback(public.stop)

    def _azure(self, endpoint: Mapping[str, Any]) -> None:
        from simulators.azure_arm import FakeArm, running_fake_arm  # noqa: PLC0415  (trustme only for Azure)

        arm = FakeArm(polls_in_progress=0, lro_retry_after="1")  # ARM answers Retry-After; 1 s keeps the lab brisk
        for seed in endpoint["points"]:
            seed_azure(arm, seed)
        ca = Path(self.spec["ca_file"])
        self._stack.enter_context(running_fake_arm(ca.parent, address=endpoint["address"], port=int(endpoint["port"]),
                                                   ca_name=ca.name, arm=arm))

    def _gcp(self, endpoint: Mapping[str, Any]) -> None:
        from simulators.gcp_compute import FakeCompute  # noqa: PLC0415

        fake = FakeCompute(address=endpoint["address"], port=int(endpoint["port"]))
        for seed in endpoint["points"]:
            seed_gcp(fake, seed)
        self._stack.enter_context(fake)


def serve(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    clouds = Clouds(spec).start()
    try:
        for line in clouds.skipped:
            print(f"not seeded: {line}", file=sys.stderr, flush=True)
        print(json.dumps({e["kind"]: f"{e['address']}:{e['port']}" for e in spec["endpoints"]}), flush=True)
        while not done.wait(0.5):
            pass
    finally:
        clouds.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.clouds", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help='JSON: {"ca_file": PATH, "endpoints": [{"kind": "aws|azure|gcp", "address", '
                                     '"port", "points": [seed, …]}]}')
    return serve(parser.parse_args(argv).spec)


if __name__ == "__main__":
    sys.exit(main())
