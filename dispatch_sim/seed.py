"""Load dispatches from a JSON seed file.

The file holds a list of objects::

    {"microgrid_id": 1,            # optional, default: the CLI's --microgrid-id
     "type": "BATTERY_CHARGE",
     "start_time": "now+60s",      # ISO-8601, "now", or now[+-]<n><s|m|h|d>
     "duration": 900,              # seconds, or null for open-ended
     "target": ["BATTERY"],        # component ids, or category names
     "active": true, "dry_run": false, "payload": {},
     "recurrence": {"frequency": "DAILY", "interval": 1, "count": 5,
                    "until": "now+7d", "byminutes": [0], "byhours": [11],
                    "byweekdays": ["MONDAY"], "bymonthdays": [1],
                    "bymonths": [1]}}
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
import json
from pathlib import Path
import re
from typing import Any

from frequenz.client.dispatch.recurrence import (
    EndCriteria,
    Frequency,
    RecurrenceRule,
    Weekday,
)

from .convert import TargetItem, now_utc
from .server import DispatchSimulator

_RELATIVE = re.compile(r"^now\s*(?:([+-])\s*(\d+(?:\.\d+)?)\s*([smhd]))?$", re.I)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_KNOWN_KEYS = {
    "microgrid_id",
    "type",
    "start_time",
    "duration",
    "target",
    "active",
    "dry_run",
    "payload",
    "recurrence",
}


class SeedError(ValueError):
    """Raised for a malformed seed file."""


@dataclass(frozen=True, kw_only=True)
class SeedDispatch:
    """One dispatch to create, with arguments for `DispatchSimulator.create`."""

    microgrid_id: int
    type: str
    start_time: datetime
    duration: timedelta | None
    target: list[TargetItem]
    active: bool = True
    dry_run: bool = False
    payload: dict[str, Any] | None = None
    recurrence: RecurrenceRule | None = None


def parse_time(value: str, now: datetime) -> datetime:
    """Parse an ISO-8601 or relative ("now", "now+60s", "now-2h") time.

    Args:
        value: The text; naive ISO times are taken as UTC.
        now: The reference for relative times.

    Returns:
        The aware datetime.

    Raises:
        SeedError: If the text is neither form.

    """
    match = _RELATIVE.match(value.strip())
    if match:
        sign, amount, unit = match.groups()
        if sign is None:
            return now
        delta = timedelta(**{_UNITS[unit.lower()]: float(amount)})
        return now + delta if sign == "+" else now - delta
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise SeedError(f"invalid time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _recurrence(raw: dict[str, Any], now: datetime) -> RecurrenceRule:
    """Build a recurrence rule from its JSON form.

    Args:
        raw: The JSON object.
        now: The reference for a relative `until`.

    Returns:
        The rule.

    Raises:
        SeedError: If a name or value is invalid.

    """
    try:
        frequency = Frequency[str(raw.get("frequency", raw.get("freq"))).upper()]
        weekdays = [Weekday[str(day).upper()] for day in raw.get("byweekdays", [])]
    except KeyError as err:
        raise SeedError(f"unknown recurrence name: {err}") from None
    end: EndCriteria | None = None
    if "count" in raw:
        end = EndCriteria(count=int(raw["count"]))
    elif "until" in raw:
        end = EndCriteria(until=parse_time(str(raw["until"]), now))
    return RecurrenceRule(
        frequency=frequency,
        interval=int(raw.get("interval", 1)),
        end_criteria=end,
        byminutes=[int(v) for v in raw.get("byminutes", [])],
        byhours=[int(v) for v in raw.get("byhours", [])],
        byweekdays=weekdays,
        bymonthdays=[int(v) for v in raw.get("bymonthdays", [])],
        bymonths=[int(v) for v in raw.get("bymonths", [])],
    )


def _entry(raw: Any, default_microgrid_id: int, now: datetime) -> SeedDispatch:
    """Convert one JSON object.

    Args:
        raw: The JSON value.
        default_microgrid_id: Microgrid id when the object has none.
        now: The reference for relative times.

    Returns:
        The parsed dispatch.

    Raises:
        SeedError: If the object is malformed.

    """
    if not isinstance(raw, dict):
        raise SeedError("each seed entry must be an object")
    unknown = set(raw) - _KNOWN_KEYS
    if unknown:
        raise SeedError(f"unknown keys: {sorted(unknown)}")
    try:
        duration = raw.get("duration")
        recurrence = raw.get("recurrence")
        return SeedDispatch(
            microgrid_id=int(raw.get("microgrid_id", default_microgrid_id)),
            type=str(raw["type"]),
            start_time=parse_time(str(raw.get("start_time", "now")), now),
            duration=None if duration is None else timedelta(seconds=float(duration)),
            target=list(raw["target"]),
            active=bool(raw.get("active", True)),
            dry_run=bool(raw.get("dry_run", False)),
            payload=dict(raw.get("payload") or {}),
            recurrence=None if recurrence is None else _recurrence(recurrence, now),
        )
    except KeyError as err:
        raise SeedError(f"missing key: {err}") from None
    except (TypeError, ValueError) as err:
        raise SeedError(str(err)) from None


def parse_seed(
    raw: Any, *, default_microgrid_id: int = 1, now: datetime | None = None
) -> list[SeedDispatch]:
    """Parse decoded seed JSON.

    Args:
        raw: The decoded JSON (a list of objects).
        default_microgrid_id: Microgrid id for entries without one.
        now: The reference for relative times (default: the current time,
            truncated to whole seconds).

    Returns:
        The dispatches, in file order.

    Raises:
        SeedError: If the content is malformed (the message names the entry).

    """
    if not isinstance(raw, list):
        raise SeedError("seed must be a JSON list")
    now = now or now_utc().replace(microsecond=0)
    result = []
    for index, item in enumerate(raw):
        try:
            result.append(_entry(item, default_microgrid_id, now))
        except SeedError as err:
            raise SeedError(f"seed entry {index}: {err}") from None
    return result


def load_seed(
    path: str | Path, *, default_microgrid_id: int = 1, now: datetime | None = None
) -> list[SeedDispatch]:
    """Read and parse a seed file.

    Args:
        path: The JSON file.
        default_microgrid_id: Microgrid id for entries without one.
        now: The reference for relative times (default: the current time).

    Returns:
        The dispatches.

    Raises:
        SeedError: If the file is not valid JSON or malformed.

    """
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SeedError(f"{path}: invalid JSON: {err}") from None
    return parse_seed(raw, default_microgrid_id=default_microgrid_id, now=now)


_GENERATED_TYPES = (
    "BATTERY_CHARGE",
    "BATTERY_DISCHARGE",
    "PV_CURTAILMENT",
    "EV_LIMIT",
    "FCR_PREQUALIFICATION",
)


def generate_dispatches(
    count: int, *, now: datetime, current: int | None = None
) -> list[dict[str, Any]]:
    """Make `count` varied dispatches for load tests (deterministic).

    The first `current` (default: a tenth) are current: a third running now, a
    third one-off runs to come, a third daily rules without end that started in
    the past. The rest have finished for good (one-off runs in the past). The
    result goes to `DispatchSimulator.create_many`.

    Args:
        count: How many dispatches.
        now: The reference time.
        current: How many are running now or have a run to come.

    Returns:
        One mapping of `DispatchSimulator.create` arguments per dispatch.

    """
    current = count // 10 if current is None else min(current, count)
    daily = RecurrenceRule(frequency=Frequency.DAILY, interval=1)
    result: list[dict[str, Any]] = []
    for index in range(count):
        item: dict[str, Any] = {
            "type": _GENERATED_TYPES[index % len(_GENERATED_TYPES)],
            "target": ["BATTERY"] if index % 2 else [index % 50 + 1],
            "payload": {"power_kw": index % 100, "n": index},
            "duration": timedelta(minutes=15),
        }
        if index >= current:
            item["start_time"] = now - timedelta(days=1, minutes=index)
        elif index % 3 == 0:
            item["start_time"] = now - timedelta(minutes=1)
            item["duration"] = timedelta(hours=1, minutes=index)
        elif index % 3 == 1:
            item["start_time"] = now + timedelta(minutes=10 + index)
        else:
            item["start_time"] = now - timedelta(days=2, minutes=index)
            item["recurrence"] = daily
        result.append(item)
    return result


def sample_seed_path() -> Path:
    """Return the path of the bundled sample seed.

    Returns:
        The path of `sample_seed.json` inside this package.

    """
    return (
        Path(str(resources.files(__package__ or "dispatch_sim"))) / "sample_seed.json"
    )


def apply_seed(sim: DispatchSimulator, dispatches: list[SeedDispatch]) -> list[int]:
    """Create seed dispatches through the control API.

    Args:
        sim: The simulator.
        dispatches: The parsed seed.

    Returns:
        The new dispatch ids, in order.

    Raises:
        SeedError: If an entry is rejected (e.g. unknown category); entries
            before it have been created.

    """
    ids = []
    for index, item in enumerate(dispatches):
        try:
            ids.append(
                sim.create(
                    item.microgrid_id,
                    type=item.type,
                    start_time=item.start_time,
                    duration=item.duration,
                    target=item.target,
                    active=item.active,
                    dry_run=item.dry_run,
                    payload=item.payload,
                    recurrence=item.recurrence,
                )
            )
        except ValueError as err:
            raise SeedError(f"seed entry {index}: {err}") from None
    return ids
