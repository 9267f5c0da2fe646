"""Per-dispatch and per-type sensors come and go with what they show."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import freezegun.api as freezegun_api
from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import EVENT_STATE_CHANGED, STATE_OFF, STATE_ON
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity_platform import EntityPlatform
import pytest

from dispatch_sim.server import DispatchSimulator

from .common import (
    create_dispatch as _create,
    go_to as _go_to,
    setup_and_follow as _setup,
    wait_for,
)
from .conftest import DOMAIN, MICROGRID_ID

MINUTE = timedelta(minutes=1)


def _dispatch_entity(
    hass: HomeAssistant, entry_id: str, dispatch_id: int
) -> str | None:
    return er.async_get(hass).async_get_entity_id(
        "binary_sensor", DOMAIN, f"{MICROGRID_ID}_dispatch_{dispatch_id}"
    )


class StateLog:
    """Every state an entity is written with, in order (None: removed)."""

    def __init__(self, hass: HomeAssistant, entity_id: str) -> None:
        self.values: list[str | None] = []
        self._entity_id = entity_id
        hass.bus.async_listen(EVENT_STATE_CHANGED, self._changed)

    @callback
    def _changed(self, event: Event[EventStateChangedData]) -> None:
        if event.data["entity_id"] != self._entity_id:
            return
        new = event.data["new_state"]
        self.values.append(None if new is None else new.state)


async def test_a_dispatch_sensor_is_written_off_before_it_goes(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    """Automations with `to: "off"` see the end of the last run and a deletion."""
    ending = _create(dispatch_server, start_time=t0 - MINUTE, duration=5 * MINUTE)
    deleted = _create(dispatch_server, start_time=t0 - MINUTE, duration=30 * MINUTE)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    logs = {}
    for dispatch_id in (ending, deleted):
        entity_id = _dispatch_entity(hass, entry_id, dispatch_id)
        assert entity_id is not None
        assert hass.states.get(entity_id).state == STATE_ON  # type: ignore[union-attr]
        logs[dispatch_id] = StateLog(hass, entity_id)
    await _go_to(hass, freezer, t0 + 4 * MINUTE)
    assert logs[ending].values == [STATE_OFF, None]
    assert _dispatch_entity(hass, entry_id, ending) is None
    dispatch_server.delete(MICROGRID_ID, deleted)
    await wait_for(hass, lambda: recorder.kinds(deleted)[-1:] == ["deleted"])
    await hass.async_block_till_done()
    assert logs[deleted].values == [STATE_OFF, None]
    assert _dispatch_entity(hass, entry_id, deleted) is None


async def test_a_restored_type_sensor_is_not_created_twice(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    t0: datetime,
) -> None:
    """All FCR dispatches gone, reload, a new FCR dispatch: one FCR sensor."""
    first = _create(dispatch_server, type="FCR", start_time=t0 + MINUTE, duration=None)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    dispatch_server.delete(MICROGRID_ID, first)
    await wait_for(hass, lambda: recorder.kinds(first) == ["deleted"])
    assert await hass.config_entries.async_reload(entry_id)
    await hass.async_block_till_done()
    await wait_for(hass, lambda: dispatch_server.open_streams == 1, "stream open")
    second = _create(dispatch_server, type="FCR", start_time=t0 + MINUTE, duration=None)
    await wait_for(hass, lambda: recorder.kinds(second) == ["created"])
    await hass.async_block_till_done()
    assert "does not generate unique IDs" not in caplog.text
    registry = er.async_get(hass)
    type_sensors = [
        reg.unique_id
        for reg in er.async_entries_for_config_entry(registry, entry_id)
        if reg.unique_id.endswith("_type_FCR")
    ]
    assert type_sensors == [f"{MICROGRID_ID}_type_FCR"]
    assert _dispatch_entity(hass, entry_id, second) is not None


async def test_a_sensor_whose_dispatch_goes_while_being_added_is_not_orphaned(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    t0: datetime,
) -> None:
    """Created, then deleted before HA has registered its sensor: no orphan."""
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    gate = asyncio.Event()
    original = EntityPlatform._async_add_entity

    async def slow_add(platform: EntityPlatform, entity: Any, *args: Any) -> None:
        if "_dispatch_" in str(entity.unique_id):
            await gate.wait()  # HA is slow to add this one
        await original(platform, entity, *args)

    monkeypatch.setattr(EntityPlatform, "_async_add_entity", slow_add)
    short = _create(dispatch_server, start_time=t0 + MINUTE, duration=MINUTE)
    await _spin(lambda: recorder.kinds(short) == ["created"])
    dispatch_server.delete(MICROGRID_ID, short)
    await _spin(lambda: recorder.kinds(short) == ["created", "deleted"])
    gate.set()
    await hass.async_block_till_done()
    await hass.async_block_till_done()
    assert _dispatch_entity(hass, entry_id, short) is None
    assert [
        state.entity_id
        for state in hass.states.async_all("binary_sensor")
        if state.entity_id.startswith("binary_sensor.microgrid_42_dispatch_")
    ] == []
    # It comes back, once, if it has a run again.
    again = _create(dispatch_server, start_time=t0 + MINUTE, duration=MINUTE)
    await wait_for(hass, lambda: _dispatch_entity(hass, entry_id, again) is not None)


async def _spin(predicate: Any, limit: float = 10.0) -> None:
    """Run the loop (not `block_till_done`: an add is held) until `predicate()`."""
    deadline = freezegun_api.real_monotonic() + limit
    while not predicate():
        assert freezegun_api.real_monotonic() < deadline
        await asyncio.sleep(0)
