"""The setpoint rules without Home Assistant: lookup, target match, merge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from custom_components.frequenz_dispatch.setpoints import (
    Contribution,
    Kind,
    Merge,
    merge,
    number_at,
    parse_target,
    select,
    target_matches,
    unit_for,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _run(
    dispatch_id: int,
    minute: int,
    payload: dict[str, Any],
    *,
    dry_run: bool = False,
    target: list[int] | list[str] | None = None,
) -> Contribution:
    return Contribution(
        dispatch_id,
        T0 + timedelta(minutes=minute),
        dry_run,
        [1, 2] if target is None else target,
        payload,
    )


def test_dotted_path_reaches_nested_values() -> None:
    payload = {"limits": {"max_current_a": 16, "phases": [10, 12.5]}, "w": 3000}
    assert number_at(payload, "w") == 3000.0
    assert number_at(payload, "limits.max_current_a") == 16.0
    assert number_at(payload, "limits.phases.1") == 12.5


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({}, "payload has no 'limits.max_current_a'"),
        ({"limits": 5}, "payload has no 'limits.max_current_a'"),
        ({"limits": {"max_current_a": "16"}}, "is not a number: '16'"),
        ({"limits": {"max_current_a": True}}, "is not a number: True"),
        ({"limits": {"max_current_a": None}}, "is not a number: None"),
        ({"limits": {"max_current_a": float("nan")}}, "not a finite number"),
    ],
)
def test_missing_or_non_numeric_values_say_why(
    payload: dict[str, Any], problem: str
) -> None:
    found = number_at(payload, "limits.max_current_a")
    assert isinstance(found, str)
    assert problem in found


def test_merge_rules() -> None:
    chosen = select(
        [_run(3, 5, {"w": 100}), _run(1, 0, {"w": 300}), _run(2, 2, {"w": -50})],
        target=None,
        dry_runs_count=True,
    )
    assert [item.dispatch_id for item in chosen] == [1, 2, 3]
    last = merge(chosen, "w", Merge.LAST_STARTED)
    assert (last.value, last.dispatch_ids) == (100.0, [3])
    assert merge(chosen, "w", Merge.LARGEST).value == 300.0
    assert merge(chosen, "w", Merge.SMALLEST).value == -50.0
    total = merge(chosen, "w", Merge.SUM)
    assert (total.value, total.dispatch_ids) == (350.0, [1, 2, 3])


def test_same_start_the_higher_id_counts_as_last() -> None:
    chosen = select(
        [_run(7, 0, {"w": 1}), _run(4, 0, {"w": 2})], target=None, dry_runs_count=True
    )
    assert merge(chosen, "w", Merge.LAST_STARTED).value == 1.0


def test_nothing_running_is_unknown() -> None:
    result = merge([], "w", Merge.SUM)
    assert (result.value, result.dispatch_ids, result.dry_run) == (None, [], False)


def test_a_bad_value_makes_the_merge_unknown_but_not_an_older_one() -> None:
    chosen = select(
        [_run(1, 0, {"x": 1}), _run(2, 1, {"w": 5})], target=None, dry_runs_count=True
    )
    assert merge(chosen, "w", Merge.LAST_STARTED).value == 5.0
    summed = merge(chosen, "w", Merge.SUM)
    assert summed.value is None
    assert summed.problems == [(1, "payload has no 'w'")]


def test_dry_run_flag_only_when_all_are_dry_runs() -> None:
    runs = [_run(1, 0, {"w": 1}, dry_run=True), _run(2, 1, {"w": 2})]
    assert (
        merge(select(runs, target=None, dry_runs_count=True), "w", Merge.SUM).dry_run
        is False
    )
    assert merge(runs[:1], "w", Merge.SUM).dry_run is True
    # Dry runs that do not count are left out.
    kept = select(runs, target=None, dry_runs_count=False)
    assert [item.dispatch_id for item in kept] == [2]


@pytest.mark.parametrize(
    ("target", "wanted", "matches"),
    [
        ([4, 5], 4, True),
        ([4, 5], 6, False),
        (["BATTERY"], "BATTERY", True),
        (["BATTERY:LI_ION"], "BATTERY", True),
        (["BATTERY"], "BATTERY:LI_ION", True),
        (["BATTERY:NA_ION"], "BATTERY:LI_ION", False),
        (["INVERTER:BATTERY"], "BATTERY", False),
        (["EV_CHARGER"], "BATTERY", False),
        # ids and categories never match each other
        ([4], "BATTERY", False),
        (["BATTERY"], 4, False),
    ],
)
def test_target_filter(
    target: list[int] | list[str], wanted: int | str, matches: bool
) -> None:
    assert target_matches(target, wanted) is matches


def test_parse_target() -> None:
    assert parse_target("") is None
    assert parse_target(" 4 ") == 4
    assert parse_target("battery:li_ion") == "BATTERY:LI_ION"
    with pytest.raises(ValueError, match="negative"):
        parse_target("-3")


def test_units_per_kind() -> None:
    assert unit_for(Kind.POWER, "") == "W"
    assert unit_for(Kind.POWER, "kw") == "kW"
    assert unit_for(Kind.CURRENT, "") == "A"
    assert unit_for(Kind.PERCENTAGE, "") == "%"
    assert unit_for(Kind.NONE, "") is None
    assert unit_for(Kind.NONE, "ct/kWh") == "ct/kWh"
    with pytest.raises(ValueError, match="takes A, mA"):
        unit_for(Kind.CURRENT, "W")
