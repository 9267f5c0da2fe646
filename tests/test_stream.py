"""The connection as a user sees it: no missed change, no idle listings, no
deletion from a listing that failed.

All against the real simulator over gRPC; the clock is frozen and moved with
HA's timers (the stream and its keepalives run on real time).
"""

import asyncio
from datetime import datetime, timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_ON
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.frequenz_dispatch.const import DOMAIN
from custom_components.frequenz_dispatch.stream import RETRY_DELAYS
from dispatch_sim.server import DispatchSimulator

from .common import (
    MICROGRID_ID,
    EventRecorder,
    create_dispatch,
    create_running,
    go_to,
    settle,
    setup_and_follow,
    step_clock,
    wait_for,
)

SECOND = timedelta(seconds=1)
LIST = "ListMicrogridDispatches"
STREAM = "StreamMicrogridDispatches"


def _sensor(dispatch_id: int) -> str:
    return f"binary_sensor.microgrid_42_dispatch_{dispatch_id}_battery_charge"


def _state(hass: HomeAssistant, dispatch_id: int) -> str | None:
    state = hass.states.get(_sensor(dispatch_id))
    return None if state is None else state.state


def _connected(coordinator: Any) -> bool:
    return bool(coordinator.connected)  # a fresh read each time (not narrowed)


def _responses(server: DispatchSimulator, method: str) -> int:
    traffic = server.traffic().get(method)
    return 0 if traffic is None else traffic.responses


def _requests(server: DispatchSimulator, method: str) -> int:
    traffic = server.traffic().get(method)
    return 0 if traffic is None else traffic.requests


async def test_change_right_after_the_first_listing_is_seen(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    """The server subscribes the stream 0.5 s after the call arrives.

    Setup waits for it before listing, so a dispatch created just after the
    listing comes on the stream, without a re-list.
    """
    dispatch_server.subscribe_delay = 0.5
    recorder = EventRecorder().attach(hass)
    entry = MockConfigEntry(domain=DOMAIN, data=entry_data)
    entry.add_to_hass(hass)
    # Not a task HA waits for: the test must move the clock meanwhile.
    setup = asyncio.ensure_future(hass.config_entries.async_setup(entry.entry_id))
    # The simulator's delay runs on the loop's (frozen) clock: move it on.
    tick, limit = timedelta(seconds=0.1), t0 + timedelta(seconds=10)
    now = await step_clock(
        hass,
        freezer,
        t0,
        tick,
        limit,
        done=lambda: _responses(dispatch_server, LIST) > 0,
        real=0.05,
    )
    assert _responses(dispatch_server, LIST) > 0, "no listing"
    # The first listing was answered: a change now.
    new_id = create_dispatch(
        dispatch_server, start_time=t0 + timedelta(hours=1), duration=None
    )

    def seen() -> bool:
        return setup.done() and "created" in recorder.kinds(new_id)

    await step_clock(hass, freezer, now, tick, limit, done=seen, real=0.05)
    assert seen(), "the new dispatch was not seen"
    assert entry.state is ConfigEntryState.LOADED
    assert _state(hass, new_id) is not None
    assert _requests(dispatch_server, LIST) == 1  # no re-list


async def test_an_idle_hour_costs_one_listing_and_keeps_one_stream(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    running = create_running(dispatch_server, t0)
    coordinator, recorder = await setup_and_follow(hass, entry_data, dispatch_server)
    for minute in range(1, 61):
        await go_to(hass, freezer, t0 + timedelta(minutes=minute))
    await settle(hass, 0.2)
    assert _requests(dispatch_server, LIST) == 1
    assert _requests(dispatch_server, STREAM) == 1
    assert dispatch_server.open_streams == 1
    # The stream has no deadline: it is not ended (and re-listed) every while.
    assert dispatch_server.open_stream_deadlines == [None]
    assert coordinator.connected
    assert recorder.kinds(running) == ["started", "stopped"]


async def test_one_safety_listing_a_day_on_the_same_stream(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    """About 24 h (± 1 h) after the last listing, it lists again; nothing else."""
    kept = create_dispatch(
        dispatch_server, start_time=t0 + timedelta(days=3), duration=None
    )
    _coordinator, recorder = await setup_and_follow(hass, entry_data, dispatch_server)
    now = await step_clock(
        hass, freezer, t0, timedelta(minutes=10), t0 + timedelta(hours=23)
    )
    await settle(hass, 0.1)
    assert _requests(dispatch_server, LIST) == 1
    # A change the stream never told (the simulator changes its data quietly).
    raw = dispatch_server.raw_dispatches(MICROGRID_ID)[0]
    raw.data.payload.update({"power_w": 5})
    raw.metadata.update_time.FromDatetime(now.replace(tzinfo=None))
    dispatch_server.insert_raw(MICROGRID_ID, raw, notify=False)
    await step_clock(
        hass, freezer, now, timedelta(minutes=2), t0 + timedelta(hours=25, minutes=1)
    )
    await wait_for(hass, lambda: "updated" in recorder.kinds(kept), "safety listing")
    assert _requests(dispatch_server, LIST) == 2
    assert _requests(dispatch_server, STREAM) == 1
    assert dispatch_server.open_streams == 1


async def test_a_quota_error_on_a_relist_deletes_nothing(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    """RESOURCE_EXHAUSTED "quota exceeded" is retried later, never reconciled."""
    first = create_running(dispatch_server, t0)
    second = create_running(dispatch_server, t0)
    coordinator, recorder = await setup_and_follow(hass, entry_data, dispatch_server)
    assert recorder.kinds() == ["started", "started"]
    recorder.clear()
    dispatch_server.exceed_quota(1000)
    await dispatch_server.break_streams()

    def relisted() -> bool:
        return dispatch_server.pending_failures != 1000

    now = await step_clock(
        hass, freezer, t0, SECOND, t0 + timedelta(minutes=1), relisted, real=0.05
    )
    assert relisted(), "no re-list was tried"
    # Keep retrying against the quota for a while.
    now = await step_clock(hass, freezer, now, 2 * SECOND, now + 60 * SECOND)
    await settle(hass, 0.2)
    assert recorder.kinds() == []
    assert _state(hass, first) == STATE_ON
    assert _state(hass, second) == STATE_ON
    assert not coordinator.connected
    # A failed listing stops there: no page halving down to one dispatch.
    failed = 1000 - dispatch_server.pending_failures
    assert failed <= 16

    # The quota lifts; meanwhile one dispatch was deleted.
    dispatch_server.exceed_quota(0)
    dispatch_server.delete(MICROGRID_ID, second)
    longest = RETRY_DELAYS[-1] * 1.5  # with the most jitter
    deadline = now + timedelta(seconds=longest + 10)
    await step_clock(
        hass,
        freezer,
        now,
        5 * SECOND,
        deadline,
        done=lambda: _connected(coordinator),
        real=0.05,
    )
    assert _connected(coordinator), "not retried after the quota lifted"
    await wait_for(hass, lambda: "deleted" in recorder.kinds(), "reconciled")
    assert recorder.kinds(second) == ["stopped", "deleted"]
    assert recorder.kinds(first) == []
    assert _state(hass, first) == STATE_ON
    assert _state(hass, second) is None
