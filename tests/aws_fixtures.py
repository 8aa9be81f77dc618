"""AWS test counterparts: moto's EC2 server on 127.0.0.1, a counting/fault-injecting proxy in front of it, a lab VPC.

moto is a test double for EC2 (never used on the production path); the proxy only counts and fails requests,
it does not pretend to be EC2.  Test modules load the fixtures with ``pytest_plugins = ["tests.aws_fixtures"]``.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from drivers.aws_sg import AwsSecurityGroupDriver
from orchestrator.model.driver import Connection, PointContext
from orchestrator.model.rules import AddressSet, Direction

REGION = "eu-west-1"
POINT = "aws-sg-dev-web"
GROUP_NAME = "mseg-shop-dev-web"
BOTH = frozenset({Direction.INGRESS, Direction.EGRESS})
INGRESS_ONLY = frozenset({Direction.INGRESS})
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te", "upgrade"}
FAULT_XML = ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
             "<Message>{message}</Message></Error></Errors><RequestID>fault-{n}</RequestID></Response>")
FAULTS = {  # kind → (HTTP status, EC2 error code, message)
    "throttle": (503, "RequestLimitExceeded", "Request limit exceeded."),
    "unavailable": (503, "Unavailable", "The server is overloaded and can't handle the request."),
    "internal": (500, "InternalError", "An internal error has occurred."),
    "invalid": (400, "InvalidParameterValue", "Injected permanent failure."),
}


@dataclass
class Fault:
    """Fail call number ``at`` (counted over the proxy's life) of one Action."""

    action: str
    at: int
    kind: str
    delay: float = 1.0


@dataclass
class Ec2Proxy:
    """Loopback HTTP forwarder to moto that counts requests per EC2 Action and fails chosen ones."""

    upstream: str
    counts: Counter[str] = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)
    stamps: list[tuple[float, str]] = field(default_factory=list)
    """(time.monotonic() on arrival, Action) of every request."""
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ProxyServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def fail(self, action: str, *, nth: int = 1, kind: str = "throttle", delay: float = 1.0) -> None:
        """Fail the ``nth`` next call of ``action``: throttle, unavailable, internal, invalid or timeout."""
        assert kind in FAULTS or kind == "timeout", kind
        with self.lock:
            self.faults.append(Fault(action, self.counts[action] + nth, kind, delay))

    def mutating(self) -> int:
        """Requests of actions that change something (everything but Describe*)."""
        return sum(n for action, n in self.counts.items() if not action.startswith("Describe"))

    def describes(self) -> int:
        return sum(n for action, n in self.counts.items() if action.startswith("Describe"))

    def mutating_times(self) -> list[float]:
        """Arrival times of the mutating requests, in order."""
        with self.lock:
            return [t for t, action in self.stamps if not action.startswith("Describe")]

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.log.clear()
            self.stamps.clear()
            self.faults.clear()

    def take(self, action: str) -> Fault | None:
        with self.lock:
            self.counts[action] += 1
            self.log.append(action)
            self.stamps.append((time.monotonic(), action))
            for fault in self.faults:
                if fault.action == action and fault.at == self.counts[action]:
                    self.faults.remove(fault)
                    return fault
        return None

    def start(self) -> Ec2Proxy:
        self.server = ProxyServer(("127.0.0.1", 0), ProxyHandler)
        self.server.proxy = self
        threading.Thread(target=self.server.serve_forever, args=(0.05,), name="ec2-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class ProxyServer(ThreadingHTTPServer):
    """The proxy's HTTP server: daemon threads, no waiting for a hung (timeout-injected) request on close."""

    daemon_threads = True
    block_on_close = False
    proxy: Ec2Proxy


class ProxyHandler(BaseHTTPRequestHandler):
    """Counts the EC2 Action of each request, injects the planned fault or forwards it to moto."""

    server: ProxyServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        action = urllib.parse.parse_qs(body.decode()).get("Action", ["?"])[0]
        fault = self.server.proxy.take(action)
        if fault is not None and fault.kind == "timeout":
            time.sleep(fault.delay)  # the client gives up first; the request never reaches moto
            self.close_connection = True
            return
        if fault is not None:
            status, code, message = FAULTS[fault.kind]
            self._reply(status, {"Content-Type": "text/xml"},
                        FAULT_XML.format(code=code, message=message, n=fault.at).encode())
            return
        self._forward(body)

    def _forward(self, body: bytes) -> None:
        target = urllib.parse.urlsplit(self.server.proxy.upstream)
        conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request("POST", self.path, body, headers)
            answer = conn.getresponse()
            data = answer.read()
            kept = {k: v for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP}
            self._reply(answer.status, kept, data)
        finally:
            conn.close()

    def _reply(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server (all services) on a free loopback port for the whole session."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def boto_session() -> Any:
    """One boto3 Session for the drivers of all tests: loading EC2's service model once keeps the tests fast."""
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                 aws_session_token="testing", region_name=REGION)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Dummy credentials only; no shared config, no instance metadata, no proxies, no default endpoint but loopback."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION,
                       "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                       "AWS_EC2_METADATA_DISABLED": "true", "NO_PROXY": "127.0.0.1,localhost",
                       "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}.items():  # a client without an endpoint fails here
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "AWS_ENDPOINT_URL_EC2"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def ec2_proxy(moto_endpoint: str) -> Iterator[Ec2Proxy]:
    proxy = Ec2Proxy(moto_endpoint).start()
    yield proxy
    proxy.stop()


def ec2_client(endpoint: str, session: Any = None) -> Any:
    """An unmodified boto3 EC2 client on ``endpoint`` (loopback only)."""
    assert endpoint.startswith("http://127.0.0.1:"), endpoint
    return (session or boto3.session.Session()).client("ec2", region_name=REGION, endpoint_url=endpoint)


@dataclass
class Ec2Lab:
    """A VPC with IPv4+IPv6, one subnet and member/non-member ENIs, built through boto3 straight on moto."""

    ec2: Any
    proxy: Ec2Proxy
    session: Any = None
    vpc_id: str = ""
    subnet_id: str = ""
    v6_prefix: ipaddress.IPv6Network = field(default_factory=lambda: ipaddress.IPv6Network("::/64"))
    default_sg: str = ""
    enis: dict[str, str] = field(default_factory=dict)
    members: AddressSet = field(default_factory=AddressSet)
    drivers: list[AwsSecurityGroupDriver] = field(default_factory=list)

    def build(self, ipv6: bool = True) -> Ec2Lab:
        """The lab VPC; ``ipv6=False``: without an IPv6 block (web1 then has no IPv6 address either)."""
        vpc = self.ec2.create_vpc(CidrBlock="10.30.0.0/16", AmazonProvidedIpv6CidrBlock=ipv6)["Vpc"]
        self.vpc_id = vpc["VpcId"]
        if ipv6:
            block = vpc["Ipv6CidrBlockAssociationSet"][0]["Ipv6CidrBlock"]
            self.v6_prefix = next(ipaddress.IPv6Network(block).subnets(new_prefix=64))
        subnet = self.ec2.create_subnet(VpcId=self.vpc_id, CidrBlock="10.30.1.0/24",
                                        **({"Ipv6CidrBlock": str(self.v6_prefix)} if ipv6 else {}))["Subnet"]
        self.subnet_id = subnet["SubnetId"]
        groups = self.ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [self.vpc_id]}])
        self.default_sg = next(g["GroupId"] for g in groups["SecurityGroups"] if g["GroupName"] == "default")
        self.enis["web1"] = self.eni("10.30.1.11", self.v6(0x11) if ipv6 else None)
        self.enis["web2"] = self.eni("10.30.1.12")
        self.enis["other"] = self.eni("10.30.1.50")
        self.members = AddressSet.of(["10.30.1.11/32", "10.30.1.12/32", *([f"{self.v6(0x11)}/128"] if ipv6 else [])])
        return self

    def v6(self, host: int) -> str:
        return str(self.v6_prefix[host])

    def eni(self, v4: str, v6: str | None = None, groups: list[str] | None = None) -> str:
        params: dict[str, Any] = {"SubnetId": self.subnet_id, "PrivateIpAddress": v4,
                                  "Groups": groups or [self.default_sg]}
        if v6:
            params["Ipv6Addresses"] = [{"Ipv6Address": v6}]
        return str(self.ec2.create_network_interface(**params)["NetworkInterface"]["NetworkInterfaceId"])

    def groups_of(self, eni: str) -> list[str]:
        found = self.ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
        return sorted(g["GroupId"] for g in found["Groups"])

    def owned_group(self, name: str = GROUP_NAME) -> dict[str, Any] | None:
        filters = [{"Name": "vpc-id", "Values": [self.vpc_id]}, {"Name": "group-name", "Values": [name]}]
        found = self.ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
        return found[0] if found else None

    def rules(self, group_id: str) -> list[dict[str, Any]]:
        found = self.ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group_id]}])
        return list(found["SecurityGroupRules"])

    def context(self, members: AddressSet | None = None, timeout: float = 5.0, point: str = POINT,
                directions: frozenset[Direction] = BOTH, **settings: Any) -> PointContext:
        """``directions``: the point's inventory ``directions`` (both unless told)."""
        base = {"region": REGION, "vpc_id": self.vpc_id, "security_group_name": GROUP_NAME,
                "endpoint_url": self.proxy.url, "retry_base_seconds": 0.01, "max_mutating_calls_per_second": 50}
        return PointContext(point, "aws_sg", Connection(hostname=point, platform="aws"), {**base, **settings},
                            timeout, self.members if members is None else members, directions)

    def driver(self, members: AddressSet | None = None, timeout: float = 5.0, point: str = POINT,
               directions: frozenset[Direction] = BOTH, **settings: Any) -> AwsSecurityGroupDriver:
        driver = AwsSecurityGroupDriver(self.context(members, timeout, point, directions, **settings),
                                        session=self.session)
        self.drivers.append(driver)
        return driver

    def close(self) -> None:
        for driver in self.drivers:
            driver.close()


@pytest.fixture
def ec2_lab(aws_env: None, moto_endpoint: str, ec2_proxy: Ec2Proxy, boto_session: Any) -> Iterator[Ec2Lab]:
    """A fresh VPC per test (moto keeps state for the session; VPCs keep tests apart); drivers closed after."""
    lab = Ec2Lab(ec2_client(moto_endpoint, boto_session), ec2_proxy, boto_session).build()
    ec2_proxy.reset()
    yield lab
    lab.close()


@pytest.fixture
def ec2_lab_v4(aws_env: None, moto_endpoint: str, ec2_proxy: Ec2Proxy, boto_session: Any) -> Iterator[Ec2Lab]:
    """As ``ec2_lab``, in a VPC without an IPv6 block (members IPv4 only)."""
    lab = Ec2Lab(ec2_client(moto_endpoint, boto_session), ec2_proxy, boto_session).build(ipv6=False)
    ec2_proxy.reset()
    yield lab
    lab.close()
