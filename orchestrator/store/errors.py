"""Errors of the state store: a store that cannot be used, and a point lock that cannot be taken."""

from __future__ import annotations

from datetime import UTC, datetime

from orchestrator.model.errors import MicrosegError, PlanError


class StoreError(MicrosegError):
    """The state store cannot be opened, read or written, or the record asked for does not exist."""


class LockTimeout(PlanError):
    """Another run holds the lock of an enforcement point and did not release it in time."""

    def __init__(self, point: str, *, owner: str, since: datetime, expires_at: datetime, timeout: float) -> None:
        waited_text = "did not wait" if timeout <= 0 else f"waited {timeout:g}s"
        super().__init__(
            f"enforcement point {point!r} is locked by {owner} since {_iso(since)} "
            f"(lease expires {_iso(expires_at)}); {waited_text}. "
            "Retry when that run has finished, or let the lease expire if it crashed."
        )
        self.point = point
        self.owner = owner
        self.since = since
        self.expires_at = expires_at
        self.timeout = timeout


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
