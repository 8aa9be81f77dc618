"""The mutating-call rate of an AWS account, shared by every driver instance of the process.

The engine runs one driver instance per point, many at once on threads.  EC2 throttles per account and region,
so the token bucket is one per :data:`AccountKey`, not one per instance.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.aws_sg.settings import AwsSettings

AccountKey = tuple[str, str, str]
"""(endpoint URL or ``aws``, region, ``account:<id>`` | ``profile:<name>`` | ``default-credentials``)."""


def account_key(settings: AwsSettings) -> AccountKey:
    """Whose bucket a point draws from: its ``account_id`` when set, else its profile, else the default chain.

    Two profiles of one account count as two principals unless both points set ``account_id`` (no I/O is
    done to find the account: STS would be one more endpoint and one more permission).
    """
    if settings.account_id:
        principal = f"account:{settings.account_id}"
    elif settings.profile:
        principal = f"profile:{settings.profile}"
    else:
        principal = "default-credentials"
    return (settings.endpoint_url or "aws", settings.region, principal)


class TokenBucket:
    """At most ``rate`` acquisitions per second on average, bursts up to ``burst``; blocks until a token is free."""

    def __init__(self, rate: float, burst: float | None = None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self.tokens = self.burst
        self.clock = clock
        self.sleep = sleep
        self.stamp = clock()
        self.lock = threading.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def acquire(self) -> float:
        """Take one token, sleeping (outside the lock) until it is due; returns the seconds waited.

        A token taken in advance leaves a debt the next caller waits for, so callers are spaced in the order
        they came, and nobody holds the lock while sleeping.
        """
        with self.lock:
            self._refill()
            self.tokens -= 1.0
            wait = 0.0 if self.tokens >= 0.0 else -self.tokens / self.rate
        if wait > 0.0:
            self.sleep(wait)
        return wait

    def drain(self) -> None:
        """No burst for now: the account was throttled, so every caller goes at the sustained rate."""
        with self.lock:
            self._refill()
            self.tokens = min(self.tokens, 0.0)

    def configure(self, rate: float, burst: float | None = None) -> None:
        """Change the rate and burst from now on (tokens already saved beyond the new burst are dropped)."""
        with self.lock:
            self._refill()
            self.rate = rate
            self.burst = max(1.0, burst if burst is not None else rate)
            self.tokens = min(self.tokens, self.burst)


@dataclass
class _Account:
    bucket: TokenBucket
    leases: dict[int, tuple[float, float]] = field(default_factory=dict)

    def lowest(self) -> tuple[float, float]:
        return min(r for r, _ in self.leases.values()), min(b for _, b in self.leases.values())


class RateLimits:
    """One token bucket per account key, shared by every live lease; its rate is the lowest any lease asks for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[AccountKey, _Account] = {}
        self._tokens = itertools.count(1)

    def lease(self, key: AccountKey, rate: float, burst: float | None = None) -> RateLease:
        asked = (rate, max(1.0, burst if burst is not None else rate))
        with self._lock:
            token = next(self._tokens)
            account = self._accounts.get(key)
            if account is None:
                account = self._accounts[key] = _Account(TokenBucket(*asked))
            account.leases[token] = asked
            account.bucket.configure(*account.lowest())
            return RateLease(self, key, token, account.bucket)

    def release(self, key: AccountKey, token: int) -> None:
        with self._lock:
            account = self._accounts.get(key)
            if account is None or account.leases.pop(token, None) is None:
                return
            if account.leases:
                account.bucket.configure(*account.lowest())
            else:
                del self._accounts[key]

    def limit(self, key: AccountKey) -> tuple[float, float] | None:
        """(rate, burst) the account's bucket runs at now; None when no lease is live."""
        with self._lock:
            account = self._accounts.get(key)
            return (account.bucket.rate, account.bucket.burst) if account else None


@dataclass
class RateLease:
    """One driver instance's handle on its account's bucket (release it on close)."""

    limits: RateLimits
    key: AccountKey
    token: int
    bucket: TokenBucket

    def acquire(self) -> float:
        return self.bucket.acquire()

    def throttled(self) -> None:
        self.bucket.drain()

    def release(self) -> None:
        self.limits.release(self.key, self.token)


RATE_LIMITS = RateLimits()
