"""The promise automations rely on: every `started` gets exactly one `stopped`.

Stated as a user sees it (bus events, entity states), across reloads,
restarts, HA's stop, removal, and the upgrade from the previous version.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from frequenz.client.dispatch.recurrence import Frequency, RecurrenceRule
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import (
    EVENT_HOMEASSISTANT_FINAL_WRITE,
    EVENT_HOMEASSISTANT_STOP,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.storage import Store
import pytest

from custom_components.frequenz_dispatch.coordinator import FrequenzDispatchCoordinator
from dispatch_sim.server import DispatchSimulator

from .common import (
    EventRecorder,
    create_dispatch,
    go_to,
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
        "binary_sensor", DOMAIN, f"{entry_id}_dispatch_{dispatch_id}"
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
    assert (
        started["run_id"] == stopped["run_id"] == f"{running}@{started['window_start']}"
    )


async def test_an_upgraded_install_repeats_no_start(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    hass_storage: dict[str, Any],
    t0: datetime,
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
        str(running): [(t0 - MINUTE).isoformat(), (t0 + 9 * MINUTE).isoformat()]
    }
    assert await hass.config_entries.async_setup(entry_id)
    await hass.async_block_till_done()
    assert recorder.kinds(running) == ["started"]
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
