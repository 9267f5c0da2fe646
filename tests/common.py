"""Helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import freezegun.api as freezegun_api
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.frequenz_dispatch.const import ALL_EVENTS, DOMAIN
from custom_components.frequenz_dispatch.coordinator import FrequenzDispatchCoordinator
from dispatch_sim.server import DispatchSimulator


def _real_monotonic() -> float:
    # Looked up on the module each time: freezegun replaces module-level
    # references to the real clock functions while the clock is frozen.
    return float(freezegun_api.real_monotonic())


async def wait_for(
    hass: HomeAssistant,
    predicate: Callable[[], bool],
    what: str = "condition",
    limit: float = 10.0,
) -> None:
    """Let the loop (and real gRPC I/O) run until `predicate()` holds.

    The test clock is frozen, so this spins on real monotonic time instead of
    the loop's timers.
    """
    deadline = _real_monotonic() + limit
    while not predicate():
        if _real_monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0)
        await hass.async_block_till_done()


async def settle(hass: HomeAssistant, seconds: float = 0.3) -> None:
    """Run the loop for a little real time (to show that nothing happens)."""
    deadline = _real_monotonic() + seconds
    while _real_monotonic() < deadline:
        await asyncio.sleep(0)
        await hass.async_block_till_done()


@dataclass
class EventRecorder:
    """Collects every frequenz_dispatch_* bus event in order."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @callback
    def _record(self, event: Event) -> None:
        self.events.append(
            (str(event.event_type).removeprefix("frequenz_dispatch_"), dict(event.data))
        )

    def attach(self, hass: HomeAssistant) -> EventRecorder:
        """Start listening."""
        for event_type in ALL_EVENTS:
            hass.bus.async_listen(event_type, self._record)
        return self

    def kinds(self, dispatch_id: int | None = None) -> list[str]:
        """Event kinds (created, started, ...), optionally of one dispatch."""
        return [
            kind
            for kind, data in self.events
            if dispatch_id is None or data["dispatch_id"] == dispatch_id
        ]

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The data of every event of one kind."""
        return [data for k, data in self.events if k == kind]

    def count_is(self, count: int) -> Callable[[], bool]:
        """A predicate: exactly `count` events were recorded."""
        return lambda: len(self.events) == count

    def clear(self) -> None:
        """Forget what was recorded."""
        self.events.clear()


async def setup_entry(
    hass: HomeAssistant, data: dict[str, Any], options: dict[str, Any] | None = None
) -> MockConfigEntry:
    """Add and set up a config entry for the local server."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        title=f"Microgrid {data['microgrid_id']}",
        data=data,
        options=options or {},
        unique_id=f"{data['server_url']}#{data['microgrid_id']}",
    )
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


API_KEY = "test-api-key-0123456789"
MICROGRID_ID = 42


def create_dispatch(server: DispatchSimulator, **fields: Any) -> int:
    """Create a dispatch on the test microgrid (battery charge on [1, 2])."""
    fields.setdefault("type", "BATTERY_CHARGE")
    fields.setdefault("target", [1, 2])
    return server.create(MICROGRID_ID, **fields)


def create_running(server: DispatchSimulator, t0: datetime) -> int:
    """A dispatch that started a minute before t0 and lasts 30 minutes."""
    return create_dispatch(
        server, start_time=t0 - timedelta(minutes=1), duration=timedelta(minutes=30)
    )


async def go_to(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, when: datetime
) -> None:
    """Move the frozen clock to `when` and fire HA's timers due by then."""
    freezer.move_to(when)
    async_fire_time_changed(hass, when)
    await hass.async_block_till_done()


async def step_clock(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    now: datetime,
    step: timedelta,
    until: datetime,
    done: Callable[[], bool] = lambda: False,
    real: float = 0.0,
) -> datetime:
    """Move the frozen clock on by `step` until `until`, or until `done()` holds.

    Each step fires HA's timers due by then and lets real I/O run for `real`
    seconds (gRPC calls answer in real time). Returns the clock's new time.
    """
    while now < until and not done():
        now += step
        await go_to(hass, freezer, now)
        await settle(hass, real)
    return now


async def setup_and_follow(
    hass: HomeAssistant, entry_data: dict[str, Any], dispatch_server: DispatchSimulator
) -> tuple[FrequenzDispatchCoordinator, EventRecorder]:
    """Set up an entry, wait until its stream is open; record its events."""
    recorder = EventRecorder().attach(hass)
    entry = await setup_entry(hass, entry_data)
    assert entry.state is ConfigEntryState.LOADED
    coordinator: FrequenzDispatchCoordinator = entry.runtime_data
    await wait_for(hass, lambda: dispatch_server.open_streams == 1, "stream open")
    return coordinator, recorder


class StateWrites:
    """Counts the state writes of every entity (HA's state machine entry point)."""

    def __init__(self, hass: HomeAssistant, monkeypatch: Any) -> None:
        """Start counting."""
        self.entity_ids: list[str] = []
        machine = type(hass.states)
        original = machine.async_set_internal

        def counting(states: Any, entity_id: str, *args: Any, **kwargs: Any) -> None:
            self.entity_ids.append(entity_id)
            original(states, entity_id, *args, **kwargs)

        # The state machine has slots: count on its class.
        monkeypatch.setattr(machine, "async_set_internal", counting)

    def clear(self) -> None:
        """Forget what was counted."""
        self.entity_ids.clear()


async def add_subentry(
    hass: HomeAssistant, entry: ConfigEntry, subentry_type: str, data: dict[str, Any]
) -> str:
    """Add a subentry through its form, as a person would; return its entity id."""
    before = set(entry.subentries)
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, subentry_type), context={"source": "user"}
    )
    assert result["type"] is FlowResultType.FORM, result
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], data
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    await hass.async_block_till_done()
    (subentry_id,) = set(entry.subentries) - before
    platform = "sensor" if subentry_type == "setpoint" else "binary_sensor"
    entity_id = er.async_get(hass).async_get_entity_id(platform, DOMAIN, subentry_id)
    assert entity_id is not None
    return entity_id


def subentry_id_of(hass: HomeAssistant, entity_id: str) -> str:
    """The subentry an entity belongs to (its unique id)."""
    reg_entry = er.async_get(hass).async_get(entity_id)
    assert reg_entry is not None
    return reg_entry.unique_id
