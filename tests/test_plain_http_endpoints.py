"""Credentials never travel over plain HTTP to another machine: a cloud driver refuses an ``http://`` endpoint
that is not loopback, with a permanent error naming the point and the endpoint, before any request is sent.
Loopback fakes over http (the tests' own) and https keep working."""

from __future__ import annotations

from pathlib import Path

import boto3  # type: ignore[import-untyped]
import pytest
from google.oauth2.credentials import Credentials as OAuthCredentials

from drivers.aws_sg import AwsSecurityGroupDriver
from drivers.aws_sg.settings import AwsSettings
from drivers.aws_sg.settings import parse_settings as aws_settings
from drivers.aws_sg.transport import Ec2Api
from drivers.azure_nsg.layout import parse_settings as azure_settings
from drivers.gcp_firewall import GcpFirewallDriver
from drivers.gcp_firewall.settings import parse_settings as gcp_settings
from orchestrator.model.driver import Connection, PointContext
from orchestrator.model.errors import PermanentDriverError
from orchestrator.model.rules import AddressSet

POINT = "cloud-point"
REMOTE = "http://198.51.100.7:8080"  # TEST-NET-2: never connected to (the tests fail on any connect)
LOOPBACK = ["http://127.0.0.1:5000", "http://127.9.9.9", "http://[::1]:5000", "http://localhost:5000",
            "http://LOCALHOST:5000/"]
NOT_LOOPBACK = [REMOTE, "http://user:secret@198.51.100.7:8080/path?key=x", "HTTP://198.51.100.7",
                "http://127.0.0.1@198.51.100.7", "http://198.51.100.7\\@127.0.0.1/", "http://127.0.0.1.nip.io",
                "http://[::ffff:198.51.100.7]", "http://2130706433", "http://[::1"]
AWS = {"region": "eu-west-1", "vpc_id": "vpc-0a1b2c3d4e5f60718"}
GCP = {"project": "shop-dev-000000", "network": "shop-dev", "target_tags": ["db"]}
AZURE = {"subscription_id": "sub", "resource_group": "rg", "nsg_name": "nsg"}


pytestmark = pytest.mark.usefixtures("no_connections")  # every test here: a connect attempt fails it


def refused(error: PermanentDriverError, origin: str = REMOTE) -> None:
    assert error.point == POINT and "plain HTTP to a host that is not loopback" in str(error), error
    assert origin in str(error) and "secret" not in str(error), error


# ---------------------------------------------------------------------------------------------------- AWS


@pytest.mark.parametrize("endpoint", NOT_LOOPBACK)
def test_aws_refuses_a_plain_http_endpoint_that_is_not_loopback(endpoint: str) -> None:
    if not endpoint.startswith("http://"):
        with pytest.raises(PermanentDriverError, match="endpoint_url"):
            aws_settings(POINT, {**AWS, "endpoint_url": endpoint})
        return
    with pytest.raises(PermanentDriverError) as info:
        aws_settings(POINT, {**AWS, "endpoint_url": endpoint})
    refused(info.value, "http://")


def test_aws_driver_refuses_before_any_request() -> None:
    context = PointContext(POINT, "aws_sg", Connection("aws"), {**AWS, "endpoint_url": REMOTE},
                           members=AddressSet.of(["10.0.0.1"]))
    with pytest.raises(PermanentDriverError) as info:
        AwsSecurityGroupDriver(context)
    refused(info.value)


def test_aws_transport_refuses_settings_built_without_validation() -> None:
    settings = AwsSettings("eu-west-1", "vpc-0a1b2c3d4e5f60718", "mseg-x", {"k": "v"}, endpoint_url=REMOTE)
    session = boto3.session.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret",
                                    aws_session_token="token", region_name="eu-west-1")
    api = Ec2Api(POINT, settings, 1.0, session=session)
    try:
        with pytest.raises(PermanentDriverError) as info:
            api.read("describe_security_groups", "")
        refused(info.value)
    finally:
        api.close()


@pytest.mark.parametrize("endpoint", [*LOOPBACK, "https://ec2.eu-west-1.amazonaws.com", "https://198.51.100.7",
                                      None])
def test_aws_accepts_https_and_loopback_http(endpoint: str | None) -> None:
    settings = {**AWS} if endpoint is None else {**AWS, "endpoint_url": endpoint}
    assert aws_settings(POINT, settings).endpoint_url == endpoint


# ---------------------------------------------------------------------------------------------------- GCP


@pytest.mark.parametrize("endpoint", NOT_LOOPBACK)
def test_gcp_refuses_to_send_its_token_over_plain_http(endpoint: str) -> None:
    with pytest.raises(PermanentDriverError) as info:
        gcp_settings(POINT, {**GCP, "api_endpoint": endpoint})
    refused(info.value, "api_endpoint http://")


def test_gcp_driver_refuses_before_any_request() -> None:
    context = PointContext(POINT, "gcp_firewall", Connection("gcp"), {**GCP, "api_endpoint": REMOTE})
    with pytest.raises(PermanentDriverError) as info:
        GcpFirewallDriver(context)
    refused(info.value)


def test_gcp_explicit_credentials_are_refused_at_the_first_call_before_any_request() -> None:
    """``credentials: anonymous`` sends no token, so settings accept the endpoint; a token passed to the driver
    would be sent, so the first call refuses it before connecting."""
    settings = {**GCP, "api_endpoint": REMOTE, "credentials": "anonymous"}
    assert gcp_settings(POINT, settings).endpoint == REMOTE
    driver = GcpFirewallDriver(PointContext(POINT, "gcp_firewall", Connection("gcp"), settings),
                               credentials=OAuthCredentials(token="ya29.secret"))  # type: ignore[no-untyped-call]
    try:
        with pytest.raises(PermanentDriverError) as info:
            driver.fetch()
        refused(info.value)
        assert "ya29" not in str(info.value)
    finally:
        driver.close()


