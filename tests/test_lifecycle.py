"""Lifecycle edge cases: HA start, reloads, unusual targets, failing streams."""

from __future__ import annotations

from datetime import datetime, timedelta
import logging
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from frequenz.api.dispatch.v1 import dispatch_pb2
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import CoreState, Event, HomeAssistant
from homeassistant.setup import async_setup_component
import pytest

from dispatch_sim.server import DispatchSimulator

from .common import (
    MICROGRID_ID,
    EventRecorder,
    create_dispatch as _create,
    create_running as _create_running,
    go_to as _go_to,
    settle,
    setup_and_follow as _setup,
    setup_entry,
    wait_for,
)

LOG = "custom_components.frequenz_dispatch"


async def test_automation_sees_started_at_ha_start(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Runs under way at boot reach an automation set up in the same boot.

    Drives Home Assistant's own start sequence: integrations are set up while
    HA is not running (as bootstrap does), then `async_start()` fires
    EVENT_HOMEASSISTANT_START, runs the startup jobs (where automations arm
    their triggers) and fires EVENT_HOMEASSISTANT_STARTED.
    """
    _create(dispatch_server, start_time=t0 - timedelta(minutes=1), duration=None)
    runs: list[Event] = []
    hass.bus.async_listen("test_marker", runs.append)
    hass.set_state(CoreState.not_running)  # the test harness starts HA; boot again
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "triggers": {
                    "trigger": "event",
                    "event_type": "frequenz_dispatch_started",
                },
                "actions": {"event": "test_marker"},
            }
        },
    )
    recorder = EventRecorder().attach(hass)
    await setup_entry(hass, entry_data)
    await hass.async_block_till_done()
    assert recorder.kinds() == []  # held back while HA starts

    await hass.async_start()
    await hass.async_block_till_done()
    assert hass.state is CoreState.running
    assert recorder.kinds() == ["started"]
    assert len(runs) == 1
    assert "blocking Home Assistant from wrapping up" not in caplog.text


async def test_event_entity_sees_startup_started(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    _create(dispatch_server, start_time=t0 - timedelta(minutes=1), duration=None)
    _coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    state = hass.states.get("event.microgrid_42_dispatch_events")
    assert state is not None
    assert recorder.kinds() == ["started"]
    assert state.attributes.get("event_type") == "started"


async def test_reload_does_not_start_a_running_dispatch_again(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    _create(dispatch_server, start_time=t0 - timedelta(minutes=1), duration=None)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    assert await hass.config_entries.async_reload(coordinator.config_entry.entry_id)
    await hass.async_block_till_done()
    await settle(hass, 0.3)
    assert "unreachable" not in caplog.text
    assert recorder.kinds() == ["started"]


async def test_reload_reports_runs_that_ended_meanwhile(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    kept = _create_running(dispatch_server, t0)
    gone = _create_running(dispatch_server, t0)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    entry = coordinator.config_entry
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    dispatch_server.delete(MICROGRID_ID, gone)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    # Deleted during the reload: announced, its run stopped first.
    assert recorder.kinds(gone) == ["started", "stopped", "deleted"]
    assert recorder.kinds(kept) == ["started"]
    # The kept run still ends exactly once.
    await _go_to(hass, freezer, t0 + timedelta(minutes=29))
    assert recorder.kinds(kept) == ["started", "stopped"]


async def test_category_names_and_breaker_target(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    breaker = _create(
        dispatch_server,
        target=["BREAKER"],
        start_time=t0 - timedelta(minutes=1),
        duration=timedelta(hours=1),
    )
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    assert recorder.kinds(breaker) == ["started"]
    assert recorder.of("started")[0]["target"] == ["BREAKER"]
    _create(
        dispatch_server,
        target=["CHP", "HVAC"],
        start_time=t0 + timedelta(hours=1),
        duration=timedelta(minutes=5),
    )
    await wait_for(hass, lambda: bool(recorder.of("created")), "created")
    assert recorder.of("created")[0]["target"] == ["CHP", "HVAC"]
    assert coordinator.connected


async def test_relists_are_spaced_and_reset_the_back_off(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Listing works but every stream breaks at once: one re-list per 5 s.

    A successful re-list resets the back-off (it does not grow to 10, 30,
    60 s), and re-lists never come closer than 5 s (no hot loop).
    """
    caplog.set_level(logging.INFO, logger=LOG)
    coordinator, _recorder = await _setup(hass, entry_data, dispatch_server)
    now = t0
    gaps: list[int] = []

    def waiting() -> bool:
        """The stream follower waits on a timer that the next steps fire."""
        retry_at = coordinator.stream.retry_at
        return retry_at is not None and retry_at > now

    for _ in range(5):
        await wait_for(
            hass,
            lambda: dispatch_server.open_streams == 1 and coordinator.connected,
            "reconnected",
        )
        lists = dispatch_server.list_calls
        await dispatch_server.break_streams()
        await wait_for(hass, lambda: not coordinator.connected, "disconnected")
        await wait_for(hass, waiting, "backing off")

        def waiting_or_listed(lists: int = lists) -> bool:
            return dispatch_server.list_calls > lists or waiting()

        for seconds in range(1, 20):
            now += timedelta(seconds=1)
            await _go_to(hass, freezer, now)
            # Each step ends when the coordinator waits again or has listed
            # (however slow the gRPC round trip), never after some real time.
            await wait_for(hass, waiting_or_listed, "waiting or listed")
            if dispatch_server.list_calls > lists:
                gaps.append(seconds)
                break
    assert gaps == [5, 5, 5, 5, 5]
    assert caplog.text.count("unreachable") == 1


async def test_malformed_versions_of_a_held_dispatch(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    """An older unreadable version is ignored; a newer one stops the dispatch."""
    dispatch_id = _create_running(dispatch_server, t0)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    held = dispatch_server.raw_dispatches(MICROGRID_ID)[0]

    def broken(update_time: datetime) -> dispatch_pb2.Dispatch:
        message = dispatch_pb2.Dispatch()
        message.CopyFrom(held)
        message.data.recurrence.freq = dispatch_pb2.RecurrenceRule.FREQUENCY_HOURLY
        message.data.recurrence.interval = 0  # invalid with a frequency
        message.metadata.update_time.FromDatetime(update_time.replace(tzinfo=None))
        return message

    dispatch_server.insert_raw(MICROGRID_ID, broken(t0 - timedelta(hours=1)))
    await settle(hass, 0.3)
    assert dispatch_id in coordinator.dispatches()
    assert coordinator.malformed == {}
    assert recorder.kinds() == ["started"]

    dispatch_server.insert_raw(MICROGRID_ID, broken(t0 + timedelta(seconds=1)))
    await wait_for(hass, lambda: dispatch_id not in coordinator.dispatches(), "skipped")
    assert set(coordinator.malformed) == {dispatch_id}
    assert recorder.kinds() == ["started", "stopped"]
