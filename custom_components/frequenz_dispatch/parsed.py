"""What a listed or streamed dispatch becomes: valid, malformed, unchanged; versions."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from frequenz.client.dispatch.types import Dispatch, Event

from .event_data import dispatch_data
from .schedule import InvalidDispatchError, Schedule


def version_of(stamp: Any) -> int:
    """An update time as exact integer nanoseconds since the epoch."""
    return int(stamp.seconds) * 1_000_000_000 + int(stamp.nanos)


def _version_from_datetime(value: datetime) -> int:
    """Nanoseconds of a datetime, exact to its microsecond."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + (
        delta.microseconds * 1_000
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ValidDispatch:
    """A dispatch we understood, with its compiled schedule."""

    dispatch: Dispatch
    schedule: Schedule
    update_ns: int | None = None
    """The exact update time from the server; see `version`."""

    @property
    def id(self) -> int:
        """The dispatch id."""
        return int(self.dispatch.id)

    @property
    def version(self) -> int:
        """The exact version: the server's update time in integer nanoseconds.

        Compare this, never `dispatch.update_time` (the client's datetime
        drops the nanoseconds, and floats can round). Items built without
        `update_ns` fall back to the microseconds of `dispatch.update_time`.
        """
        if self.update_ns is not None:
            return self.update_ns
        return _version_from_datetime(self.dispatch.update_time)


@dataclass(frozen=True, slots=True)
class MalformedDispatch:
    """A dispatch the server sent that we cannot interpret (or cannot receive)."""

    id: int
    reason: str
    update_time: datetime | None = None
    """When the server last changed it, if even that could be read."""
    version: int | None = None
    """The exact version (integer nanoseconds), None if unreadable or unknown."""
    unlistable: bool = False
    """True if it is too large to be received even alone: its content is unknown."""


@dataclass(frozen=True, slots=True)
class Unchanged:
    """A listed dispatch whose version equals the one the caller knows."""

    id: int


type ParsedDispatch = ValidDispatch | MalformedDispatch


@dataclass(frozen=True, slots=True)
class StreamUpdate:
    """One change pushed by the stream."""

    event: Event
    item: ParsedDispatch


def parse_dispatch(message: Any) -> ParsedDispatch:
    """Convert one protobuf dispatch, never raising for bad content."""
    dispatch_id = int(message.metadata.dispatch_id)
    version = message_version(message)
    try:
        if not message.data.HasField("start_time"):
            raise InvalidDispatchError("start_time is missing")
        dispatch = Dispatch.from_protobuf(message)
        schedule = Schedule(dispatch)
        dispatch_data(dispatch)  # what cannot be shown in events is malformed too
        return ValidDispatch(dispatch, schedule, version)
    except Exception as err:  # any bad content skips just this dispatch
        return MalformedDispatch(
            dispatch_id,
            str(err) or type(err).__name__,
            _update_time(message),
            version,
        )


def message_version(message: Any) -> int | None:
    """The exact version of a protobuf dispatch, None if it has no update time."""
    if not message.metadata.HasField("update_time"):
        return None
    return version_of(message.metadata.update_time)


def _update_time(message: Any) -> datetime | None:
    """The exact update time (to the microsecond), None if unreadable."""
    stamp = message.metadata.update_time
    try:
        return datetime.fromtimestamp(int(stamp.seconds), UTC) + timedelta(
            microseconds=int(stamp.nanos) // 1_000
        )
    except (ValueError, OverflowError, OSError):
        return None
