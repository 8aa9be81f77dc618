"""Cron expressions for the scheduler (croniter behind a typed face): validity and the latest slot."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter


def is_valid(expression: str) -> bool:
    """Whether ``expression`` is a cron expression (5 fields, or 6 with seconds last)."""
    return bool(croniter.is_valid(expression))


def latest_slot(expression: str, now: datetime, zone: str = "UTC") -> datetime:
    """The latest time at or before ``now`` the expression fires (evaluated in ``zone``)."""
    local = now.astimezone(ZoneInfo(zone)) + timedelta(microseconds=1)
    slot: datetime = croniter(expression, local).get_prev(datetime)
    return slot


def next_slot(expression: str, now: datetime, zone: str = "UTC") -> datetime:
    """The first time after ``now`` the expression fires (evaluated in ``zone``)."""
    found: datetime = croniter(expression, now.astimezone(ZoneInfo(zone))).get_next(datetime)
    return found
