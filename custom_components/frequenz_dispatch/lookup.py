"""Find a microgrid's config entry and coordinator from a device or an entry id."""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeassistant.components.device_automation.exceptions import (
    InvalidDeviceAutomationConfig,
)
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr

from .const import DOMAIN

if TYPE_CHECKING:
    from .coordinator import FrequenzDispatchCoordinator


@callback
def entry_id_of_device(hass: HomeAssistant, device_id: str) -> str | None:
    """The config entry id of a microgrid device, None for any other device."""
    device = dr.async_get(hass).async_get(device_id)
    if device is None:
        return None
    # The device's identifier is the entry id (see entity.py); it does not
    # depend on how the device registry links devices to entries.
    for domain, identifier in device.identifiers:
        if domain == DOMAIN:
            return identifier
    return None


@callback
def check_microgrid_device(hass: HomeAssistant, device_id: str) -> None:
    """Raise the translated error of device automations on a foreign device."""
    if entry_id_of_device(hass, device_id) is None:
        raise InvalidDeviceAutomationConfig(
            translation_domain=DOMAIN,
            translation_key="not_a_microgrid_device",
            translation_placeholders={"device_id": device_id},
        )


@callback
def loaded_coordinator(
    hass: HomeAssistant, entry_id: str
) -> FrequenzDispatchCoordinator | None:
    """The coordinator of a loaded entry of ours, None otherwise."""
    entry = hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != DOMAIN:
        return None
    if entry.state is not ConfigEntryState.LOADED:
        return None
    coordinator: FrequenzDispatchCoordinator = entry.runtime_data
    return coordinator
