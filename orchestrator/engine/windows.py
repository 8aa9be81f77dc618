"""Change windows: when a group of points may be changed, e.g. ``Sat 02:00-04:00 Europe/Berlin``.

A window is a set of weekdays, a start and an end time (an end before the
start runs past midnight) in an IANA time zone.  Points whose Nornir groups
have windows may only be changed inside one of them; a point no window
names is not restricted.  Pure: the caller passes the time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPEC = re.compile(
    r"^\s*(?P<days>[A-Za-z]{3}(?:\s*-\s*[A-Za-z]{3})?(?:\s*,\s*[A-Za-z]{3}(?:\s*-\s*[A-Za-z]{3})?)*|daily)\s+"
    r"(?P<start>\d{1,2}:\d{2})\s*[-–]\s*(?P<end>\d{1,2}:\d{2})\s+(?P<tz>\S+)\s*$"
)


class WindowError(ValueError):
    """A change window that cannot be read."""


@dataclass(frozen=True, slots=True)
class Window:
    """Weekdays (0 = Monday) on which the window opens, its start/end time and its zone."""

    text: str
    days: frozenset[int]
    start: time
    end: time
    zone: ZoneInfo

    @property
    def overnight(self) -> bool:
        return self.end <= self.start

    def _opening(self, when: datetime) -> datetime | None:
        """The start of the occurrence of this window that contains ``when``, if any."""
        local = when.astimezone(self.zone)
        for back in (0, 1):
            day = local.date() - timedelta(days=back)
            if day.weekday() not in self.days:
                continue
            opens = datetime.combine(day, self.start, self.zone)
            closes = datetime.combine(day + timedelta(days=1 if self.overnight else 0), self.end, self.zone)
            if opens <= local < closes:
                return opens
        return None

    def contains(self, when: datetime) -> bool:
        return self._opening(when) is not None

    def end_after(self, when: datetime) -> datetime | None:
        """When the occurrence containing ``when`` closes (None when ``when`` is outside the window)."""
        opens = self._opening(when)
        if opens is None:
            return None
        day = opens.date() + timedelta(days=1 if self.overnight else 0)
        return datetime.combine(day, self.end, self.zone)

    def next_opening(self, when: datetime) -> datetime:
        local = when.astimezone(self.zone)
        for ahead in range(8):
            day = local.date() + timedelta(days=ahead)
            opens = datetime.combine(day, self.start, self.zone)
            if day.weekday() in self.days and opens > local:
                return opens
        raise AssertionError("a window opens at least once a week")  # pragma: no cover


def _days(text: str) -> frozenset[int]:
    if text.lower() == "daily":
        return frozenset(range(7))
    out: set[int] = set()
    for part in text.split(","):
        first, _, last = (p.strip().lower() for p in part.partition("-"))
        if first not in DAYS or (last and last not in DAYS):
            raise WindowError(f"unknown weekday in {part.strip()!r} (use Mon … Sun)")
        a, b = DAYS.index(first), DAYS.index(last or first)
        out.update(DAYS.index(d) % 7 for d in (DAYS * 2)[a:a + ((b - a) % 7) + 1])
    return frozenset(out)


def _time(text: str) -> time:
    hours, minutes = (int(p) for p in text.split(":"))
    if hours == 24 and minutes == 0:
        return time(0, 0)
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise WindowError(f"{text!r} is not a time of day")
    return time(hours, minutes)


def parse_window(text: str) -> Window:
    """``Sat 02:00-04:00 Europe/Berlin``, ``Mon-Fri 22:00-06:00 UTC``, ``daily 01:00-02:00 UTC``."""
    match = _SPEC.match(text)
    if not match:
        raise WindowError(f"{text!r}: expected e.g. 'Sat 02:00-04:00 Europe/Berlin' (days, start-end, time zone)")
    try:
        zone = ZoneInfo(match["tz"])
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise WindowError(f"{text!r}: unknown time zone {match['tz']!r}") from exc
    start, end = _time(match["start"]), _time(match["end"])
    if start == end:
        raise WindowError(f"{text!r}: the window is empty (start = end)")
    return Window(text, _days(match["days"]), start, end, zone)


@dataclass(frozen=True, slots=True)
class WindowRule:
    """Windows that apply to the points of some Nornir groups."""

    name: str
    groups: frozenset[str]
    windows: tuple[Window, ...]


@dataclass(frozen=True, slots=True)
class WindowCheck:
    """Whether ``point`` may be changed at a time, and until when."""

    point: str
    restricted: bool
    open_until: datetime | None
    next_opening: datetime | None

    @property
    def allowed(self) -> bool:
        return not self.restricted or self.open_until is not None


def check_point(point: str, groups: Iterable[str], rules: Sequence[WindowRule], when: datetime) -> WindowCheck:
    """The windows of every rule naming one of the point's groups; open when any of them contains ``when``."""
    mine = set(groups)
    windows = [w for rule in rules if rule.groups & mine for w in rule.windows]
    if not windows:
        return WindowCheck(point, False, None, None)
    ends = [end for w in windows if (end := w.end_after(when)) is not None]
    if ends:
        return WindowCheck(point, True, max(ends), None)
    return WindowCheck(point, True, None, min(w.next_opening(when) for w in windows))
