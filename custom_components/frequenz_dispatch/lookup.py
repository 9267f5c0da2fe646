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
    # The device's identifier is the microgrid id (const.device_identifier),
    # which is also the unique id of the microgrid's one entry; it does not
    # depend on how the device registry links devices to entries. Until the
    # entry is migrated to 1.3 (at its setup, maybe after automations are set
    # up) it is the entry id.
    for domain, identifier in device.identifiers:
        if domain != DOMAIN:
            continue
        entries = hass.config_entries
        entry = entries.async_entry_for_domain_unique_id(
            DOMAIN, identifier
        ) or entries.async_get_entry(identifier)
        return entry.entry_id if entry is not None and entry.domain == DOMAIN else None
    return None


@callback
def entry_device(
    hass: HomeAssistant, entry_id: str, identifier: tuple[str, str]
) -> dr.DeviceEntry | None:
    """The config entry's own device with this identifier, None if it has none.

    Looked up among the entry's devices: `async_get_device` by identifier is
    deprecated, and its successor is missing in HA 2025.6.
    """
    devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry_id)
    return next((d for d in devices if identifier in d.identifiers), None)


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
