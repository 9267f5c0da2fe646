"""The Frequenz Dispatch integration: run Frequenz dispatches inside Home Assistant."""

from __future__ import annotations

from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed, ConfigEntryError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.start import async_at_started
from homeassistant.helpers.typing import ConfigType

from .api import DispatchApi, DispatchAuthError, DispatchInvalidUrlError
from .const import (
    CONF_API_KEY,
    CONF_MICROGRID_ID,
    CONF_SERVER_URL,
    CONF_SIGN_SECRET,
    DOMAIN,
    PLATFORMS,
)
from .coordinator import FrequenzDispatchCoordinator, async_forget_entry
from .data import FrequenzDispatchConfigEntry
from .migration import async_migrate
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
        api = await DispatchApi.async_open(
            entry.data[CONF_SERVER_URL],
            entry.data[CONF_API_KEY],
            int(entry.data[CONF_MICROGRID_ID]),
            entry.data.get(CONF_SIGN_SECRET),
            run_blocking=hass.async_add_executor_job,
        )
    except DispatchInvalidUrlError as err:
        raise ConfigEntryError(
            translation_domain=DOMAIN, translation_key="invalid_url"
        ) from err
    except DispatchAuthError as err:  # a key gRPC cannot send
        raise ConfigEntryAuthFailed(
            translation_domain=DOMAIN, translation_key="invalid_auth"
        ) from err
    coordinator = FrequenzDispatchCoordinator(hass, entry, api)
    try:
        await coordinator.async_setup()
    except BaseException:
        await coordinator.async_shutdown()
        raise
    entry.async_on_unload(coordinator.async_shutdown)
    # HA does not unload entries when it stops: stop the stream and the timer
    # then and save, so a restart continues every run without repeating or
    # losing one (a run starting during the shutdown is reported at the next
    # load).
    entry.async_on_unload(
        hass.bus.async_listen(EVENT_HOMEASSISTANT_STOP, coordinator.async_stop)
    )
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
    """End the runs still going on (`stopped`) and delete the stored state."""
    await async_forget_entry(hass, entry)


async def async_migrate_entry(
    hass: HomeAssistant, entry: FrequenzDispatchConfigEntry
) -> bool:
    """Migrate an entry of an older version (see migration.py)."""
    return await async_migrate(hass, entry)
