"""Setpoints from running dispatches: payload lookup, target match, merge rules.

No Home Assistant imports: the payload sensors and the type + target group
sensors hand in what runs (`Contribution`s) and show what comes out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
import math
from typing import Any


class Merge(StrEnum):
    """What a payload sensor shows while several matching dispatches run."""

    LAST_STARTED = "last_started"
    LARGEST = "largest"
    SMALLEST = "smallest"
    SUM = "sum"


class DryRuns(StrEnum):
    """Whether dry-run dispatches count for a subentry's sensor."""

    INTEGRATION = "integration"
    """As the integration's option says."""
    COUNT = "count"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class Contribution:
    """One running dispatch as the setpoint sensors see it."""

    dispatch_id: int
    start: datetime
    """Start of its current run."""
    dry_run: bool
    target: Sequence[int] | Sequence[str]
    """Component ids, or category names such as `BATTERY:LI_ION`."""
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Setpoint:
    """A payload sensor's value and where it comes from."""

    value: float | None
    """None: no matching dispatch runs, or a value that counts is not a number."""
    dispatch_ids: list[int]
    """The dispatches the value comes from (sorted)."""
    dry_run: bool
    """True only when every dispatch it comes from is a dry run."""
    problems: list[tuple[int, str]]
    """(dispatch id, what is wrong) for values that count but are no number."""


def parse_target(text: str) -> int | str | None:
    """A target filter as typed: a component id, or a category name (upper case).

    Empty text is no filter (None). Raises ValueError for a negative id.
    """
    text = text.strip()
    if not text:
        return None
    if text.isdigit():
        return int(text)
    if text.startswith("-") and text[1:].isdigit():
        raise ValueError("component ids must not be negative")
    return text.upper().replace(" ", "")


def target_matches(target: Sequence[int] | Sequence[str], wanted: int | str) -> bool:
    """Whether a dispatch target contains the wanted component id or category.

    Ids match ids only, categories match categories only (which category an
    id has is not known here). A subtype counts for its category:
    `BATTERY:LI_ION` matches a filter `BATTERY`; a dispatch for the whole
    category (`BATTERY`) matches a filter `BATTERY:LI_ION` as well.
    """
    if isinstance(wanted, int):
        return any(
            isinstance(item, int) and not isinstance(item, bool) and item == wanted
            for item in target
        )
    wanted_base, _, wanted_sub = wanted.partition(":")
    for item in target:
        if not isinstance(item, str):
            continue
        base, _, sub = item.partition(":")
        if base == wanted_base and (not wanted_sub or not sub or sub == wanted_sub):
            return True
    return False


_MISSING = object()


def lookup(payload: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (`limits.max_current_a`; `list.0` indexes).

    Returns `_MISSING` (see `is_missing`) when any step does not exist.
    """
    value: Any = payload
    for step in path.split("."):
        if isinstance(value, Mapping) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return _MISSING
    return value


def is_missing(value: Any) -> bool:
    """Whether `lookup` found nothing."""
    return value is _MISSING


def number_at(payload: Mapping[str, Any], path: str) -> float | str:
    """The finite number at `path`, or a text saying why there is none."""
    value = lookup(payload, path)
    if value is _MISSING:
        return f"payload has no {path!r}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{path!r} is not a number: {value!r}"
    if not math.isfinite(value):
        return f"{path!r} is not a finite number: {value!r}"
    return float(value)


def select(
    running: Iterable[Contribution],
    *,
    target: int | str | None,
    dry_runs_count: bool,
) -> list[Contribution]:
    """The running dispatches a sensor follows, by start then id."""
    chosen = [
        item
        for item in running
        if (dry_runs_count or not item.dry_run)
        and (target is None or target_matches(item.target, target))
    ]
    chosen.sort(key=lambda item: (item.start, item.dispatch_id))
    return chosen


def merge(chosen: Sequence[Contribution], path: str, rule: Merge) -> Setpoint:
    """The value a payload sensor shows for the dispatches it follows.

    `chosen` is ordered as `select` returns it. With `LAST_STARTED` only the
    dispatch whose run started last counts (a tie: the higher id); with the
    other rules every dispatch counts, and one value that is not a number
    makes the result unknown (a sum without it would be wrong).
    """
    if not chosen:
        return Setpoint(None, [], False, [])
    counted = [chosen[-1]] if rule is Merge.LAST_STARTED else list(chosen)
    values: list[float] = []
    problems: list[tuple[int, str]] = []
    for item in counted:
        found = number_at(item.payload, path)
        if isinstance(found, str):
            problems.append((item.dispatch_id, found))
        else:
            values.append(found)
    ids = sorted(item.dispatch_id for item in counted)
    dry_run = all(item.dry_run for item in counted)
    if problems:
        return Setpoint(None, ids, dry_run, problems)
    if rule is Merge.LARGEST:
        value = max(values)
    elif rule is Merge.SMALLEST:
        value = min(values)
    elif rule is Merge.SUM:
        value = math.fsum(values)
    else:
        value = values[0]
    return Setpoint(value, ids, dry_run, [])


class Kind(StrEnum):
    """What a payload value measures (the sensor's device class)."""

    POWER = "power"
    CURRENT = "current"
    ENERGY = "energy"
    PERCENTAGE = "percentage"
    NONE = "none"


UNITS: Mapping[Kind, tuple[str, ...]] = {
    Kind.POWER: ("W", "kW", "MW"),
    Kind.CURRENT: ("A", "mA"),
    Kind.ENERGY: ("Wh", "kWh", "MWh"),
    Kind.PERCENTAGE: ("%",),
}
"""The units a kind allows, its default first (`NONE` takes any unit)."""


def unit_for(kind: Kind, unit: str) -> str | None:
    """The unit to show: the given one, or the kind's default.

    Raises ValueError when the kind does not allow the unit.
    """
    unit = unit.strip()
    allowed = UNITS.get(kind)
    if allowed is None:
        return unit or None
    if not unit:
        return allowed[0]
    for candidate in allowed:
        if candidate.lower() == unit.lower():
            return candidate
    raise ValueError(f"{kind} takes {', '.join(allowed)}")
