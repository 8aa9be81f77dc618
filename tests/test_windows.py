"""Change windows (pure): parsing, membership across midnight and DST, which points they restrict."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from orchestrator.config import load_config
from orchestrator.engine.windows import WindowError, WindowRule, check_point, parse_window
from orchestrator.model.errors import PolicyError

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, zone: ZoneInfo = BERLIN) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone)


def test_a_weekly_window_in_its_own_time_zone():
    window = parse_window("Sat 02:00–04:00 Europe/Berlin")
    assert window.contains(at("2026-11-21T02:00"))  # a Saturday
    assert window.contains(at("2026-11-21T03:59"))
    assert not window.contains(at("2026-11-21T04:00"))
    assert not window.contains(at("2026-11-22T03:00"))  # Sunday
    assert window.contains(datetime(2026, 11, 21, 1, 30, tzinfo=UTC))  # 02:30 in Berlin (CET, UTC+1)
    assert window.end_after(at("2026-11-21T03:00")) == at("2026-11-21T04:00")
    assert window.next_opening(at("2026-11-21T05:00")) == at("2026-11-28T02:00")


def test_overnight_day_ranges_and_daily():
    window = parse_window("Mon-Fri 22:00-06:00 UTC")
    utc = ZoneInfo("UTC")
    assert window.contains(at("2026-11-20T23:00", utc))  # Friday night
    assert window.contains(at("2026-11-21T05:59", utc))  # … into Saturday morning
    assert not window.contains(at("2026-11-21T23:00", utc))  # Saturday night is not a window
    assert window.end_after(at("2026-11-20T23:00", utc)) == at("2026-11-21T06:00", utc)
    wrap = parse_window("Sat-Mon 01:00-02:00 UTC")
    assert {d for d in range(7) if d in wrap.days} == {5, 6, 0}
    assert parse_window("daily 01:00-02:00 UTC").days == frozenset(range(7))


def test_daylight_saving_time_is_local_time():
    window = parse_window("Sun 02:30-03:30 Europe/Berlin")
    summer = at("2026-07-05T02:45")
    assert window.contains(summer) and summer.utcoffset().total_seconds() == 7200


@pytest.mark.parametrize("text, message", [
    ("Sat 02:00-04:00", "expected"),
    ("Sat 02:00-04:00 Mars/Olympus", "unknown time zone"),
    ("Sot 02:00-04:00 UTC", "unknown weekday"),
    ("Sat 25:00-04:00 UTC", "not a time"),
    ("Sat 02:00-02:00 UTC", "empty"),
])
def test_unreadable_windows_say_why(text, message):
    with pytest.raises(WindowError, match=message):
        parse_window(text)


def test_only_points_of_named_groups_are_restricted():
    rules = [WindowRule("prod", frozenset({"prod"}), (parse_window("Sat 02:00-04:00 Europe/Berlin"),))]
    inside, outside = at("2026-11-21T03:00"), at("2026-11-21T12:00")
    assert check_point("web", ["linux-nftables", "prod"], rules, inside).open_until == at("2026-11-21T04:00")
    closed = check_point("web", ["prod"], rules, outside)
    assert not closed.allowed and closed.next_opening == at("2026-11-28T02:00")
    assert check_point("dev-sw", ["dev"], rules, outside).allowed  # no window names it


def test_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "microseg.yaml"
    bad.write_text("change_windows:\n  - name: w\n    groups: [prod]\n    windows: ['Sat 02:00 UTC']\n")
    with pytest.raises(PolicyError) as caught:
        load_config(bad)
    assert str(bad) in caught.value.message and "expected" in str(caught.value)
    good = tmp_path / "ok.yaml"
    good.write_text("change_windows:\n  - name: w\n    groups: [prod]\n    windows: ['Sat 02:00-04:00 UTC']\n")
    assert load_config(good).window_rules()[0].groups == frozenset({"prod"})
