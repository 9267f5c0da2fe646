"""Persisted state: reloads, restarts and outages never miss or repeat a run."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime, timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from frequenz.api.dispatch.v1.dispatch_pb2 import Dispatch
from frequenz.client.dispatch.recurrence import (
    EndCriteria,
    Frequency,
    RecurrenceRule,
    Weekday,
)
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import (
    EVENT_HOMEASSISTANT_FINAL_WRITE,
    EVENT_HOMEASSISTANT_STOP,
    STATE_OFF,
    STATE_ON,
)
from homeassistant.core import CoreState, HomeAssistant
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util
import pytest

from custom_components.frequenz_dispatch.coordinator import FrequenzDispatchCoordinator
from custom_components.frequenz_dispatch.storage import SAVE_DELAY
from dispatch_sim.server import DispatchSimulator

from .common import (
    MICROGRID_ID,
    EventRecorder,
    create_dispatch as _create,
    go_to as _go_to,
    settle,
    setup_and_follow as _setup,
    setup_entry,
    step_clock,
    wait_for,
)
from .conftest import DOMAIN

MINUTE = timedelta(minutes=1)


def _state(hass: HomeAssistant, entry_id: str, key: str) -> str | None:
    registry = er.async_get(hass)
    platform = (
        "sensor" if key in ("next_start", "running_dispatches") else ("binary_sensor")
    )
    entry = hass.config_entries.async_get_entry(entry_id)
    assert entry is not None
    unique_id = f"{entry.data['microgrid_id']}_{key}"
    entity_id = registry.async_get_entity_id(platform, DOMAIN, unique_id)
    if entity_id is None:
        return None
    state = hass.states.get(entity_id)
    return None if state is None else state.state


def _told(hass_storage: dict[str, Any], entry_id: str) -> list[str]:
    """The ids of the runs on disk as told (the ledger's store)."""
    return list(hass_storage[f"{DOMAIN}.{entry_id}.runs"]["data"]["runs"])


def _connected(coordinator: FrequenzDispatchCoordinator) -> bool:
    return coordinator.connected


async def _reload(hass: HomeAssistant, entry_id: str) -> None:
    assert await hass.config_entries.async_unload(entry_id)
    await hass.async_block_till_done()


async def _load(hass: HomeAssistant, entry_id: str) -> FrequenzDispatchCoordinator:
    assert await hass.config_entries.async_setup(entry_id)
    await hass.async_block_till_done()
    entry = hass.config_entries.async_get_entry(entry_id)
    assert entry is not None
    assert entry.state is ConfigEntryState.LOADED
    coordinator: FrequenzDispatchCoordinator = entry.runtime_data
    return coordinator


async def test_setup_from_the_cache_while_the_api_is_unreachable(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    running = _create(dispatch_server, start_time=t0 - MINUTE, duration=30 * MINUTE)
    later = _create(dispatch_server, start_time=t0 + 5 * MINUTE, duration=MINUTE)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    await _reload(hass, entry_id)
    await dispatch_server.stop()
    coordinator = await _load(hass, entry_id)
    # Entities with their states, the connection sensor off; nothing repeated.
    assert not coordinator.connected
    assert _state(hass, entry_id, "api_connection") == STATE_OFF
    assert _state(hass, entry_id, f"dispatch_{running}") == STATE_ON
    assert _state(hass, entry_id, f"dispatch_{later}") == STATE_OFF
    assert _state(hass, entry_id, "running_dispatches") == "1"
    assert recorder.kinds() == ["started"]
    # The timer is armed: the run starts on time during the outage.
    await _go_to(hass, freezer, t0 + 5 * MINUTE)
    assert recorder.kinds(later) == ["started"]
    assert _state(hass, entry_id, f"dispatch_{later}") == STATE_ON
    # Back online: the listing is reconciled against the cache.
    added = _create(dispatch_server, start_time=t0 + 60 * MINUTE, duration=MINUTE)
    await dispatch_server.start()
    for _ in range(30):
        await _go_to(hass, freezer, dt_util.utcnow() + timedelta(seconds=10))
        if _connected(coordinator):
            break
        await settle(hass, 0.1)
    await wait_for(hass, lambda: recorder.kinds(added) == ["created"], "created")
    assert _state(hass, entry_id, "api_connection") == STATE_ON
    assert recorder.kinds(running) == ["started"]


async def test_changes_during_a_reload_are_announced(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    changed = _create(
        dispatch_server,
        start_time=t0 - MINUTE,
        duration=30 * MINUTE,
        payload={"power_w": 5000},
    )
    gone = _create(dispatch_server, start_time=t0 + 5 * MINUTE, duration=MINUTE)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    await _reload(hass, entry_id)
    freezer.tick(1)
    dispatch_server.update(MICROGRID_ID, changed, payload={"power_w": 1000})
    dispatch_server.delete(MICROGRID_ID, gone)
    added = _create(dispatch_server, start_time=t0 + 5 * MINUTE, duration=MINUTE)
    await _load(hass, entry_id)
    assert recorder.kinds(changed) == ["started", "updated"]
    assert recorder.of("updated")[0]["payload"] == {"power_w": 1000}
    assert recorder.kinds(gone) == ["deleted"]
    assert recorder.kinds(added) == ["created"]


async def test_a_run_that_ended_while_unloaded_stops_from_the_cache(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    short = _create(dispatch_server, start_time=t0 - MINUTE, duration=5 * MINUTE)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    await _reload(hass, entry_id)
    await dispatch_server.stop()
    freezer.move_to(t0 + 10 * MINUTE)
    await _load(hass, entry_id)
    assert recorder.kinds(short) == ["started", "stopped"]
    stopped = recorder.of("stopped")[0]
    assert stopped["window_end"] == (t0 + 4 * MINUTE).isoformat()
    # Its sensor is gone: the dispatch has nothing to come.
    assert _state(hass, entry_id, f"dispatch_{short}") is None


async def test_removing_the_entry_mid_run_stops_the_run(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    running = _create(dispatch_server, start_time=t0 - MINUTE, duration=30 * MINUTE)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    assert await hass.config_entries.async_remove(coordinator.config_entry.entry_id)
    await hass.async_block_till_done()
    assert recorder.kinds(running) == ["started", "stopped"]


async def test_saves_are_delayed_and_coalesced(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    await _go_to(hass, freezer, t0 + timedelta(seconds=SAVE_DELAY + 1))
    saves = coordinator.store.saves
    for n in range(5):
        _create(dispatch_server, start_time=t0 + (n + 5) * MINUTE, duration=MINUTE)
    await wait_for(hass, recorder.count_is(5), "created")
    assert coordinator.store.saves == saves
    await _go_to(hass, freezer, dt_util.utcnow() + timedelta(seconds=SAVE_DELAY))
    await settle(hass, 0.1)
    assert coordinator.store.saves == saves + 1


async def test_a_long_outage_raises_a_repair_issue_that_clears_itself(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    coordinator, _recorder = await _setup(hass, entry_data, dispatch_server)
    issue_id = f"api_unreachable_{coordinator.config_entry.entry_id}"
    issues = ir.async_get(hass)
    await dispatch_server.stop()
    await wait_for(hass, lambda: not coordinator.connected, "disconnected")
    await _go_to(hass, freezer, t0 + timedelta(hours=5, minutes=59))
    assert issues.async_get_issue(DOMAIN, issue_id) is None
    await _go_to(hass, freezer, t0 + timedelta(hours=6, minutes=1))
    issue = issues.async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_key == "api_unreachable"
    await dispatch_server.start()
    now = t0 + timedelta(hours=6, minutes=1)
    await step_clock(
        hass,
        freezer,
        now,
        timedelta(seconds=10),
        now + timedelta(minutes=5),
        done=lambda: _connected(coordinator),
        real=0.05,
    )
    await wait_for(
        hass, lambda: issues.async_get_issue(DOMAIN, issue_id) is None, "cleared"
    )


async def test_setup_with_an_auth_error_runs_from_the_cache_and_asks_for_a_key(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    running = _create(dispatch_server, start_time=t0 - MINUTE, duration=30 * MINUTE)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    await _reload(hass, entry_id)
    dispatch_server.api_key = "rotated"
    coordinator = await _load(hass, entry_id)
    assert _state(hass, entry_id, f"dispatch_{running}") == STATE_ON
    assert not coordinator.connected
    flows = hass.config_entries.flow.async_progress()
    assert [flow["context"]["source"] for flow in flows] == ["reauth"]
    assert recorder.kinds() == ["started"]


async def test_a_dispatch_too_large_to_receive_is_skipped_and_named(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    """An oversized stream message: the stream recovers by re-listing."""
    held = _create(dispatch_server, start_time=t0 - MINUTE, duration=None)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    issue_id = f"dispatch_unlistable_{coordinator.config_entry.entry_id}"
    (raw,) = dispatch_server.raw_dispatches(MICROGRID_ID)
    raw.data.payload.update({"blob": "x" * (17 * 1024 * 1024)})
    raw.metadata.update_time.FromDatetime((t0 + MINUTE).replace(tzinfo=None))
    dispatch_server.insert_raw(MICROGRID_ID, raw)
    now = await step_clock(
        hass,
        freezer,
        t0,
        timedelta(seconds=5),
        t0 + timedelta(seconds=150),
        done=lambda: ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None,
        real=0.05,
    )
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders == {
        "microgrid_id": str(MICROGRID_ID),
        "ids": str(held),
        "unnamed": "0",
    }
    # Its content is unknown: it stops, like any unreadable version.
    assert held not in coordinator.dispatches()
    assert recorder.kinds(held) == ["started", "stopped"]
    # A normal dispatch still arrives on the recovered stream.
    later = _create(dispatch_server, start_time=t0 + 60 * MINUTE, duration=MINUTE)
    await wait_for(hass, lambda: later in coordinator.dispatches(), "stream recovered")
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None

    # Small again, it arrives; the next listing (the daily one) clears the issue.
    del raw.data.payload["blob"]
    raw.metadata.update_time.FromDatetime((now + MINUTE).replace(tzinfo=None))
    dispatch_server.insert_raw(MICROGRID_ID, raw)
    await wait_for(hass, lambda: held in coordinator.dispatches(), "small again")
    assert recorder.kinds(held) == ["started", "stopped", "created", "started"]
    now += timedelta(hours=26)
    await _go_to(hass, freezer, now)
    await wait_for(
        hass,
        lambda: ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None,
        "the repair issue to clear",
    )


async def test_starts_and_stops_are_saved_at_once(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    hass_storage: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    """A crash (no clean stop) right after a `started` or `stopped` repeats nothing.

    The told runs are on disk as soon as their events went out, without the
    dispatch cache's save delay and without HA stopping.
    """
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    running = _create(dispatch_server, start_time=t0 - MINUTE, duration=2 * MINUTE)
    await wait_for(hass, lambda: recorder.kinds(running) == ["created", "started"])
    await hass.async_block_till_done()
    assert _told(hass_storage, entry_id) == [str(running)]
    await _go_to(hass, freezer, t0 + MINUTE)
    assert recorder.kinds(running) == ["created", "started", "stopped"]
    await hass.async_block_till_done()
    assert _told(hass_storage, entry_id) == []


async def test_runs_that_end_or_start_during_ha_shutdown_are_reported_once(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    hass_storage: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    """HA's stop sequence: the stream and the timer stop before the last save."""
    ending = _create(dispatch_server, start_time=t0 - MINUTE, duration=2 * MINUTE)
    starting = _create(dispatch_server, start_time=t0 + MINUTE, duration=30 * MINUTE)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    key = f"{DOMAIN}.{entry_id}"
    hass.set_state(CoreState.stopping)
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
    await hass.async_block_till_done()
    # Seconds into the shutdown, one run ends and another starts: the entry
    # no longer reports anything, so the saved state stays true.
    await _go_to(hass, freezer, t0 + 2 * MINUTE)
    assert recorder.kinds() == ["started"]
    hass.bus.async_fire(EVENT_HOMEASSISTANT_FINAL_WRITE)
    await hass.async_block_till_done()
    on_disk = dict(hass_storage[key])
    runs_on_disk = dict(hass_storage[f"{key}.runs"])
    assert _told(hass_storage, entry_id) == [str(ending)]
    # "Restart": the entry starts again from what was written at the final write.
    await _reload(hass, entry_id)
    hass_storage[key] = on_disk
    hass_storage[f"{key}.runs"] = runs_on_disk
    hass.set_state(CoreState.running)
    await _load(hass, entry_id)
    assert recorder.kinds(ending) == ["started", "stopped"]
    assert recorder.kinds(starting) == ["started"]


async def test_an_older_save_never_lands_after_a_newer_one(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    hass_storage: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    monkeypatch: pytest.MonkeyPatch,
    t0: datetime,
) -> None:
    """A slow delayed save and the save of an unload: the newest is kept."""
    first = _create(dispatch_server, start_time=t0 + MINUTE, duration=30 * MINUTE)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    key = f"{DOMAIN}.{entry_id}"
    gate = asyncio.Event()
    writes: list[int] = []
    original = Store.async_save

    async def slow_first_save(store: Store[Any], data: Any) -> None:
        if store.key == key:
            writes.append(len(data["dispatches"]))
            if len(writes) == 1:
                await gate.wait()  # the disk is slow this time
        await original(store, data)

    monkeypatch.setattr(Store, "async_save", slow_first_save)
    await _go_to(hass, freezer, t0 + timedelta(seconds=SAVE_DELAY + 1))
    await wait_for(hass, lambda: len(writes) == 1, "delayed save")
    second = _create(dispatch_server, start_time=t0 + MINUTE, duration=MINUTE)
    await wait_for(hass, lambda: recorder.kinds(second) == ["created"], "created")
    unload = hass.async_create_task(hass.config_entries.async_unload(entry_id))
    for _ in range(50):  # not block_till_done: the unload waits for the gate
        await asyncio.sleep(0)
    gate.set()
    assert await unload
    await hass.async_block_till_done()
    assert writes == [1, 2]
    assert len(hass_storage[key]["data"]["dispatches"]) == 2
    await dispatch_server.stop()
    coordinator = await _load(hass, entry_id)
    assert set(coordinator.dispatches()) == {first, second}


async def test_a_save_under_way_never_writes_after_removal(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    hass_storage: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    monkeypatch: pytest.MonkeyPatch,
    t0: datetime,
) -> None:
    coordinator, _recorder = await _setup(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    key = f"{DOMAIN}.{entry_id}"
    gate = asyncio.Event()
    writes: list[int] = []
    original = Store.async_save

    async def slow_first_save(store: Store[Any], data: Any) -> None:
        writes.append(1)
        if len(writes) == 1:
            await gate.wait()
        await original(store, data)

    monkeypatch.setattr(Store, "async_save", slow_first_save)
    await _go_to(hass, freezer, t0 + timedelta(seconds=SAVE_DELAY + 1))
    await wait_for(hass, lambda: len(writes) == 1, "delayed save")
    remove = hass.async_create_task(hass.config_entries.async_remove(entry_id))
    for _ in range(50):  # not block_till_done: the unload waits for the gate
        await asyncio.sleep(0)
    gate.set()
    await remove
    await hass.async_block_till_done()
    assert key not in hass_storage


async def _raise_outage_issue(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    freezer: FrozenDateTimeFactory,
    coordinator: FrequenzDispatchCoordinator,
    t0: datetime,
) -> str:
    issue_id = f"api_unreachable_{coordinator.config_entry.entry_id}"
    await dispatch_server.stop()
    await wait_for(hass, lambda: not coordinator.connected, "disconnected")
    await _go_to(hass, freezer, t0 + timedelta(hours=6, minutes=1))
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
    return issue_id


async def test_a_reload_with_the_api_back_clears_the_outage_issue(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    coordinator, _recorder = await _setup(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    issue_id = await _raise_outage_issue(
        hass, dispatch_server, freezer, coordinator, t0
    )
    await _reload(hass, entry_id)
    await dispatch_server.start()
    for _ in range(10):  # gRPC may hold back a reconnect for a while
        coordinator = await _load(hass, entry_id)
        if coordinator.connected:
            break
        await _reload(hass, entry_id)
        await settle(hass, 0.5)
    assert coordinator.connected
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


async def test_removing_the_entry_removes_its_repair_issues(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    coordinator, _recorder = await _setup(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    await _raise_outage_issue(hass, dispatch_server, freezer, coordinator, t0)
    for prefix in ("dispatch_unlistable", "duplicate_microgrid"):
        ir.async_create_issue(
            hass,
            DOMAIN,
            f"{prefix}_{entry_id}",
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key=prefix,
        )
    assert await hass.config_entries.async_remove(entry_id)
    await hass.async_block_till_done()
    issues = ir.async_get(hass).issues
    assert [key for key in issues if key[0] == DOMAIN] == []


async def test_a_store_file_of_the_wrong_shape_never_blocks_setup(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    hass_storage: dict[str, Any],
    t0: datetime,
) -> None:
    """Unreadable items are skipped; a run whose dispatch is unreadable stops."""
    running = _create(dispatch_server, start_time=t0 - MINUTE, duration=30 * MINUTE)
    kept = _create(dispatch_server, start_time=t0 + 5 * MINUTE, duration=MINUTE)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    key = f"{DOMAIN}.{entry_id}"
    await _reload(hass, entry_id)
    data = hass_storage[key]["data"]
    runs = hass_storage[f"{key}.runs"]["data"]["runs"]
    assert list(runs) == [str(running)]
    # The running dispatch's stored forms are damaged; junk runs are added.
    data["dispatches"] = [
        encoded
        for encoded in data["dispatches"]
        if Dispatch.FromString(base64.b64decode(encoded)).metadata.dispatch_id
        != running
    ] + ["!!not base64!!", 17]
    runs[str(running)]["dispatch"] = "!!not base64!!"
    runs.update({"x": "bad", "7": [1, 2], "8": "ab", "9": None})
    data["saved_at"] = 5
    await dispatch_server.stop()
    await _load(hass, entry_id)
    assert recorder.kinds(running) == ["started", "stopped"]
    assert recorder.of("stopped")[0]["window_start"] == (t0 - MINUTE).isoformat()
    assert _state(hass, entry_id, f"dispatch_{kept}") == STATE_OFF
    # Not a mapping at all: loads as if there was nothing (a first setup).
    await _reload(hass, entry_id)
    hass_storage[key]["data"] = ["not", "a", "mapping"]
    await dispatch_server.start()
    for _ in range(10):  # gRPC may hold back a reconnect for a while
        coordinator = await _load(hass, entry_id)
        if coordinator.connected:
            break
        await _reload(hass, entry_id)
        await settle(hass, 0.5)
    assert _state(hass, entry_id, f"dispatch_{kept}") == STATE_OFF


async def test_a_deletion_survives_a_reload_against_a_lagging_listing(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    """The stream said deleted; a listing that still has it cannot revive it."""
    gone = _create(dispatch_server, start_time=t0 + 5 * MINUTE, duration=MINUTE)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    (raw,) = dispatch_server.raw_dispatches(MICROGRID_ID)
    dispatch_server.delete(MICROGRID_ID, gone)
    await wait_for(hass, lambda: recorder.kinds(gone) == ["deleted"], "deleted")
    await _reload(hass, entry_id)
    dispatch_server.insert_raw(MICROGRID_ID, raw, notify=False)  # lagging
    coordinator = await _load(hass, entry_id)
    assert coordinator.connected
    assert recorder.kinds(gone) == ["deleted"]
    assert gone not in coordinator.dispatches()


async def test_a_start_held_during_boot_is_reported_after_an_unload(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    """Unloaded before HA has started: its held `started` comes at the next load."""
    running = _create(dispatch_server, start_time=t0 - MINUTE, duration=30 * MINUTE)
    hass.set_state(CoreState.not_running)  # boot again, as bootstrap does
    recorder = EventRecorder().attach(hass)
    entry = await setup_entry(hass, entry_data)
    assert recorder.kinds() == []  # held until HA has started
    await _reload(hass, entry.entry_id)
    await hass.async_start()
    await hass.async_block_till_done()
    await _load(hass, entry.entry_id)
    assert recorder.kinds(running) == ["started"]


async def test_far_count_rules_from_the_cache_are_prepared_off_the_loop(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    """A stored rule whose count ends millennia ahead is compiled in the executor."""
    rule = RecurrenceRule(
        frequency=Frequency.YEARLY,
        interval=1,
        bymonths=[2],
        bymonthdays=[29],
        byweekdays=[Weekday.MONDAY],
        end_criteria=EndCriteria(count=100),  # Monday 29 February: ~2800 years
    )
    far = _create(
        dispatch_server, start_time=t0 + MINUTE, duration=MINUTE, recurrence=rule
    )
    coordinator, _recorder = await _setup(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    await _reload(hass, entry_id)
    await dispatch_server.stop()
    coordinator = await _load(hass, entry_id)
    assert not coordinator.connected
    assert not coordinator.dispatches()[far].schedule.needs_preparation


async def test_runs_released_at_ha_start_are_saved(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    hass_storage: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    """A `started` held during boot goes out at HA start, then is saved as sent.

    Otherwise a crash after that (no clean stop) would send it again.
    """
    running = _create(dispatch_server, start_time=t0 - MINUTE, duration=30 * MINUTE)
    hass.set_state(CoreState.not_running)  # boot again, as bootstrap does
    recorder = EventRecorder().attach(hass)
    entry = await setup_entry(hass, entry_data)
    key = f"{DOMAIN}.{entry.entry_id}.runs"
    await _go_to(hass, freezer, t0 + timedelta(seconds=SAVE_DELAY + 1))
    await settle(hass, 0.1)
    assert recorder.kinds() == []  # held until HA has started
    assert key not in hass_storage
    await hass.async_start()
    await hass.async_block_till_done()
    assert recorder.kinds(running) == ["started"]
    assert _told(hass_storage, entry.entry_id) == [str(running)]


@pytest.mark.parametrize(
    "data", [["not", "a", "mapping"], {"runs": {}, "gone": {"x": None, "7": "!!"}}]
)
async def test_a_run_file_of_the_wrong_shape_never_blocks_setup(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    hass_storage: dict[str, Any],
    t0: datetime,
    data: Any,
) -> None:
    """Unreadable told runs are skipped: the entry loads, nothing is lost."""
    running = _create(dispatch_server, start_time=t0 - MINUTE, duration=30 * MINUTE)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    await _reload(hass, entry_id)
    hass_storage[f"{DOMAIN}.{entry_id}.runs"]["data"] = data
    await _load(hass, entry_id)
    # Nothing told is known any more: the run is told again, once.
    assert recorder.kinds(running) == ["started", "started"]
    assert _state(hass, entry_id, f"dispatch_{running}") == STATE_ON


async def test_a_failing_write_of_the_runs_is_logged_and_the_entry_goes_on(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    t0: datetime,
) -> None:
    later = _create(dispatch_server, start_time=t0 + MINUTE, duration=MINUTE)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    original = Store.async_save

    async def full_disk(store: Store[Any], data: Any) -> None:
        if store.key.endswith(".runs"):
            raise OSError("No space left on device")
        await original(store, data)

    monkeypatch.setattr(Store, "async_save", full_disk)
    await _go_to(hass, freezer, t0 + MINUTE)
    await _go_to(hass, freezer, t0 + 2 * MINUTE)
    assert recorder.kinds(later) == ["started", "stopped"]
    assert "Cannot save the runs" in caplog.text
    assert coordinator.config_entry.state is ConfigEntryState.LOADED
