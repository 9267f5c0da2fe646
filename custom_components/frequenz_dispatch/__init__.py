"""The Frequenz Dispatch integration: run Frequenz dispatches inside Home Assistant."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.start import async_at_started
from homeassistant.helpers.typing import ConfigType

from .api import DispatchApi, DispatchInvalidUrlError
from .const import (
    CONF_API_KEY,
    CONF_MICROGRID_ID,
    CONF_SERVER_URL,
    CONF_SIGN_SECRET,
    DOMAIN,
    PLATFORMS,
)
from .coordinator import CARRIED_RUNS, FrequenzDispatchCoordinator
from .data import FrequenzDispatchConfigEntry
from .services import async_setup_services

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions, once for every microgrid."""
    async_setup_services(hass)
    return True


async def async_setup_entry(
    hass: HomeAssistant, entry: FrequenzDispatchConfigEntry
) -> bool:
    """Connect, fetch every dispatch, set up the platforms, follow the stream."""
    try:
        api = DispatchApi(
            entry.data[CONF_SERVER_URL],
            entry.data[CONF_API_KEY],
            int(entry.data[CONF_MICROGRID_ID]),
            entry.data.get(CONF_SIGN_SECRET),
        )
    except DispatchInvalidUrlError as err:
        raise ConfigEntryError(
            translation_domain=DOMAIN, translation_key="invalid_url"
        ) from err
    coordinator = FrequenzDispatchCoordinator(hass, entry, api)
    # On failure HA runs the entry's unload callbacks: the coordinator's
    # shutdown closes the channel.
    await coordinator.async_config_entry_first_refresh()
    entry.runtime_data = coordinator
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    # Runs already under way are reported once automations can see them.
    entry.async_on_unload(async_at_started(hass, coordinator.async_release_events))
    coordinator.async_start_stream()
    entry.async_on_unload(entry.add_update_listener(_async_options_updated))
    return True


async def _async_options_updated(
    hass: HomeAssistant, entry: FrequenzDispatchConfigEntry
) -> None:
    """Reload so the platforms pick up new options.

    Reauth and reconfigure change the data and reload on their own; reloading
    here as well would reconnect twice.
    """
    if dict(entry.options) != entry.runtime_data.options:
        await hass.config_entries.async_reload(entry.entry_id)


async def async_unload_entry(
    hass: HomeAssistant, entry: FrequenzDispatchConfigEntry
) -> bool:
    """Stop the stream and timers first, then unload the platforms."""
    await entry.runtime_data.async_stop()
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_remove_entry(
    hass: HomeAssistant, entry: FrequenzDispatchConfigEntry
) -> None:
    """Forget the runs kept for a reload of a removed entry."""
    hass.data.get(CARRIED_RUNS, {}).pop(entry.entry_id, None)
