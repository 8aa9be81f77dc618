"""The EC2 API through boto3: paginated reads, rate-limited mutating calls, and the one place SDK errors are mapped."""

from __future__ import annotations

import random
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import boto3  # type: ignore[import-untyped]
import botocore.exceptions as boto_errors  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.parsers import ResponseParserError  # type: ignore[import-untyped]

from drivers.aws_sg.permissions import DRIVER
from drivers.aws_sg.ratelimit import RATE_LIMITS, RateLease, account_key
from drivers.aws_sg.settings import AwsSettings, endpoint_refusal
from drivers.aws_sg.shared import Part
from drivers.endpoints import refused_at
from orchestrator.model import DriverError, PermanentDriverError, TransientDriverError

THROTTLE_CODES = frozenset({
    "RequestLimitExceeded", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequestsException", "EC2ThrottledException", "SlowDown",
})
"""Codes EC2 answers before doing anything: a throttled call was not executed and is safe to send again."""
UNAVAILABLE_CODES = frozenset({"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable",
                               "RequestTimeout", "RequestTimeoutException"})
AUTH_CODES = frozenset({"AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch",
                        "ExpiredToken", "RequestExpired", "OptInRequired", "Blocked"})
MAX_DELAY = 30.0
SDK_ERRORS = (boto_errors.BotoCoreError, boto_errors.ClientError, ResponseParserError)
"""What a boto3 call raises: an unparsable answer (a proxy's HTML 502, a cut-off body) is not a ClientError."""


def backoff(attempt: int, base: float, retry_after: float | None = None) -> float:
    """Exponential backoff with ±50 % jitter (never below a server's Retry-After)."""
    wait = float(min(MAX_DELAY, base * (2 ** attempt)) * random.uniform(0.5, 1.5))
    return max(wait, retry_after or 0.0)


