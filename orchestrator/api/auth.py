"""Who is calling: bearer tokens checked against their salted digests in the store, roles, and write limits.

Roles: ``requester`` submits change requests (and ticket webhooks), ``approver``
approves them, ``operator`` may do both; every role may read.  A role given to
an identity in ``serve.roles`` of the configuration overrides the role its
token was issued with.  401 = no valid token; 403 = valid token, not allowed.
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
    """At most ``limit`` writes per ``window`` seconds per identity (sliding window, in this process)."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, identity: str) -> float | None:
        """None when the write may go ahead (and is counted), else seconds until it may."""
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(identity, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return hits[0] + self.window - now
            hits.append(now)
            return None


def service(request: Request) -> ChangeService:
    """The change service of the running application."""
    found: ChangeService = request.app.state.service
    return found


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def authenticate(request: Request, credentials: Credentials) -> Identity:
    """The caller of this request, or 401."""
    challenge = {"WWW-Authenticate": 'Bearer realm="microseg"'}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "unauthenticated", "a bearer token is required (Authorization: Bearer …)",
                       headers=challenge)
    svc = service(request)
    token = svc.store.verify_token(credentials.credentials.strip())
    if token is None:
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
                raise ApiError(429, "rate-limited", f"too many writes by {identity.name}; retry in {wait:.0f}s",
                               headers={"Retry-After": str(max(1, math.ceil(wait)))})
        return identity

    return check
