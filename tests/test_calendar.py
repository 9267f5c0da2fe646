"""The calendar entity, through HA's calendar services, state and trigger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from frequenz.api.dispatch.v1 import dispatch_pb2
from frequenz.client.dispatch.recurrence import EndCriteria, Frequency, RecurrenceRule
from homeassistant.components.calendar import CalendarEntity
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.frequenz_dispatch import calendar as calendar_module
from custom_components.frequenz_dispatch.calendar import (
    MAX_EVENTS_PER_QUERY,
    DispatchCalendar,
)
from custom_components.frequenz_dispatch.schedule import Schedule
from dispatch_sim.server import DispatchSimulator

from .common import StateWrites, create_dispatch, go_to, setup_and_follow, wait_for
from .conftest import DOMAIN, MICROGRID_ID

CALENDAR = "calendar.microgrid_42_dispatches"


async def _events(
    hass: HomeAssistant, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    response = await hass.services.async_call(
        "calendar",
        "get_events",
        {
            "entity_id": CALENDAR,
            "start_date_time": start.isoformat(),
            "end_date_time": end.isoformat(),
        },
        blocking=True,
        return_response=True,
    )
    assert response is not None
    calendar: Any = response[CALENDAR]
    events: list[dict[str, Any]] = calendar["events"]
    return events


async def _wait_for_event(hass: HomeAssistant, summary: str) -> None:
    """Wait until the calendar's state shows the event with this summary."""
    await wait_for(
        hass,
        lambda: (
            (s := hass.states.get(CALENDAR)) is not None
            and s.attributes.get("message") == summary
        ),
        f"the calendar showing {summary!r}",
    )


def _assert_no_event(hass: HomeAssistant) -> None:
    """The calendar is off and shows no event."""
    state = hass.states.get(CALENDAR)
    assert state is not None
    assert state.state == "off"
    assert "message" not in state.attributes


def _utc(value: str) -> datetime:
    parsed = dt_util.parse_datetime(value)
    assert parsed is not None
    return dt_util.as_utc(parsed)


