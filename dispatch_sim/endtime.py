"""Compute a dispatch's `end_time`, as the real service does in its metadata."""

from datetime import datetime, timedelta
from typing import Literal

from dateutil import rrule
from frequenz.api.dispatch.v1 import dispatch_pb2

from .convert import to_datetime

_FREQ: dict[int, Literal[0, 1, 2, 3, 4, 5, 6]] = {
    dispatch_pb2.RecurrenceRule.FREQUENCY_MINUTELY: rrule.MINUTELY,
    dispatch_pb2.RecurrenceRule.FREQUENCY_HOURLY: rrule.HOURLY,
    dispatch_pb2.RecurrenceRule.FREQUENCY_DAILY: rrule.DAILY,
    dispatch_pb2.RecurrenceRule.FREQUENCY_WEEKLY: rrule.WEEKLY,
    dispatch_pb2.RecurrenceRule.FREQUENCY_MONTHLY: rrule.MONTHLY,
    dispatch_pb2.RecurrenceRule.FREQUENCY_YEARLY: rrule.YEARLY,
}
_WEEKDAYS = (rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA, rrule.SU)
_MAX_OCCURRENCES = 100_000


def _last_start(start: datetime, rule: dispatch_pb2.RecurrenceRule) -> datetime | None:
    """Find the start of the last occurrence of a bounded recurrence.

    Args:
        start: The first start time.
        rule: The recurrence rule; must have end criteria.

    Returns:
        The last occurrence's start, or None if there is none or it is too far
        away to enumerate.

    Raises:
        ValueError: If the rule cannot be expressed as an rrule.
        KeyError: If the rule has an unknown frequency.

    """
    criteria = rule.end_criteria
    which = criteria.WhichOneof("count_or_until")
    recurrence = rrule.rrule(
        freq=_FREQ[rule.freq],
        dtstart=start,
        interval=rule.interval,
        count=criteria.count if which == "count" else None,
        until=to_datetime(criteria.until_time) if which == "until_time" else None,
        byminute=list(rule.byminutes) or None,
        byhour=list(rule.byhours) or None,
        byweekday=[_WEEKDAYS[day - 1] for day in rule.byweekdays] or None,
        bymonthday=list(rule.bymonthdays) or None,
        bymonth=list(rule.bymonths) or None,
    )
    last: datetime | None = None
    for index, occurrence in enumerate(recurrence):
        if index >= _MAX_OCCURRENCES:
            return None
        last = occurrence
    return last


def compute_end_time(data: dispatch_pb2.DispatchData) -> datetime | None:
    """Compute when a dispatch stops for good.

    Args:
        data: The dispatch data.

    Returns:
        The end of the last occurrence, or None for open-ended dispatches
        (no duration, or a recurrence without end criteria) and for rules that
        cannot be evaluated.

    """
    if not data.HasField("duration") or not data.HasField("start_time"):
        return None
    start = to_datetime(data.start_time)
    duration = timedelta(seconds=data.duration)
    rule = data.recurrence
    if rule.freq == dispatch_pb2.RecurrenceRule.FREQUENCY_UNSPECIFIED:
        return start + duration
    if rule.end_criteria.WhichOneof("count_or_until") is None:
        return None
    try:
        last = _last_start(start, rule)
    except (ValueError, KeyError, IndexError, OverflowError):
        return None
    if last is None:
        return None
    # rrule drops sub-second parts of the start; add them back.
    return last.replace(microsecond=start.microsecond) + duration