@pytest.mark.parametrize("endpoint", [*LOOPBACK, "https://compute.googleapis.com", "https://198.51.100.7:8443",
                                      "compute.googleapis.com"])
def test_gcp_accepts_https_and_loopback_http(endpoint: str) -> None:
    assert gcp_settings(POINT, {**GCP, "api_endpoint": endpoint}).endpoint == endpoint.rstrip("/")


# ---------------------------------------------------------------------------------------------------- Azure


@pytest.mark.parametrize("base_url", [REMOTE, "http://127.0.0.1:8443", "management.azure.com"])
def test_azure_refuses_a_base_url_that_is_not_https(base_url: str) -> None:
    """azure-core itself never sends a bearer token over http (it raises ServiceRequestError, which would be
    retried as transient): the settings say so at once, permanently."""
    with pytest.raises(PermanentDriverError, match="'base_url' must be an https:// URL") as info:
        azure_settings({**AZURE, "base_url": base_url}, POINT)
    assert info.value.point == POINT


def test_azure_accepts_https() -> None:
    assert azure_settings({**AZURE, "base_url": "https://127.0.0.1:8443/"}, POINT).base_url == "https://127.0.0.1:8443"
    assert azure_settings(AZURE, POINT).base_url == "https://management.azure.com"


# ------------------------------------------------------------------------------------------- workload sources


@pytest.mark.parametrize("endpoint", NOT_LOOPBACK[:4])
def test_the_workload_sources_refuse_plain_http_off_loopback_before_any_request(endpoint: str) -> None:
    from drivers.aws_sg.workloads import Ec2WorkloadSource
    from drivers.gcp_firewall.workloads import GcpWorkloadSource
    from orchestrator.model.errors import InventoryError

    with pytest.raises(InventoryError, match=r"plain HTTP to a host that is not loopback|must be an http\(s\) URL"):
        Ec2WorkloadSource({"region": "eu-west-1", "endpoint_url": endpoint}, Path("."))
    with pytest.raises(InventoryError, match="plain HTTP to a host that is not loopback"):
        GcpWorkloadSource({"project": "p", "api_endpoint": endpoint}, Path("."))
    GcpWorkloadSource({"project": "p", "api_endpoint": endpoint, "credentials": "anonymous"}, Path("."))
    Ec2WorkloadSource({"region": "eu-west-1", "endpoint_url": LOOPBACK[0]}, Path("."))


# ------------------------------------------------------------------------------------ credentials: anonymous

ANONYMOUS_LOOPBACK = ["http://127.0.0.1:4566", "https://127.0.0.1:4567", "https://[::1]:4567",
                      "https://localhost:4567"]
ANONYMOUS_REMOTE = ["https://ec2.eu-west-1.amazonaws.com", "https://management.azure.com",
                    "https://127.0.0.1@198.51.100.7", "https://127.0.0.1.nip.io", "https://[::ffff:127.0.0.1]"]


@pytest.mark.parametrize("url", ANONYMOUS_LOOPBACK)
def test_anonymous_credentials_are_accepted_for_loopback_endpoints(url: str) -> None:
    assert aws_settings(POINT, {**AWS, "endpoint_url": url, "credentials": "anonymous"}).anonymous
    if url.startswith("https://"):
        assert azure_settings({**AZURE, "base_url": url, "credentials": "anonymous"}, POINT).anonymous
    assert not aws_settings(POINT, {**AWS, "endpoint_url": url}).anonymous  # the default is the SDK's chain


@pytest.mark.parametrize("url", ANONYMOUS_REMOTE)
def test_anonymous_credentials_are_refused_for_any_other_endpoint(url: str) -> None:
    with pytest.raises(PermanentDriverError, match="for a test server on loopback only") as caught:
        aws_settings(POINT, {**AWS, "endpoint_url": url, "credentials": "anonymous"})
    assert caught.value.point == POINT and "'endpoint_url'" in str(caught.value)
    with pytest.raises(PermanentDriverError, match="for a test server on loopback only") as caught:
        azure_settings({**AZURE, "base_url": url, "credentials": "anonymous"}, POINT)
    assert caught.value.point == POINT and "'base_url'" in str(caught.value)


def test_anonymous_credentials_need_an_endpoint_exclude_a_profile_and_other_words_are_refused() -> None:
    with pytest.raises(PermanentDriverError, match="'endpoint_url' None is not one"):
        aws_settings(POINT, {**AWS, "credentials": "anonymous"})  # the real EC2 endpoint
    with pytest.raises(PermanentDriverError, match="exclude each other"):
        aws_settings(POINT, {**AWS, "endpoint_url": "http://127.0.0.1:4566", "credentials": "anonymous",
                             "profile": "prod"})
    with pytest.raises(PermanentDriverError, match="not 'none'"):
        aws_settings(POINT, {**AWS, "credentials": "none"})
    with pytest.raises(PermanentDriverError, match=r"'anonymous' \(loopback test servers only\), not 'token'"):
        azure_settings({**AZURE, "credentials": "token"}, POINT)
    with pytest.raises(PermanentDriverError, match="is not one"):
        azure_settings({**AZURE, "credentials": "anonymous"}, POINT)  # the public ARM endpoint
