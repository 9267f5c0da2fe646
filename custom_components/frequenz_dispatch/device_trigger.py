"""Device triggers: a dispatch started, stopped, changed, or its payload did.

"Payload changed while running" is in payload_trigger.py. Each other one is
a bus event trigger on the microgrid's config entry, optionally
narrowed to one dispatch type, so `trigger.event.data` is the bus event's data.
"""

from __future__ import annotations

from typing import Any

from homeassistant.components.device_automation import DEVICE_TRIGGER_BASE_SCHEMA
from homeassistant.components.homeassistant.triggers import event as event_trigger
from homeassistant.const import (
    CONF_DEVICE_ID,
    CONF_DOMAIN,
    CONF_EVENT_DATA,
    CONF_PLATFORM,
    CONF_TYPE,
)
from homeassistant.core import CALLBACK_TYPE, HomeAssistant
from homeassistant.helpers import config_validation as cv, selector
from homeassistant.helpers.trigger import TriggerActionType, TriggerInfo
from homeassistant.helpers.typing import ConfigType
import voluptuous as vol

from .const import DOMAIN
from .lookup import check_microgrid_device, entry_id_of_device, loaded_coordinator
from .names import type_name
from .payload_trigger import async_attach_payload_trigger

CONF_DISPATCH_TYPE = "dispatch_type"
PAYLOAD_CHANGED = "payload_changed"
TRIGGER_TYPES = (
    "started",
    "stopped",
    "created",
    "updated",
    "deleted",
    PAYLOAD_CHANGED,
)

TRIGGER_SCHEMA = DEVICE_TRIGGER_BASE_SCHEMA.extend(
    {
        vol.Required(CONF_TYPE): vol.In(TRIGGER_TYPES),
        vol.Optional(CONF_DISPATCH_TYPE): cv.string,
    }
)


async def async_validate_trigger_config(
    hass: HomeAssistant, config: ConfigType
) -> ConfigType:
    """Check the schema and that the device is a microgrid of ours."""
    config = TRIGGER_SCHEMA(config)
    check_microgrid_device(hass, config[CONF_DEVICE_ID])
    return config


async def async_get_triggers(
    hass: HomeAssistant, device_id: str
) -> list[dict[str, Any]]:
    """The triggers of a microgrid device (the type is picked as a field)."""
    if entry_id_of_device(hass, device_id) is None:
        return []
    return [
        {
            CONF_PLATFORM: "device",
            CONF_DOMAIN: DOMAIN,
            CONF_DEVICE_ID: device_id,
            CONF_TYPE: trigger_type,
        }
        for trigger_type in TRIGGER_TYPES
    ]


async def async_get_trigger_capabilities(
    hass: HomeAssistant, config: ConfigType
) -> dict[str, vol.Schema]:
    """An optional dispatch type, offered from the dispatches known now."""
    return {"extra_fields": dispatch_type_field(hass, config[CONF_DEVICE_ID])}


def dispatch_type_field(hass: HomeAssistant, device_id: str) -> vol.Schema:
    """The optional `dispatch_type` field; empty means any type.

    The known types are offered; another can be typed in (a type that has no
    dispatch yet).
    """
    entry_id = entry_id_of_device(hass, device_id)
    coordinator = None if entry_id is None else loaded_coordinator(hass, entry_id)
    known = sorted(coordinator.known_types()) if coordinator is not None else []
    return vol.Schema(
        {
            vol.Optional(CONF_DISPATCH_TYPE): selector.SelectSelector(
                selector.SelectSelectorConfig(
                    options=[
                        selector.SelectOptionDict(
                            value=dispatch_type,
                            label=f"{type_name(hass, dispatch_type)} ({dispatch_type})",
                        )
                        for dispatch_type in known
                    ],
                    custom_value=True,
                    mode=selector.SelectSelectorMode.DROPDOWN,
                )
            )
        }
    )


async def async_attach_trigger(
    hass: HomeAssistant,
    config: ConfigType,
    action: TriggerActionType,
    trigger_info: TriggerInfo,
) -> CALLBACK_TYPE:
    """Listen to the bus event of the entry (and type, if one was chosen)."""
    entry_id = entry_id_of_device(hass, config[CONF_DEVICE_ID])
    if config[CONF_TYPE] == PAYLOAD_CHANGED and entry_id is not None:
        return async_attach_payload_trigger(
            hass, entry_id, config.get(CONF_DISPATCH_TYPE) or None, action, trigger_info
        )
    event_data: dict[str, Any] = {"config_entry_id": entry_id}
    if dispatch_type := config.get(CONF_DISPATCH_TYPE):
        event_data["type"] = dispatch_type
    event_config = event_trigger.TRIGGER_SCHEMA(
        {
            CONF_PLATFORM: "event",
            event_trigger.CONF_EVENT_TYPE: f"{DOMAIN}_{config[CONF_TYPE]}",
            CONF_EVENT_DATA: event_data,
        }
    )
    return await event_trigger.async_attach_trigger(
        hass, event_config, action, trigger_info, platform_type="device"
    )
