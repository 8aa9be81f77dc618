"""Who is calling: bearer tokens checked against their salted digests in the store, roles, and write limits.

Roles: ``requester`` submits change requests (and ticket webhooks), ``approver``
approves them, ``operator`` may do both; every role may read.  A role given to
an identity in ``serve.roles`` of the configuration overrides the role its
token was issued with.  401 = no valid token; 403 = valid token, not allowed; 429 = too many writes by one
identity, or too many failed authentications from one client address (``serve.auth_failures``).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from orchestrator.api.errors import ApiError
from orchestrator.api.workflow import ChangeService

RIGHTS: dict[str, frozenset[str]] = {
    "requester": frozenset({"read", "request"}),
    "approver": frozenset({"read", "approve"}),
    "operator": frozenset({"read", "request", "approve"}),
}
ROLES = tuple(RIGHTS)
bearer = HTTPBearer(auto_error=False, description="`microseg serve token add NAME --role ROLE` prints one")


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller."""

    name: str
    role: str
    token_id: str


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds per key (sliding window, in this process)."""

    MAX_KEYS = 10_000  # keys are identities or client addresses: forget idle ones rather than grow without bound

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        if len(self._hits) > self.MAX_KEYS:
            self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > now - self.window}
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return hits

    def wait(self, key: str) -> float | None:
        """Seconds until ``key`` may have another event, or None when it may now (nothing is counted)."""
        now = self.clock()
        with self._lock:
            hits = self._recent(key, now)
            return hits[0] + self.window - now if len(hits) >= self.limit else None

    def hit(self, key: str) -> None:
        """Count one event of ``key``."""
        now = self.clock()
        with self._lock:
            self._recent(key, now).append(now)

    def check(self, key: str) -> float | None:
        """None when the event may go ahead (and is counted), else seconds until it may."""
        now = self.clock()
        with self._lock:
            hits = self._recent(key, now)
            if len(hits) >= self.limit:
                return hits[0] + self.window - now
            hits.append(now)
            return None


def _too_many(wait: float, message: str) -> ApiError:
    return ApiError(429, "rate-limited", f"{message}; retry in {wait:.0f}s",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))})


def service(request: Request) -> ChangeService:
    """The change service of the running application."""
    found: ChangeService = request.app.state.service
    return found


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def authenticate(request: Request, credentials: Credentials) -> Identity:
    """The caller of this request, or 401."""
    failures: RateLimiter = request.app.state.auth_failures
    client = request.client.host if request.client else "unknown"
    wait = failures.wait(client)
    if wait is not None:  # checked before the token, so guessing costs the guesser, not the store
        raise _too_many(wait, f"too many failed authentications from {client}")
    challenge = {"WWW-Authenticate": 'Bearer realm="microseg"'}
    if credentials is None or credentials.scheme.lower() != "bearer":
        failures.hit(client)
        raise ApiError(401, "unauthenticated", "a bearer token is required (Authorization: Bearer …)",
                       headers=challenge)
    svc = service(request)
    token = svc.store.verify_token(credentials.credentials.strip())
    if token is None:
        failures.hit(client)
        raise ApiError(401, "unauthenticated", "unknown or revoked token",
                       headers={"WWW-Authenticate": 'Bearer realm="microseg", error="invalid_token"'})
    role = svc.ctx.config.serve.roles.get(token.name, token.role)
    return Identity(token.name, role, token.id)


def allowed(right: str) -> Callable[..., Identity]:
    """A dependency: the caller, when its role has ``right`` (403 otherwise); writes are rate limited."""

    def check(request: Request, identity: Annotated[Identity, Depends(authenticate)]) -> Identity:
        if right not in RIGHTS.get(identity.role, frozenset()):
            service(request).store.audit("api.forbidden", actor=identity.name,
                                         detail={"role": identity.role, "needs": right, "path": request.url.path})
            raise ApiError(403, "forbidden", f"{identity.name} ({identity.role}) may not {right}: it needs one of "
                           f"the roles {', '.join(r for r, rights in RIGHTS.items() if right in rights)}")
        if request.method != "GET":
            wait = request.app.state.limiter.check(identity.name)
            if wait is not None:
                raise _too_many(wait, f"too many writes by {identity.name}")
        return identity

    return check