async def test_every_run_is_an_event(
    hass: HomeAssistant,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    await hass.config.async_set_time_zone("Europe/Berlin")
    charge = create_dispatch(
        dispatch_server,
        start_time=t0 + timedelta(hours=1),
        duration=timedelta(minutes=15),
        target=["BATTERY"],
        payload={"power_w": 5000},
    )
    create_dispatch(
        dispatch_server,
        type="FCR_PREQUALIFICATION",
        start_time=t0 + timedelta(hours=2),
        duration=timedelta(minutes=10),
        recurrence=RecurrenceRule(
            frequency=Frequency.HOURLY, interval=4, end_criteria=EndCriteria(count=3)
        ),
    )
    create_dispatch(
        dispatch_server,
        type="MY_TEST",
        start_time=t0 + timedelta(hours=3),
        duration=None,
        dry_run=True,
    )
    create_dispatch(
        dispatch_server,
        start_time=t0 + timedelta(hours=1),
        duration=timedelta(minutes=15),
        active=False,
    )
    await setup_and_follow(hass, entry_data, dispatch_server)

    events = await _events(hass, t0, t0 + timedelta(days=1))
    assert [(e["summary"], _utc(e["start"]), _utc(e["end"])) for e in events] == [
        (
            "Battery charge",
            t0 + timedelta(hours=1),
            t0 + timedelta(hours=1, minutes=15),
        ),
        (
            "FCR prequalification",
            t0 + timedelta(hours=2),
            t0 + timedelta(hours=2, minutes=10),
        ),
        (
            "My test (dry run)",
            t0 + timedelta(hours=3),
            t0 + timedelta(days=365, hours=3),
        ),
        (
            "FCR prequalification",
            t0 + timedelta(hours=6),
            t0 + timedelta(hours=6, minutes=10),
        ),
        (
            "FCR prequalification",
            t0 + timedelta(hours=10),
            t0 + timedelta(hours=10, minutes=10),
        ),
    ]
    # Times are given in HA's time zone.
    assert events[0]["start"] == dt_util.as_local(t0 + timedelta(hours=1)).isoformat()
    assert events[0]["description"] == (
        'Type: BATTERY_CHARGE\nTarget: BATTERY\nPayload: {"power_w": 5000}\n'
        f"Dispatch ID: {charge}"
    )
    # A range that only meets the middle of a run still shows it.
    later = await _events(
        hass, t0 + timedelta(hours=2, minutes=5), t0 + timedelta(hours=2, minutes=6)
    )
    assert [e["summary"] for e in later] == ["FCR prequalification"]


async def test_state_follows_the_runs(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    create_dispatch(
        dispatch_server,
        start_time=t0 + timedelta(minutes=10),
        duration=timedelta(minutes=5),
    )
    create_dispatch(
        dispatch_server,
        type="PV_CURTAILMENT",
        start_time=t0 + timedelta(minutes=12),
        duration=timedelta(minutes=10),
    )
    await setup_and_follow(hass, entry_data, dispatch_server)
    state = hass.states.get(CALENDAR)
    assert state is not None
    assert state.state == "off"
    assert state.attributes["message"] == "Battery charge"

    await go_to(hass, freezer, t0 + timedelta(minutes=10))
    state = hass.states.get(CALENDAR)
    assert state is not None
    assert state.state == "on"
    assert state.attributes["message"] == "Battery charge"

    # The charge ends while the curtailment goes on: still on.
    await go_to(hass, freezer, t0 + timedelta(minutes=15))
    state = hass.states.get(CALENDAR)
    assert state is not None
    assert state.state == "on"
    assert state.attributes["message"] == "PV curtailment"

    await go_to(hass, freezer, t0 + timedelta(minutes=22))
    _assert_no_event(hass)

    # A new dispatch shows up at once, without waiting for a timer.
    create_dispatch(
        dispatch_server,
        type="EV_CHARGING_LIMIT",
        start_time=t0 + timedelta(hours=1),
        duration=timedelta(minutes=5),
    )
    await _wait_for_event(hass, "EV charging limit")


async def test_a_year_of_a_minutely_dispatch_is_capped(
    hass: HomeAssistant,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    create_dispatch(
        dispatch_server,
        start_time=t0,
        duration=timedelta(seconds=30),
        recurrence=RecurrenceRule(frequency=Frequency.MINUTELY, interval=1),
    )
    create_dispatch(
        dispatch_server,
        type="PV_CURTAILMENT",
        start_time=t0 + timedelta(minutes=3, seconds=10),
        duration=timedelta(seconds=10),
    )
    await setup_and_follow(hass, entry_data, dispatch_server)
    events = await _events(hass, t0, t0 + timedelta(days=365))
    assert len(events) == MAX_EVENTS_PER_QUERY
    starts = [_utc(e["start"]) for e in events]
    assert starts == sorted(starts)
    # The earliest runs of the range, of every dispatch.
    assert starts[:5] == [
        t0,
        t0 + timedelta(minutes=1),
        t0 + timedelta(minutes=2),
        t0 + timedelta(minutes=3),
        t0 + timedelta(minutes=3, seconds=10),
    ]
    assert starts[-1] == t0 + timedelta(minutes=MAX_EVENTS_PER_QUERY - 2)


async def test_calendar_trigger_with_an_offset(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    create_dispatch(
        dispatch_server,
        start_time=t0 + timedelta(minutes=40),
        duration=timedelta(minutes=15),
    )
    await setup_and_follow(hass, entry_data, dispatch_server)
    fired: list[dict[str, Any]] = []

    @callback
    def _seen(event: Event) -> None:
        fired.append(dict(event.data))

    hass.bus.async_listen("before_charge", _seen)
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "triggers": [
                    {
                        "trigger": "calendar",
                        "event": "start",
                        "entity_id": CALENDAR,
                        "offset": "-00:15:00",
                    }
                ],
                "actions": [
                    {
                        "event": "before_charge",
                        "event_data": {
                            "summary": "{{ trigger.calendar_event.summary }}"
                        },
                    }
                ],
            }
        },
    )
    await hass.async_block_till_done()

    for minutes in range(1, 25):
        await go_to(hass, freezer, t0 + timedelta(minutes=minutes))
    assert fired == []
    await go_to(hass, freezer, t0 + timedelta(minutes=25))
    # The trigger refreshes its events in a background task.
    await wait_for(hass, lambda: bool(fired), "calendar trigger")
    assert fired == [{"summary": "Battery charge"}]
    # Detach the trigger (its 15-minute refresh timer) before HA stops.
    await hass.services.async_call(
        "automation", "turn_off", {"entity_id": "all"}, blocking=True
    )


def _calendar(hass: HomeAssistant) -> DispatchCalendar:
    entity = hass.data["calendar"].get_entity(CALENDAR)
    assert isinstance(entity, DispatchCalendar)
    return entity


async def test_a_query_evaluates_only_the_dispatches_it_can_show(
    hass: HomeAssistant,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    for n in range(30):  # over two days ago
        create_dispatch(
            dispatch_server,
            start_time=t0 - timedelta(days=2, minutes=n),
            duration=timedelta(hours=1),
        )
    for n in range(30):  # in two days
        create_dispatch(
            dispatch_server,
            start_time=t0 + timedelta(days=2, minutes=n),
            duration=timedelta(hours=1),
        )
    create_dispatch(
        dispatch_server,
        type="PV_CURTAILMENT",
        start_time=t0 - timedelta(minutes=10),
        duration=timedelta(minutes=30),
    )
    create_dispatch(
        dispatch_server,
        type="FCR",
        start_time=t0 + timedelta(hours=1),
        duration=timedelta(minutes=15),
    )
    await setup_and_follow(hass, entry_data, dispatch_server)
    calendar = _calendar(hass)

    # A range after now: the running one and the one starting in it, two
    # steps each (its run, then no more); the other 60 are not evaluated.
    steps = calendar.query_steps
    events = await _events(hass, t0, t0 + timedelta(hours=3))
    assert [e["summary"] for e in events] == ["PV curtailment", "FCR"]
    assert calendar.query_steps - steps == 4

    # Reaching into the past: one-shots that ended before the range, or
    # begin after it, are not evaluated either.
    steps = calendar.query_steps
    events = await _events(hass, t0 - timedelta(days=1), t0 + timedelta(hours=3))
    assert [e["summary"] for e in events] == ["PV curtailment", "FCR"]
    assert calendar.query_steps - steps == 4

    # Those that meet it are.
    steps = calendar.query_steps
    events = await _events(hass, t0 - timedelta(days=3), t0 + timedelta(hours=3))
    assert len(events) == 32
    assert calendar.query_steps - steps == 64


async def test_the_work_of_a_query_is_capped(
    hass: HomeAssistant,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(calendar_module, "MAX_STEPS_PER_QUERY", 10)
    for n in reversed(range(20)):
        create_dispatch(
            dispatch_server,
            start_time=t0 + timedelta(hours=1, minutes=n),
            duration=timedelta(minutes=10),
        )
    await setup_and_follow(hass, entry_data, dispatch_server)
    calendar = _calendar(hass)
    steps = calendar.query_steps
    events = await _events(hass, t0, t0 + timedelta(days=1))
    assert calendar.query_steps - steps == 10
    # Fewer events, but the earliest ones, in order.
    assert [_utc(e["start"]) for e in events] == [
        t0 + timedelta(hours=1, minutes=n) for n in range(5)
    ]


async def test_a_dispatch_that_fails_is_left_out_of_the_query(
    hass: HomeAssistant,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Daily until the end of the year 9999: its fourth run is past what a
    # datetime can hold (unless the schedule stops there by itself).
    first = datetime(9999, 12, 29, tzinfo=UTC)
    daily = RecurrenceRule(frequency=Frequency.DAILY, interval=1)
    create_dispatch(
        dispatch_server,
        start_time=first,
        duration=timedelta(hours=12),
        recurrence=daily,
    )
    create_dispatch(
        dispatch_server,
        type="FCR",
        start_time=datetime(9999, 12, 30, 18, tzinfo=UTC),
        duration=timedelta(hours=1),
    )
    await setup_and_follow(hass, entry_data, dispatch_server)
    start, end = first, datetime(9999, 12, 31, 23, tzinfo=UTC)
    schedule = Schedule.from_fields(
        start_time=first, duration=timedelta(hours=12), recurrence=daily
    )
    try:
        list(schedule.runs_between(start, end))
        raises = False
    except OverflowError:
        raises = True

    for _ in range(2):
        events = await _events(hass, start, end)
        summaries = [e["summary"] for e in events]
        if raises:
            assert summaries == ["FCR"]
        else:
            assert summaries == ["Battery charge"] * 2 + ["FCR", "Battery charge"]
    left_out = [r for r in caplog.records if "left out of the calendar" in r.message]
    assert len(left_out) == (1 if raises else 0)


async def test_an_event_that_cannot_be_shown_leaves_the_rest_working(
    hass: HomeAssistant,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An open-ended dispatch starting in the year 9999 has no end to show.

    Its event would end past what a datetime holds: it is left out of the
    state and of every query, with one warning per version, and every other
    dispatch is shown as before.
    """
    far = datetime(9999, 12, 1, tzinfo=UTC)
    far_id = create_dispatch(dispatch_server, start_time=far, duration=None)
    await setup_and_follow(hass, entry_data, dispatch_server)

    # The next run is the one that cannot be shown: no event, state off.
    _assert_no_event(hass)
    assert await _events(hass, far - timedelta(days=1), far + timedelta(days=1)) == []

    # Another dispatch is shown, in the state and in the queries.
    create_dispatch(
        dispatch_server,
        type="FCR",
        start_time=t0 + timedelta(hours=1),
        duration=timedelta(hours=1),
    )
    await _wait_for_event(hass, "FCR")
    events = await _events(hass, t0, far + timedelta(days=1))
    assert [e["summary"] for e in events] == ["FCR"]

    # One warning for the dispatch left out, however often it is asked for.
    await _events(hass, far - timedelta(days=1), far + timedelta(days=1))
    left_out = [
        r.getMessage()
        for r in caplog.records
        if "left out of the calendar" in r.getMessage()
    ]
    assert left_out == [
        f"Dispatch {far_id} is left out of the calendar: "
        "OverflowError('date value out of range')"
    ]


async def test_state_is_written_only_when_its_event_changes(
    hass: HomeAssistant,
    hass_ws_client: WebSocketGenerator,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A change that leaves the current/next event as it is writes no state.

    It still reaches a calendar view that follows the events live (HA versions
    with `calendar/event/subscribe`).
    """
    create_dispatch(
        dispatch_server,
        start_time=t0 + timedelta(minutes=10),
        duration=timedelta(minutes=5),
    )
    await setup_and_follow(hass, entry_data, dispatch_server)
    writes = StateWrites(hass, monkeypatch)
    live = hasattr(CalendarEntity, "async_update_event_listeners")
    if live:
        client = await hass_ws_client(hass)
        await client.send_json_auto_id(
            {
                "type": "calendar/event/subscribe",
                "entity_id": CALENDAR,
                "start": t0.isoformat(),
                "end": (t0 + timedelta(days=2)).isoformat(),
            }
        )
        assert (await client.receive_json())["success"]
        first = await client.receive_json()
        assert [e["summary"] for e in first["event"]["events"]] == ["Battery charge"]

    create_dispatch(
        dispatch_server,
        type="PV_CURTAILMENT",
        start_time=t0 + timedelta(days=1),
        duration=timedelta(minutes=5),
    )
    if live:
        pushed = await client.receive_json()
        assert [e["summary"] for e in pushed["event"]["events"]] == [
            "Battery charge",
            "PV curtailment",
        ]
    else:
        coordinator = hass.config_entries.async_entries(DOMAIN)[0].runtime_data
        await wait_for(hass, lambda: len(coordinator.dispatches()) == 2, "listed")
    assert CALENDAR not in writes.entity_ids

    # An earlier one becomes the next event: written.
    create_dispatch(
        dispatch_server,
        type="EV_CHARGING_LIMIT",
        start_time=t0 + timedelta(minutes=5),
        duration=timedelta(minutes=5),
    )
    await wait_for(hass, lambda: CALENDAR in writes.entity_ids, "written")
    state = hass.states.get(CALENDAR)
    assert state is not None
    assert state.attributes["message"] == "EV charging limit"
    assert writes.entity_ids.count(CALENDAR) == 1


async def test_a_range_in_the_past_shows_what_ran_then(
    hass: HomeAssistant,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Inactive and ended dispatches are skipped cheaply; a far one is shown."""
    day = timedelta(days=1)
    create_dispatch(  # inactive: no runs at all
        dispatch_server, start_time=t0 - 2 * day, duration=None, active=False
    )
    open_ended = create_dispatch(
        dispatch_server,
        type="FCR",
        start_time=t0 - 2 * day,
        duration=None,
        payload={"levels": [1.0, 2.5], "nested": {"on": True}},
    )
    create_dispatch(  # daily, ended three days ago
        dispatch_server,
        start_time=t0 - 6 * day,
        duration=timedelta(hours=1),
        recurrence=RecurrenceRule(
            frequency=Frequency.DAILY,
            interval=1,
            end_criteria=EndCriteria(until=t0 - 3 * day),
        ),
    )
    create_dispatch(  # daily, endless
        dispatch_server,
        type="PV_CURTAILMENT",
        start_time=t0 - 2 * day + timedelta(hours=1),
        duration=timedelta(hours=1),
        recurrence=RecurrenceRule(frequency=Frequency.DAILY, interval=1),
    )
    create_dispatch(  # a one-shot that ended yesterday (no entity any more)
        dispatch_server,
        start_time=t0 - 2 * day + timedelta(hours=3),
        duration=timedelta(hours=1),
    )
    create_dispatch(  # open-ended, from tomorrow
        dispatch_server, start_time=t0 + day, duration=None
    )
    create_dispatch(  # its end criterion plus its duration is past year 9999
        dispatch_server,
        start_time=t0 + day,
        duration=timedelta(days=2),
        recurrence=RecurrenceRule(
            frequency=Frequency.DAILY,
            interval=1,
            end_criteria=EndCriteria(until=datetime(9999, 12, 31, tzinfo=UTC)),
        ),
    )
    # Poison: a run 30 minutes ago, the next one past what a datetime holds.
    message = dispatch_pb2.Dispatch()
    message.CopyFrom(dispatch_server.raw_dispatches(MICROGRID_ID)[0])
    message.metadata.dispatch_id = 0  # a new one
    message.metadata.ClearField("update_time")
    message.metadata.ClearField("create_time")
    message.data.type = "POISON"
    message.data.is_active = True
    message.data.duration = 600
    message.data.start_time.FromDatetime(
        (t0 - timedelta(minutes=30)).replace(tzinfo=None)
    )
    message.data.recurrence.freq = dispatch_pb2.RecurrenceRule.FREQUENCY_MINUTELY
    message.data.recurrence.interval = 2**32 - 1  # the simulator would refuse it
    poison = dispatch_server.insert_raw(MICROGRID_ID, message)
    coordinator, _ = await setup_and_follow(hass, entry_data, dispatch_server)
    assert poison in coordinator.dispatches()
    events = await _events(hass, t0 - 2 * day, t0)
    assert [e["summary"] for e in events] == [
        "FCR",
        "PV curtailment",
        "Battery charge",
        "PV curtailment",
        "Poison",
    ]
    assert (
        f"dispatch_id: {open_ended}" in events[0]["description"]
        or str(open_ended) in events[0]["description"]
    )
    # Whole numbers of the payload read without ".0", in lists too.
    assert "[1, 2.5]" in events[0]["description"]
    assert "left out of the calendar" not in caplog.text
