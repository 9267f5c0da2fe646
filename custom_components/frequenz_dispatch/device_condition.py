"""Device condition: a dispatch of a type (or of any type) is running."""

from __future__ import annotations

from typing import Any

from homeassistant.const import CONF_CONDITION, CONF_DEVICE_ID, CONF_DOMAIN, CONF_TYPE
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.condition import ConditionCheckerType
from homeassistant.helpers.typing import ConfigType, TemplateVarsType
import voluptuous as vol

from .const import DOMAIN
from .device_trigger import CONF_DISPATCH_TYPE, dispatch_type_field
from .lookup import check_microgrid_device, entry_id_of_device, loaded_coordinator

CONDITION_TYPES = ("is_running",)

CONDITION_SCHEMA = cv.DEVICE_CONDITION_BASE_SCHEMA.extend(
    {
        vol.Required(CONF_TYPE): vol.In(CONDITION_TYPES),
        vol.Optional(CONF_DISPATCH_TYPE): cv.string,
    }
)


async def async_validate_condition_config(
    hass: HomeAssistant, config: ConfigType
) -> ConfigType:
    """Check the schema and that the device is a microgrid of ours."""
    config = CONDITION_SCHEMA(config)
    check_microgrid_device(hass, config[CONF_DEVICE_ID])
    return config


async def async_get_conditions(
    hass: HomeAssistant, device_id: str
) -> list[dict[str, Any]]:
    """The condition of a microgrid device (the type is picked as a field)."""
    if entry_id_of_device(hass, device_id) is None:
        return []
    return [
        {
            CONF_CONDITION: "device",
            CONF_DOMAIN: DOMAIN,
            CONF_DEVICE_ID: device_id,
            CONF_TYPE: "is_running",
        }
    ]


async def async_get_condition_capabilities(
    hass: HomeAssistant, config: ConfigType
) -> dict[str, vol.Schema]:
    """An optional dispatch type, offered from the dispatches known now."""
    return {"extra_fields": dispatch_type_field(hass, config[CONF_DEVICE_ID])}


@callback
def async_condition_from_config(
    hass: HomeAssistant, config: ConfigType
) -> ConditionCheckerType:
    """Check, when asked, the entry loaded at that moment.

    Without a type, any running dispatch counts; dry runs count as they do for
    the per-type sensors (the entry's option).
    """
    device_id: str = config[CONF_DEVICE_ID]
    dispatch_type: str | None = config.get(CONF_DISPATCH_TYPE) or None

    @callback
    def check(hass: HomeAssistant, variables: TemplateVarsType = None) -> bool:
        entry_id = entry_id_of_device(hass, device_id)
        coordinator = None if entry_id is None else loaded_coordinator(hass, entry_id)
        if coordinator is None:
            return False
        types = (
            [dispatch_type] if dispatch_type is not None else coordinator.known_types()
        )
        return any(coordinator.is_type_running(each) for each in types)

    return check
