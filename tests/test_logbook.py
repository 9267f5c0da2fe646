"""Logbook descriptions of the five bus events, through HA's logbook."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from homeassistant.components.logbook.const import DOMAIN as LOGBOOK_DOMAIN
from homeassistant.core import Event, HomeAssistant
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest

from custom_components.frequenz_dispatch.const import ALL_EVENTS, DOMAIN
from custom_components.frequenz_dispatch.logbook import async_describe_events
from dispatch_sim.server import DispatchSimulator

from .common import setup_entry
from .conftest import MICROGRID_ID


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    recorder_db_url: str, enable_custom_integrations: None
) -> None:
    """The logbook needs the recorder, whose database must exist before `hass`."""


def _data(**extra: Any) -> dict[str, Any]:
    return {"dispatch_id": 7, "type": "BATTERY_CHARGE", "dry_run": False, **extra}


async def test_describes_every_event(hass: HomeAssistant) -> None:
    described: dict[str, Any] = {}
    async_describe_events(
        hass,
        lambda domain, event_type, describe: described.__setitem__(
            event_type, (domain, describe)
        ),
    )
    assert set(described) == set(ALL_EVENTS)
    messages = {}
    for event_type, (domain, describe) in described.items():
        assert domain == DOMAIN
        entry = describe(Event(event_type, _data(window_end=None)))
        assert entry["name"] == "Dispatch 7 (BATTERY_CHARGE)"
        messages[event_type.removeprefix("frequenz_dispatch_")] = entry["message"]
    assert messages == {
        "created": "was created",
        "updated": "was updated",
        "deleted": "was deleted",
        "started": "started",
        "stopped": "stopped",
    }
    started = described["frequenz_dispatch_started"][1]
    entry = started(
        Event("frequenz_dispatch_started", _data(window_end="T1", dry_run=True))
    )
    assert entry["message"] == "started (until T1) [dry run]"


async def test_registered_with_the_logbook(
    recorder_mock: Any,
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
) -> None:
    """HA's logbook picks our platform up when the integration is loaded."""
    dispatch_server.create(
        MICROGRID_ID,
        type="PV_CURTAILMENT",
        start_time=dt_util.utcnow() + timedelta(hours=1),
        duration=None,
        target=["INVERTER:PV"],
    )
    assert await async_setup_component(hass, LOGBOOK_DOMAIN, {})
    await setup_entry(hass, entry_data)
    await hass.async_block_till_done()
    external = hass.data[LOGBOOK_DOMAIN].external_events
    assert {event_type for event_type in ALL_EVENTS} <= set(external)
    domain, _describe = external["frequenz_dispatch_created"]
    assert domain == DOMAIN
