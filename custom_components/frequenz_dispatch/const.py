"""Constants for the Frequenz Dispatch integration."""

import logging
from typing import Final

from homeassistant.const import Platform
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo

DOMAIN: Final = "frequenz_dispatch"
LOGGER: Final = logging.getLogger(__package__)

CONF_SERVER_URL: Final = "server_url"
CONF_API_KEY: Final = "api_key"
CONF_SIGN_SECRET: Final = "sign_secret"
CONF_MICROGRID_ID: Final = "microgrid_id"

CONF_DRY_RUN_COUNTS: Final = "dry_run_counts"
"""Option: whether dry-run dispatches turn the per-type sensors on."""

SUBENTRY_SETPOINT: Final = "setpoint"
"""Subentry type: a sensor showing a payload value of running dispatches."""
SUBENTRY_GROUP: Final = "type_target"
"""Subentry type: a binary sensor for one dispatch type on one target."""
CONF_DISPATCH_TYPE: Final = "dispatch_type"
CONF_PAYLOAD_KEY: Final = "payload_key"
CONF_TARGET: Final = "target"
CONF_KIND: Final = "kind"
CONF_UNIT: Final = "unit"
CONF_DRY_RUNS: Final = "dry_runs"
CONF_MERGE: Final = "merge"

EVENT_CREATED: Final = "frequenz_dispatch_created"
EVENT_UPDATED: Final = "frequenz_dispatch_updated"
EVENT_DELETED: Final = "frequenz_dispatch_deleted"
EVENT_STARTED: Final = "frequenz_dispatch_started"
EVENT_STOPPED: Final = "frequenz_dispatch_stopped"
ALL_EVENTS: Final = (
    EVENT_CREATED,
    EVENT_UPDATED,
    EVENT_DELETED,
    EVENT_STARTED,
    EVENT_STOPPED,
)

DEVICE_TRANSLATION_KEY: Final = "microgrid"
"""Translation key of the microgrid's device name ("Microgrid <id>")."""

PLATFORMS: Final = [
    Platform.BINARY_SENSOR,
    Platform.CALENDAR,
    Platform.EVENT,
    Platform.SENSOR,
]


def device_identifier(microgrid_id: int) -> tuple[str, str]:
    """The device registry identifier of a microgrid's service device.

    Built from the microgrid id, which identifies the config entry too (one
    entry per microgrid), so it stays when an entry is set up anew.
    """
    return (DOMAIN, str(microgrid_id))


def device_info(microgrid_id: int) -> DeviceInfo:
    """The microgrid's service device, as the coordinator and entities describe it.

    Its name is translated ("Microgrid <id>"); entity IDs start with it.
    """
    return DeviceInfo(
        identifiers={device_identifier(microgrid_id)},
        translation_key=DEVICE_TRANSLATION_KEY,
        translation_placeholders={"microgrid_id": str(microgrid_id)},
        manufacturer="Frequenz",
        model="Dispatch API",
        entry_type=DeviceEntryType.SERVICE,
    )


def entity_unique_id(microgrid_id: int, key: str) -> str:
    """The unique id of a microgrid's entity (`key`: what it shows)."""
    return f"{microgrid_id}_{key}"


def type_sensor_key(dispatch_type: str) -> str:
    """The unique-id key of a type's sensor: the exact type, as the API sends it.

    Types are free text ("BATTERY_CHARGE" and "battery charge" are two types),
    so the key keeps every character: no slug, no hash.
    """
    return f"type_{dispatch_type}"


def signal_runs_changed(entry_id: str) -> str:
    """Dispatcher signal for changes of an entry's dispatches or runs.

    Sent without arguments whenever a dispatch appears, changes or goes, or a
    run starts or stops.
    """
    return f"{DOMAIN}_{entry_id}_runs_changed"


def signal_dispatch(entry_id: str, dispatch_id: int) -> str:
    """Dispatcher signal (no args) to the entity of one dispatch."""
    return f"{DOMAIN}_{entry_id}_dispatch_{dispatch_id}"


def signal_type(entry_id: str, dispatch_type: str) -> str:
    """Dispatcher signal (no args) to the sensor of one dispatch type."""
    return f"{DOMAIN}_{entry_id}_type_{dispatch_type}"


def signal_summary(entry_id: str) -> str:
    """Dispatcher signal (no args) to the summary and connection sensors."""
    return f"{DOMAIN}_{entry_id}_summary"


def signal_event(entry_id: str) -> str:
    """Dispatcher signal (event type, data) to the entry's event entity."""
    return f"{DOMAIN}_{entry_id}_event"


def signal_connection(entry_id: str) -> str:
    """Dispatcher signal (no args) to the connection sensor."""
    return f"{DOMAIN}_{entry_id}_connection"


def signal_type_runs(entry_id: str, dispatch_type: str) -> str:
    """Dispatcher signal (no args): the running dispatches of a type changed.

    Sent when one of them starts, stops, moves to its next run or gets a new
    version (payload, target, dry run), whatever the dry-run option says.
    """
    return f"{DOMAIN}_{entry_id}_type_runs_{dispatch_type}"
