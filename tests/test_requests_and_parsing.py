"""Pure conversions: write requests from plain values, protobuf dispatches parsed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from frequenz.api.dispatch.v1 import dispatch_pb2
import pytest

from custom_components.frequenz_dispatch.parsed import (
    MalformedDispatch,
    ValidDispatch,
    parse_dispatch,
)
from custom_components.frequenz_dispatch.write_requests import update_request


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"type": "X"}, "cannot change the type"),
        ({"dry_run": True}, "cannot change the dry_run"),
        ({"colour": "red"}, "unknown field: colour"),
    ],
)
def test_update_request_refuses_what_the_api_cannot_change(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        update_request(1, 2, changes)


def _message(seconds: int) -> dispatch_pb2.Dispatch:
    message = dispatch_pb2.Dispatch()
    message.metadata.dispatch_id = 7
    message.metadata.update_time.seconds = seconds
    message.metadata.create_time.seconds = 1_700_000_000
    message.data.type = "BATTERY_CHARGE"
    message.data.start_time.seconds = 1_700_000_000
    message.data.target.component_ids.ids.extend([1])
    return message


def test_no_start_time_is_malformed_and_a_far_update_time_unreadable() -> None:
    message = _message(10**15)  # far beyond year 9999
    message.data.ClearField("start_time")
    parsed = parse_dispatch(message)
    assert isinstance(parsed, MalformedDispatch)
    assert parsed.reason == "start_time is missing"
    assert parsed.update_time is None
    assert parsed.version == 10**15 * 1_000_000_000


def test_the_version_without_server_nanoseconds_comes_from_the_update_time() -> None:
    parsed = parse_dispatch(_message(1_700_000_100))
    assert isinstance(parsed, ValidDispatch)
    assert parsed.version == 1_700_000_100 * 1_000_000_000
    rebuilt = ValidDispatch(parsed.dispatch, parsed.schedule)
    assert rebuilt.version == parsed.version
    assert rebuilt.dispatch.update_time == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
        seconds=1_700_000_100
    )
