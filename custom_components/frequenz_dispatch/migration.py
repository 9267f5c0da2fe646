"""Config entry migrations (called by `async_migrate_entry` in `__init__`).

- 1.1 → 1.2: the entry's unique ID is the microgrid ID.
- 1.2 → 1.3: entity unique IDs and the device identifier are built from the
  microgrid ID and the exact dispatch type (before: the config entry ID and,
  for type sensors, a slug). Entities and the device are moved in place, so
  entity IDs, history, user settings and the device ID (which device
  automations store) stay.
"""

from collections.abc import Mapping
import hashlib
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
from homeassistant.util import slugify

from .const import (
    CONF_MICROGRID_ID,
    CONF_SERVER_URL,
    DOMAIN,
    LOGGER,
    device_identifier,
    entity_unique_id,
    type_sensor_key,
)
from .lookup import entry_device

DUPLICATE_ISSUE = "duplicate_microgrid"
"""Repair issue (id prefix and translation key): a second entry for one microgrid."""

MINOR_VERSION = 3
"""The config entries' current minor version (version 1)."""


def duplicate_issue_id(entry_id: str) -> str:
    """The repair issue raised for the duplicate entry `entry_id`."""
    return f"{DUPLICATE_ISSUE}_{entry_id}"


async def async_migrate(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    """Bring an entry to version 1.3, one step after the other."""
    if entry.version > 1:
        return False  # written by a newer version of the integration
    if entry.minor_version < 2 and not _claim_microgrid(hass, entry):
        return False
    if entry.minor_version < 3:
        await _async_stable_ids(hass, entry)
    return True


@callback
def _claim_microgrid(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    """1.2: the unique ID is the microgrid ID.

    Version 1.1 used "<url>#<microgrid id>", so one microgrid could be set up
    twice through two URLs of one server. The first entry migrated keeps the
    microgrid; any other one stays unloaded (migration error) with a repair
    issue that offers to remove it.
    """
    unique_id = str(int(entry.data[CONF_MICROGRID_ID]))
    owner = hass.config_entries.async_entry_for_domain_unique_id(DOMAIN, unique_id)
    if owner is not None and owner.entry_id != entry.entry_id:
        LOGGER.error(
            "Config entry %s is a second entry for microgrid %s (already set up"
            " by %s); it is not loaded",
            entry.title,
            unique_id,
            owner.title,
        )
        ir.async_create_issue(
            hass,
            DOMAIN,
            duplicate_issue_id(entry.entry_id),
            is_fixable=True,
            is_persistent=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key=DUPLICATE_ISSUE,
            translation_placeholders={
                "title": entry.title,
                "microgrid_id": unique_id,
                "server_url": str(entry.data[CONF_SERVER_URL]),
                "kept_title": owner.title,
            },
            data={"entry_id": entry.entry_id},
        )
        return False
    hass.config_entries.async_update_entry(entry, unique_id=unique_id, minor_version=2)
    return True


async def _async_stable_ids(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """1.3: unique IDs and the device identifier from the microgrid ID."""
    microgrid_id = int(entry.data[CONF_MICROGRID_ID])
    registry = er.async_get(hass)
    old_prefix = f"{entry.entry_id}_"

    @callback
    def move(reg_entry: er.RegistryEntry) -> dict[str, Any] | None:
        if not reg_entry.unique_id.startswith(old_prefix):
            return None
        key = reg_entry.unique_id.removeprefix(old_prefix)
        if key.startswith("type_"):
            dispatch_type = _old_type(reg_entry, key)
            if dispatch_type is None:
                LOGGER.warning(
                    "The type of %s cannot be recovered; it keeps its old unique ID",
                    reg_entry.entity_id,
                )
                return None
            key = type_sensor_key(dispatch_type)
        new_unique_id = entity_unique_id(microgrid_id, key)
        if registry.async_get_entity_id(reg_entry.domain, DOMAIN, new_unique_id):
            LOGGER.warning(
                "%s keeps its old unique ID: %s is taken",
                reg_entry.entity_id,
                new_unique_id,
            )
            return None
        return {"new_unique_id": new_unique_id}

    await er.async_migrate_entries(hass, entry.entry_id, move)
    devices = dr.async_get(hass)
    new_identifier = device_identifier(microgrid_id)
    device = entry_device(hass, entry.entry_id, (DOMAIN, entry.entry_id))
    # A collection of entries since HA 2026.x; a mapping by id before.
    every: Any = devices.devices
    entries = every.values() if isinstance(every, Mapping) else every
    taken = any(new_identifier in d.identifiers for d in entries)
    if device is not None and not taken:
        # The device keeps its ID: device triggers and conditions name it.
        devices.async_update_device(device.id, new_identifiers={new_identifier})
    hass.config_entries.async_update_entry(entry, minor_version=MINOR_VERSION)


def _old_type(reg_entry: er.RegistryEntry, key: str) -> str | None:
    """The exact type of a type sensor registered by version 1.2.

    1.2 kept it in the sensor's registry options; a sensor without them was
    named "type_<slug>" for an upper-case type.
    """
    stored = dict(reg_entry.options.get(DOMAIN) or {}).get("type")
    if isinstance(stored, str) and _old_type_key(stored) == key:
        return stored
    candidate = key.removeprefix("type_").upper()
    return candidate if candidate and _old_type_key(candidate) == key else None


def _old_type_key(dispatch_type: str) -> str:
    """1.2's unique-id part of a type sensor (slug, hashed unless upper case)."""
    slug = slugify(dispatch_type)
    if dispatch_type == slug.upper():
        return f"type_{slug}"
    digest = hashlib.sha256(dispatch_type.encode()).hexdigest()[:8]
    return f"type_{slug}_{digest}"
