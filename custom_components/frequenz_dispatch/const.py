"""Constants for the Frequenz Dispatch integration."""

import logging
from typing import Final

from homeassistant.const import Platform

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

PLATFORMS: Final = [
    Platform.BINARY_SENSOR,
    Platform.CALENDAR,
    Platform.EVENT,
    Platform.SENSOR,
]


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
