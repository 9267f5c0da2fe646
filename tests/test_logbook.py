"""Logbook descriptions of the five bus events."""

from __future__ import annotations

from typing import Any

from homeassistant.core import Event, HomeAssistant

from custom_components.frequenz_dispatch.const import ALL_EVENTS, DOMAIN
from custom_components.frequenz_dispatch.logbook import async_describe_events


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
