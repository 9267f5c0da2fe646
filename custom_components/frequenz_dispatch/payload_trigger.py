"""Device trigger "payload of a dispatch changed while running".

A `frequenz_dispatch_updated` event does not say what changed, so the
trigger remembers the payload of every running dispatch of the entry (and
type) from `started` and `updated` events, and fires on an update of a
dispatch that ran before and still runs, whose payload differs.
"""

from __future__ import annotations

from typing import Any

from homeassistant.core import CALLBACK_TYPE, Event, HassJob, HomeAssistant, callback
from homeassistant.helpers.trigger import TriggerActionType, TriggerInfo

from .const import EVENT_STARTED, EVENT_STOPPED, EVENT_UPDATED
from .lookup import loaded_coordinator


@callback
def async_attach_payload_trigger(
    hass: HomeAssistant,
    entry_id: str,
    dispatch_type: str | None,
    action: TriggerActionType,
    trigger_info: TriggerInfo,
) -> CALLBACK_TYPE:
    """Call `action` when a running dispatch's payload changes."""
    payloads: dict[int, Any] = {}
    coordinator = loaded_coordinator(hass, entry_id)
    if coordinator is not None:
        for dispatch_id in coordinator.running():
            attributes = coordinator.attributes(dispatch_id) or {}
            if dispatch_type in (None, attributes.get("type")):
                payloads[dispatch_id] = attributes.get("payload")

    def _ours(event: Event) -> bool:
        data = event.data
        return data.get("config_entry_id") == entry_id and dispatch_type in (
            None,
            data.get("type"),
        )

    @callback
    def _started(event: Event) -> None:
        if _ours(event):
            payloads[event.data["dispatch_id"]] = event.data.get("payload")

    @callback
    def _stopped(event: Event) -> None:
        if _ours(event):
            payloads.pop(event.data["dispatch_id"], None)

    @callback
    def _updated(event: Event) -> None:
        if not _ours(event):
            return
        data = event.data
        dispatch_id = data["dispatch_id"]
        if data.get("window_start") is None or dispatch_id not in payloads:
            return  # not running, or only starting now (`started` follows)
        before = payloads[dispatch_id]
        payloads[dispatch_id] = data.get("payload")
        if before != data.get("payload"):
            hass.async_run_hass_job(
                action_job,
                {
                    "trigger": {
                        **trigger_info["trigger_data"],
                        "platform": "device",
                        "event": event,
                        "previous_payload": before,
                        "description": f"payload of dispatch {dispatch_id} changed",
                    }
                },
                event.context,
            )

    action_job = HassJob(action)
    unsubs = [
        hass.bus.async_listen(EVENT_STARTED, _started),
        hass.bus.async_listen(EVENT_STOPPED, _stopped),
        hass.bus.async_listen(EVENT_UPDATED, _updated),
    ]

    @callback
    def _detach() -> None:
        for unsub in unsubs:
            unsub()

    return _detach