def _retry_after(exc: Any) -> float | None:
    headers = (getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPHeaders", {})
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def classify(exc: Exception) -> tuple[str, str]:
    """(``throttled`` | ``transient`` | ``permanent``, the reason as text) of an SDK exception."""
    if isinstance(exc, boto_errors.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "?"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        text = f"{code}: {error.get('Message', '')}".strip()
        if code in THROTTLE_CODES or status == 429:
            return "throttled", text
        if code in UNAVAILABLE_CODES or status >= 500:
            return "transient", f"{text} (HTTP {status})"
        if code in AUTH_CODES:
            return "permanent", f"{text} (check the credentials and the IAM permissions)"
        return "permanent", text
    if isinstance(exc, boto_errors.ConnectionError | boto_errors.HTTPClientError | ResponseParserError):
        return "transient", f"{type(exc).__name__}: {str(exc)[:300]}"
    if isinstance(exc, boto_errors.NoCredentialsError | boto_errors.PartialCredentialsError):
        return "permanent", f"no usable AWS credentials ({exc}): set a profile, the environment or a role"
    return "permanent", f"{type(exc).__name__}: {exc}"


class Ec2Api:
    """One point's EC2 client; every method raises only DriverError subclasses.

    Mutating calls draw from the bucket of the point's account (shared by every instance of the process, see
    :mod:`drivers.aws_sg.shared`); ``on_change`` hears of each part of the VPC a call changes, before and after.
    """

    def __init__(self, point: str, settings: AwsSettings, timeout: float, *, session: Any = None,
                 sleep: Callable[[float], None] = time.sleep,
                 on_change: Callable[[Part], None] | None = None) -> None:
        self.point = point
        self.session = session
        self.settings = settings
        self.timeout = timeout
        self.sleep = sleep
        self.on_change = on_change
        self._client: Any = None
        self._lease: RateLease | None = None
        self._release: weakref.finalize[Any, Any] | None = None
        self.limiter()  # registered now (no I/O): the account's rate is the lowest of its live instances

    def limiter(self) -> RateLease:
        """This instance's lease on its account's bucket (taken again after close)."""
        if self._lease is None:
            self._lease = RATE_LIMITS.lease(account_key(self.settings), self.settings.max_mutating_calls_per_second,
                                            self.settings.mutating_call_burst)
            self._release = weakref.finalize(self, self._lease.release)
        return self._lease

    @property
    def client(self) -> Any:
        if self._client is None:
            if (refusal := endpoint_refusal(self.settings.endpoint_url)) is not None:  # before any request
                raise PermanentDriverError(refusal, point=self.point, driver=DRIVER)
            config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=self.timeout,
                            read_timeout=self.timeout, user_agent_extra="microseg")
            try:
                session = self.session or (
                    boto3.session.Session(aws_access_key_id="anonymous", aws_secret_access_key="anonymous")
                    if self.settings.anonymous else boto3.session.Session(profile_name=self.settings.profile))
                self._client = session.client("ec2", region_name=self.settings.region,
                                              endpoint_url=self.settings.endpoint_url, config=config)
            except boto_errors.BotoCoreError as exc:
                raise self.error(exc, "create the EC2 client", "") from exc
        return self._client

    def error(self, exc: Exception, call: str, subject: str, attempt: int = 0) -> DriverError:
        """The project's error for one failed call (subject: the security group or resource it was about)."""
        kind, reason = classify(exc)
        if (refused := refused_at(exc, self.settings.endpoint_url or "")) is not None:
            kind, reason = "permanent", refused  # nothing listens: retrying won't change that
        about = f" on {subject}" if subject else ""
        message = f"{call}{about} failed: {reason}"
        if kind == "permanent":
            return PermanentDriverError(message, point=self.point, driver=DRIVER)
        delay = backoff(attempt, self.settings.retry_base_seconds, _retry_after(exc))
        return TransientDriverError(message, point=self.point, driver=DRIVER, delay=delay)

    def read(self, call: str, subject: str, **params: Any) -> dict[str, Any]:
        """One read-only call (retrying is the caller's business: TransientDriverError carries the delay)."""
        try:
            response: dict[str, Any] = getattr(self.client, call)(**params)
        except SDK_ERRORS as exc:
            raise self.error(exc, call, subject) from exc
        return response

    def pages(self, call: str, key: str, subject: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paginated describe call: one request per page, following NextToken."""
        token: str | None = None
        while True:
            extra = {"NextToken": token} if token else {}
            response = self.read(call, subject, MaxResults=self.settings.page_size, **params, **extra)
            yield from response.get(key, [])
            token = response.get("NextToken")
            if not token:
                return

    def mutate(self, call: str, subject: str, params: dict[str, Any], parts: tuple[Part, ...] = ()) -> dict[str, Any]:
        """One mutating call under the account's rate; the VPC ``parts`` it changes are announced around it."""
        self._changed(parts)
        try:
            return self._mutate(call, subject, params)
        finally:
            self._changed(parts)

    def _changed(self, parts: tuple[Part, ...]) -> None:
        for part in parts if self.on_change else ():
            assert self.on_change is not None
            self.on_change(part)

    def _mutate(self, call: str, subject: str, params: dict[str, Any]) -> dict[str, Any]:
        """A throttled call (never executed by EC2) is sent again after a backoff, under the rate limit each time."""
        limiter = self.limiter()
        for attempt in range(self.settings.throttle_retries + 1):
            limiter.acquire()
            try:
                response: dict[str, Any] = getattr(self.client, call)(**params)
            except SDK_ERRORS as exc:
                error = self.error(exc, call, subject, attempt)
                throttled = classify(exc)[0] == "throttled"
                if throttled:
                    limiter.throttled()  # the whole account slows down, not only this point
                if throttled and isinstance(error, TransientDriverError) and attempt < self.settings.throttle_retries:
                    self.sleep(error.delay)
                    continue
                raise error from exc
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self._release is not None:
            self._release()
            self._release = self._lease = None
        if self._client is not None:
            self._client.close()
            self._client = None
