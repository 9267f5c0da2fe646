"""The promise automations rely on: every `started` gets exactly one `stopped`.

Stated as a user sees it (bus events, entity states), across reloads,
restarts, HA's stop, removal, and the upgrade from the previous version.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime, timedelta
from typing import Any
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from frequenz.client.dispatch.recurrence import Frequency, RecurrenceRule
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import (
    EVENT_HOMEASSISTANT_FINAL_WRITE,
    EVENT_HOMEASSISTANT_STOP,
)
from homeassistant.core import CoreState, HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.storage import Store
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.frequenz_dispatch.coordinator import FrequenzDispatchCoordinator
from custom_components.frequenz_dispatch.storage import SAVE_DELAY
from dispatch_sim.server import DispatchSimulator

from .common import (
    MICROGRID_ID,
    EventRecorder,
    create_dispatch,
    go_to,
    settle,
    setup_and_follow,
    setup_entry,
    wait_for,
)
from .conftest import DOMAIN

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def _sensor(hass: HomeAssistant, entry_id: str, dispatch_id: int) -> Any:
    entity_id = er.async_get(hass).async_get_entity_id(
        "binary_sensor", DOMAIN, f"{MICROGRID_ID}_dispatch_{dispatch_id}"
    )
    assert entity_id is not None
    state = hass.states.get(entity_id)
    assert state is not None
    return state


async def _reload(hass: HomeAssistant, entry_id: str) -> FrequenzDispatchCoordinator:
    assert await hass.config_entries.async_reload(entry_id)
    await hass.async_block_till_done()
    entry = hass.config_entries.async_get_entry(entry_id)
    assert entry is not None
    assert entry.state is ConfigEntryState.LOADED
    coordinator: FrequenzDispatchCoordinator = entry.runtime_data
    return coordinator


async def test_a_long_merged_run_goes_on_across_reloads(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    """Touching hourly windows for 60 days are one run: reloads do not restart it.

    The run's start, computed at a later instant, lies later (the walk back
    through touching windows is bounded); it is still the same run.
    """
    every_hour = RecurrenceRule(
        frequency=Frequency.DAILY, interval=1, byhours=list(range(24))
    )
    long = create_dispatch(
        dispatch_server,
        start_time=t0 - 60 * DAY,
        duration=HOUR,
        recurrence=every_hour,
    )
    coordinator, recorder = await setup_and_follow(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    [started] = recorder.of("started")
    window_start = _sensor(hass, entry_id, long).attributes["window_start"]
    for hours in (3, 30, 300):
        await go_to(hass, freezer, t0 + hours * HOUR)
        await _reload(hass, entry_id)
        assert recorder.kinds(long) == ["started"]
        state = _sensor(hass, entry_id, long)
        assert state.state == "on"
        assert state.attributes["window_start"] == window_start
    coordinator = hass.config_entries.async_get_entry(entry_id).runtime_data  # type: ignore[union-attr]
    dispatch_server.delete(coordinator.microgrid_id, long)
    await wait_for(hass, lambda: recorder.kinds(long)[-1:] == ["deleted"], "deleted")
    [stopped] = recorder.of("stopped")
    assert stopped["run_id"] == started["run_id"]
    assert stopped["window_start"] == started["window_start"]


@pytest.mark.parametrize("at_setup", [True, False])
async def test_an_open_ended_dispatch_whose_rule_never_occurs_runs(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
    at_setup: bool,
) -> None:
    """Without a duration a dispatch ignores its rule: it runs from its start."""
    never = RecurrenceRule(
        frequency=Frequency.YEARLY, interval=4, bymonths=[2], bymonthdays=[30]
    )

    def create() -> int:
        return create_dispatch(
            dispatch_server, start_time=t0 - MINUTE, duration=None, recurrence=never
        )

    dispatch_id = create() if at_setup else None
    coordinator, recorder = await setup_and_follow(hass, entry_data, dispatch_server)
    if dispatch_id is None:
        dispatch_id = create()
        await wait_for(hass, lambda: len(recorder.kinds()) == 2, "events")
        await wait_for(
            hass,
            lambda: any(
                s.attributes.get("dispatch_id") == dispatch_id
                for s in hass.states.async_all("binary_sensor")
            ),
            "sensor",
        )
    expected = ["started"] if at_setup else ["created", "started"]
    assert recorder.kinds(dispatch_id) == expected
    assert coordinator.malformed == {}
    state = _sensor(hass, coordinator.config_entry.entry_id, dispatch_id)
    assert state.state == "on"
    assert state.attributes["window_start"] == (t0 - MINUTE).isoformat()


async def test_started_and_stopped_carry_one_run_id_across_a_restart(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    """An automation can pair (or de-duplicate) events by `run_id`."""
    running = create_dispatch(
        dispatch_server, start_time=t0 - MINUTE, duration=10 * MINUTE
    )
    coordinator, recorder = await setup_and_follow(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)  # HA stops: entries stay loaded
    await hass.async_block_till_done()
    await _reload(hass, entry_id)  # ... and come up again
    await go_to(hass, freezer, t0 + 9 * MINUTE)
    assert recorder.kinds(running) == ["started", "stopped"]
    started, stopped = recorder.of("started")[0], recorder.of("stopped")[0]
    assert started["run_id"] == stopped["run_id"]
    assert started["run_id"].startswith(f"{running}@{started['window_start']}#")


async def test_an_upgraded_install_repeats_no_start(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    hass_storage: dict[str, Any],
    t0: datetime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The previous version kept the told runs in the dispatch cache: read once."""
    running = create_dispatch(
        dispatch_server, start_time=t0 - MINUTE, duration=10 * MINUTE
    )
    coordinator, recorder = await setup_and_follow(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    assert await hass.config_entries.async_unload(entry_id)
    await hass.async_block_till_done()
    key = f"{DOMAIN}.{entry_id}"
    # The previous version's files: runs in the cache, no store of their own.
    del hass_storage[f"{key}.runs"]
    hass_storage[key]["data"]["runs"] = {
        str(running): [(t0 - MINUTE).isoformat(), (t0 + 9 * MINUTE).isoformat()],
        # Unreadable items are skipped (and logged); the rest is taken over.
        "98": ["not a time", None],
        "99": "garbage",
        "x": [(t0 - MINUTE).isoformat(), None],
    }
    assert await hass.config_entries.async_setup(entry_id)
    await hass.async_block_till_done()
    assert recorder.kinds(running) == ["started"]
    assert [
        r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()
    ] == [
        f"Skipping an unreadable stored run of dispatch {item!r}"
        for item in ("98", "99", "x")
    ]
    # Moved to the new store at once.
    assert list(hass_storage[f"{key}.runs"]["data"]["runs"]) == [str(running)]
    assert await hass.config_entries.async_remove(entry_id)
    await hass.async_block_till_done()
    assert recorder.kinds(running) == ["started", "stopped"]


async def test_a_removal_during_ha_stop_leaves_nothing_behind(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    hass_storage: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    t0: datetime,
) -> None:
    """HA's stop and a removal at once: one stop, awaited by both; no file after.

    The stop's last save is slow (a slow disk): the removal must wait for it,
    or that save lands after the removal and leaves the file behind.
    """
    running = create_dispatch(
        dispatch_server, start_time=t0 - MINUTE, duration=10 * MINUTE
    )
    coordinator, recorder = await setup_and_follow(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    gate = asyncio.Event()
    original = Store.async_save

    async def slow_save(store: Store[Any], data: Any) -> None:
        if store.key == f"{DOMAIN}.{entry_id}":
            await gate.wait()
        await original(store, data)

    monkeypatch.setattr(Store, "async_save", slow_save)
    # (HA's state stays `running`: the test harness's storage mock does not
    # model the writes HA defers to its final write while stopping.)
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
    remove = hass.async_create_task(hass.config_entries.async_remove(entry_id))
    for _ in range(50):  # not block_till_done: the stop waits for the gate
        await asyncio.sleep(0)
    gate.set()
    await remove
    await hass.async_block_till_done()
    hass.bus.async_fire(EVENT_HOMEASSISTANT_FINAL_WRITE)
    await hass.async_block_till_done()
    assert [key for key in hass_storage if key.startswith(f"{DOMAIN}.")] == []
    assert recorder.kinds(running) == ["started", "stopped"]


async def test_a_created_dispatch_that_starts_now_is_returned_running(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    coordinator, _recorder = await setup_and_follow(hass, entry_data, dispatch_server)
    created = await hass.services.async_call(
        DOMAIN,
        "create_dispatch",
        {
            "config_entry_id": coordinator.config_entry.entry_id,
            "type": "BATTERY_CHARGE",
            "start_time": t0.isoformat(),
            "duration": {"minutes": 15},
            "target": [1],
        },
        blocking=True,
        return_response=True,
    )
    assert created is not None
    assert created["window_start"] == t0.isoformat()
    assert created["window_end"] == (t0 + 15 * MINUTE).isoformat()


async def test_a_second_stop_waits_for_the_first(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    hass_storage: dict[str, Any],
) -> None:
    """Whoever asks to stop returns only once the final save has landed."""
    recorder = EventRecorder().attach(hass)
    entry = await setup_entry(hass, entry_data)
    coordinator: FrequenzDispatchCoordinator = entry.runtime_data
    first = hass.async_create_task(coordinator.async_stop())
    await asyncio.sleep(0)
    await coordinator.async_stop()
    assert first.done()
    assert f"{DOMAIN}.{entry.entry_id}" in hass_storage
    assert recorder.kinds() == []


async def _crash_and_restart(
    hass: HomeAssistant, entry_id: str, hass_storage: dict[str, Any]
) -> None:
    """A crash: the entry comes back from what is on disk right now."""
    on_disk = {
        key: copy.deepcopy(value)
        for key, value in hass_storage.items()
        if key.startswith(f"{DOMAIN}.")
    }
    assert await hass.config_entries.async_unload(entry_id)  # (its writes are lost)
    await hass.async_block_till_done()
    for key in [key for key in hass_storage if key.startswith(f"{DOMAIN}.")]:
        del hass_storage[key]
    hass_storage.update(on_disk)
    assert await hass.config_entries.async_setup(entry_id)
    await hass.async_block_till_done()


@pytest.mark.parametrize("change", ["delete", "deactivate"])
@pytest.mark.parametrize("api_up", [True, False])
async def test_a_crash_right_after_a_change_stopped_a_run_repeats_nothing(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    hass_storage: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
    change: str,
    api_up: bool,
) -> None:
    """Stopped by a deletion or deactivation, then killed before the cache's save.

    The dispatch cache still holds the running version; the run must not be
    started again from it, with the API up or down.
    """
    running = create_dispatch(
        dispatch_server, start_time=t0 - MINUTE, duration=30 * MINUTE
    )
    coordinator, recorder = await setup_and_follow(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    await go_to(hass, freezer, t0 + timedelta(seconds=SAVE_DELAY + 1))  # cache saved
    if change == "delete":
        dispatch_server.delete(MICROGRID_ID, running)
    else:
        dispatch_server.update(MICROGRID_ID, running, active=False)
    await wait_for(hass, lambda: "stopped" in recorder.kinds(running), "stopped")
    await hass.async_block_till_done()
    told_before = recorder.kinds(running)
    if not api_up:
        await dispatch_server.stop()
    await _crash_and_restart(hass, entry_id, hass_storage)
    await settle(hass, 0.3)
    assert recorder.kinds(running) == told_before
    if not api_up:
        # Nothing runs: the sensors stay off during the outage.
        assert hass.states.get("sensor.microgrid_42_running_dispatches").state == "0"  # type: ignore[union-attr]


async def test_a_write_queued_when_ha_stops_still_lands(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    hass_storage: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    """HA cancels background tasks as it stops: the told runs must still land."""
    first = create_dispatch(
        dispatch_server, start_time=t0 + MINUTE, duration=10 * MINUTE
    )
    second = create_dispatch(
        dispatch_server, start_time=t0 + 2 * MINUTE, duration=10 * MINUTE
    )
    coordinator, recorder = await setup_and_follow(hass, entry_data, dispatch_server)
    key = f"{DOMAIN}.{coordinator.config_entry.entry_id}.runs"
    gate = asyncio.Event()
    original: Any = Store._async_write_data

    async def slow_write(store: Store[Any], *args: Any) -> None:
        # (HA 2025.6 passes the path too.)
        if store.key == key:
            await gate.wait()  # a slow disk
        await original(store, *args)

    # Patched for this block only: the storage fixture's own patch of the same
    # method must be restored after it.
    with patch.object(Store, "_async_write_data", slow_write):
        for when in (t0 + MINUTE, t0 + 2 * MINUTE):  # a write in flight, one queued
            freezer.move_to(when)
            async_fire_time_changed(hass, when)
            for _ in range(20):
                await asyncio.sleep(0)
        assert recorder.kinds() == ["started", "started"]
        # HA's stop sequence: background tasks cancelled, `stopping`, then its
        # final write.
        for task in list(hass._background_tasks):
            task.cancel("Home Assistant is stopping")
        await asyncio.sleep(0)
        hass.set_state(CoreState.stopping)
        hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
        for _ in range(20):
            await asyncio.sleep(0)
        gate.set()
        await hass.async_block_till_done()
        hass.set_state(CoreState.final_write)
        hass.bus.async_fire(EVENT_HOMEASSISTANT_FINAL_WRITE)
        await hass.async_block_till_done()
        hass.set_state(CoreState.running)
        assert sorted(hass_storage[key]["data"]["runs"]) == sorted(
            [str(first), str(second)]
        )
