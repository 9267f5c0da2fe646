"""Config entry migrations (called by `async_migrate_entry` in `__init__`)."""

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir

from .const import CONF_MICROGRID_ID, CONF_SERVER_URL, DOMAIN, LOGGER

DUPLICATE_ISSUE = "duplicate_microgrid"
"""Repair issue (id prefix and translation key): a second entry for one microgrid."""


def duplicate_issue_id(entry_id: str) -> str:
    """The repair issue raised for the duplicate entry `entry_id`."""
    return f"{DUPLICATE_ISSUE}_{entry_id}"


async def async_migrate(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    """Bring an entry to version 1.2: the unique ID is the microgrid ID.

    Version 1.1 used "<url>#<microgrid id>", so one microgrid could be set up
    twice through two URLs of one server. The first entry migrated keeps the
    microgrid; any other one stays unloaded (migration error) with a repair
    issue that offers to remove it.
    """
    if entry.version > 1:
        return False  # written by a newer version of the integration
    if entry.minor_version >= 2:
        return True
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
