"""Diagnostics download: configuration (secrets redacted) and dispatch state."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant

from .const import CONF_API_KEY, CONF_SIGN_SECRET
from .data import FrequenzDispatchConfigEntry
from .event_data import dispatch_data, run_data

TO_REDACT = {CONF_API_KEY, CONF_SIGN_SECRET}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: FrequenzDispatchConfigEntry
) -> dict[str, Any]:
    """Return what helps to debug an entry, never a secret."""
    config = {
        "data": async_redact_data(dict(entry.data), TO_REDACT),
        "options": dict(entry.options),
    }
    if entry.state is not ConfigEntryState.LOADED:
        return {"entry": config, "state": entry.state.value}
    coordinator = entry.runtime_data
    return {
        "entry": config,
        "connected": coordinator.connected,
        "dispatches": [
            {
                **dispatch_data(item.dispatch),
                "update_time": item.dispatch.update_time.isoformat(),
                **run_data(coordinator.run_of(dispatch_id)),
            }
            for dispatch_id, item in sorted(coordinator.dispatches().items())
        ],
        "skipped_malformed": {
            str(dispatch_id): reason
            for dispatch_id, reason in coordinator.malformed.items()
        },
        "deleted_ids_remembered": coordinator.tombstones,
        "told_runs": sorted(run.run_id for run in coordinator.ledger.told.values()),
        "events_held": coordinator.ledger.holding,
    }
