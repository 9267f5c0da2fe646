"""Device triggers and the device condition, through HA's device automation API."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components import automation
from homeassistant.components.device_automation import DeviceAutomationType
from homeassistant.components.device_automation.exceptions import (
    InvalidDeviceAutomationConfig,
)
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import async_get_device_automations
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.frequenz_dispatch import device_condition, device_trigger
from custom_components.frequenz_dispatch.const import DOMAIN
from custom_components.frequenz_dispatch.coordinator import FrequenzDispatchCoordinator
from dispatch_sim.server import DispatchSimulator

from .common import create_dispatch, go_to, setup_and_follow, wait_for


def _device_id(hass: HomeAssistant, entry_id: str) -> str:
    (device,) = dr.async_entries_for_config_entry(dr.async_get(hass), entry_id)
    return device.id


def _record(hass: HomeAssistant, event_type: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    @callback
    def _seen(event: Event) -> None:
        seen.append(dict(event.data))

    hass.bus.async_listen(event_type, _seen)
    return seen


def _ours(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for item in items if item["domain"] == DOMAIN]


async def test_triggers_and_condition_are_offered(
    hass: HomeAssistant,
    hass_ws_client: WebSocketGenerator,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    create_dispatch(
        dispatch_server, start_time=t0 + timedelta(hours=1), duration=timedelta(hours=1)
    )
    create_dispatch(
        dispatch_server,
        type="MY_OWN_TYPE",
        start_time=t0 + timedelta(hours=1),
        duration=None,
    )
    coordinator, _ = await setup_and_follow(hass, entry_data, dispatch_server)
    device_id = _device_id(hass, coordinator.config_entry.entry_id)

    triggers = _ours(
        await async_get_device_automations(
            hass, DeviceAutomationType.TRIGGER, device_id
        )
    )
    assert sorted(t["type"] for t in triggers) == [
        "created",
        "deleted",
        "payload_changed",
        "started",
        "stopped",
        "updated",
    ]
    conditions = _ours(
        await async_get_device_automations(
            hass, DeviceAutomationType.CONDITION, device_id
        )
    )
    assert [c["type"] for c in conditions] == ["is_running"]

    assert await async_setup_component(hass, "device_automation", {})
    client = await hass_ws_client(hass)
    for message in (
        {"type": "device_automation/trigger/capabilities", "trigger": triggers[0]},
        {
            "type": "device_automation/condition/capabilities",
            "condition": conditions[0],
        },
    ):
        await client.send_json_auto_id(message)
        reply = await client.receive_json()
        assert reply["success"], reply
        (field,) = reply["result"]["extra_fields"]
        assert field["name"] == "dispatch_type"
        assert field["optional"]
        select = field["selector"]["select"]
        assert select["custom_value"]
        assert select["options"] == [
            {"value": "BATTERY_CHARGE", "label": "Battery charge (BATTERY_CHARGE)"},
            {"value": "MY_OWN_TYPE", "label": "My own type (MY_OWN_TYPE)"},
        ]


async def test_automations_from_device_triggers(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    charge_id = create_dispatch(
        dispatch_server,
        start_time=t0 + timedelta(minutes=5),
        duration=timedelta(minutes=10),
        payload={"power_w": 3000},
    )
    create_dispatch(
        dispatch_server,
        type="PV_CURTAILMENT",
        start_time=t0 + timedelta(minutes=5),
        duration=timedelta(minutes=10),
    )
    coordinator, _ = await setup_and_follow(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    device_id = _device_id(hass, entry_id)
    fired = _record(hass, "seen_by_automation")

    def _device(kind: str, **extra: Any) -> dict[str, Any]:
        return {"domain": DOMAIN, "device_id": device_id, "type": kind, **extra}

    action = {
        "event": "seen_by_automation",
        "event_data": {
            "automation": "{{ this.attributes.friendly_name }}",
            "platform": "{{ trigger.platform }}",
            "event_type": "{{ trigger.event.event_type }}",
            "data": "{{ trigger.event.data }}",
        },
    }
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": [
                {
                    "alias": "charge started",
                    "triggers": [
                        {
                            "platform": "device",
                            **_device("started", dispatch_type="BATTERY_CHARGE"),
                        }
                    ],
                    "actions": [action],
                },
                {
                    "alias": "any created",
                    "triggers": [{"platform": "device", **_device("created")}],
                    "actions": [action],
                },
                {
                    "alias": "check charge running",
                    "triggers": [{"platform": "event", "event_type": "check_now"}],
                    "conditions": [
                        {
                            "condition": "device",
                            **_device("is_running", dispatch_type="BATTERY_CHARGE"),
                        }
                    ],
                    "actions": [action],
                },
                {
                    "alias": "check any running",
                    "triggers": [{"platform": "event", "event_type": "check_now"}],
                    "conditions": [{"condition": "device", **_device("is_running")}],
                    "actions": [action],
                },
            ]
        },
    )
    await hass.async_block_till_done()

    # "Related" on the device page lists automations that use its triggers
    # and conditions.
    assert sorted(automation.automations_with_device(hass, device_id)) == [
        "automation.any_created",
        "automation.charge_started",
        "automation.check_any_running",
        "automation.check_charge_running",
    ]

    hass.bus.async_fire("check_now")
    await hass.async_block_till_done()
    assert fired == []

    await go_to(hass, freezer, t0 + timedelta(minutes=5))
    # Only the charge's start; the curtailment started as well but is another type.
    (started,) = fired
    assert started["automation"] == "charge started"
    assert started["platform"] == "device"
    assert started["event_type"] == "frequenz_dispatch_started"
    assert started["data"]["dispatch_id"] == charge_id
    assert started["data"]["payload"] == {"power_w": 3000}
    assert started["data"]["config_entry_id"] == entry_id
    assert started["data"]["window_end"] == (t0 + timedelta(minutes=15)).isoformat()

    fired.clear()
    hass.bus.async_fire("check_now")
    await hass.async_block_till_done()
    assert sorted(f["automation"] for f in fired) == [
        "check any running",
        "check charge running",
    ]

    fired.clear()
    new_id = create_dispatch(
        dispatch_server,
        type="EV_CHARGING_LIMIT",
        start_time=t0 + timedelta(days=1),
        duration=None,
    )
    await wait_for(hass, lambda: bool(fired), "created trigger")
    (created,) = fired
    assert created["automation"] == "any created"
    assert created["data"]["dispatch_id"] == new_id
    assert created["data"]["type"] == "EV_CHARGING_LIMIT"

    fired.clear()
    await go_to(hass, freezer, t0 + timedelta(minutes=15))
    hass.bus.async_fire("check_now")
    await hass.async_block_till_done()
    assert fired == []


async def test_condition_is_false_when_the_entry_is_unloaded(
    hass: HomeAssistant,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    create_dispatch(
        dispatch_server,
        start_time=t0 - timedelta(minutes=1),
        duration=timedelta(minutes=30),
    )
    coordinator, _ = await setup_and_follow(hass, entry_data, dispatch_server)
    entry = coordinator.config_entry
    device_id = _device_id(hass, entry.entry_id)
    fired = _record(hass, "seen_by_automation")
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "triggers": [{"platform": "event", "event_type": "check_now"}],
                "conditions": [
                    {
                        "condition": "device",
                        "domain": DOMAIN,
                        "device_id": device_id,
                        "type": "is_running",
                        "dispatch_type": "BATTERY_CHARGE",
                    }
                ],
                "actions": [{"event": "seen_by_automation"}],
            }
        },
    )
    hass.bus.async_fire("check_now")
    await hass.async_block_till_done()
    assert len(fired) == 1

    await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    hass.bus.async_fire("check_now")
    await hass.async_block_till_done()
    assert len(fired) == 1


async def test_a_device_not_ours_is_a_translated_error(
    hass: HomeAssistant,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    await setup_and_follow(hass, entry_data, dispatch_server)
    base = {"domain": DOMAIN, "device_id": "not-a-microgrid", "type": "started"}
    checks = (
        (device_trigger.async_validate_trigger_config, {**base, "platform": "device"}),
        (
            device_condition.async_validate_condition_config,
            {**base, "condition": "device", "type": "is_running"},
        ),
    )
    for validate, config in checks:
        with pytest.raises(InvalidDeviceAutomationConfig) as err:
            await validate(hass, config)
        assert err.value.translation_key == "not_a_microgrid_device"
        # HA drops the translation's final period.
        assert str(err.value) == (
            "Device not-a-microgrid is not a Frequenz Dispatch microgrid"
        )


async def _change_payload(
    hass: HomeAssistant,
    server: DispatchSimulator,
    coordinator: FrequenzDispatchCoordinator,
    dispatch_id: int,
    payload: dict[str, Any],
) -> None:
    """Change a dispatch's payload on the server; wait until HA holds it."""
    server.update(42, dispatch_id, payload=payload)
    await wait_for(
        hass,
        lambda: coordinator.dispatches()[dispatch_id].dispatch.payload == payload,
        f"payload {payload} of dispatch {dispatch_id}",
    )


async def test_payload_changed_while_running(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    running = create_dispatch(
        dispatch_server,
        type="EV_CHARGING_LIMIT",
        start_time=t0 - timedelta(minutes=1),
        duration=timedelta(minutes=30),
        payload={"max_current_a": 16},
    )
    later = create_dispatch(
        dispatch_server,
        type="EV_CHARGING_LIMIT",
        start_time=t0 + timedelta(minutes=5),
        duration=timedelta(minutes=30),
        payload={"max_current_a": 8},
    )
    other = create_dispatch(
        dispatch_server,
        start_time=t0 - timedelta(minutes=1),
        duration=timedelta(minutes=30),
        payload={"power_w": 1},
    )
    coordinator, _ = await setup_and_follow(hass, entry_data, dispatch_server)
    device_id = _device_id(hass, coordinator.config_entry.entry_id)
    fired = _record(hass, "payload_changed")
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "triggers": [
                    {
                        "platform": "device",
                        "domain": DOMAIN,
                        "device_id": device_id,
                        "type": "payload_changed",
                        "dispatch_type": "EV_CHARGING_LIMIT",
                    }
                ],
                "actions": [
                    {
                        "event": "payload_changed",
                        "event_data": {
                            "dispatch_id": "{{ trigger.event.data.dispatch_id }}",
                            "payload": "{{ trigger.event.data.payload }}",
                            "before": "{{ trigger.previous_payload }}",
                        },
                    }
                ],
            }
        },
    )
    # A running dispatch's payload changes: fired, with the old payload.
    dispatch_server.update(42, running, payload={"max_current_a": 10})
    await wait_for(hass, lambda: bool(fired), "payload trigger")
    assert fired == [
        {
            "dispatch_id": running,
            "payload": {"max_current_a": 10},
            "before": {"max_current_a": 16},
        }
    ]
    fired.clear()
    # Not fired: a change that is not the payload, one of a dispatch that is
    # not running yet, one of another type.
    dispatch_server.update(42, running, duration=timedelta(minutes=40))
    dispatch_server.update(42, later, payload={"max_current_a": 6})
    await _change_payload(hass, dispatch_server, coordinator, other, {"power_w": 2})
    assert fired == []
    # Once it has started, the later one's changes count too.
    await go_to(hass, freezer, t0 + timedelta(minutes=5))
    dispatch_server.update(42, later, payload={"max_current_a": 7})
    await wait_for(hass, lambda: bool(fired), "second payload trigger")
    assert [f["dispatch_id"] for f in fired] == [later]
    fired.clear()
    # Stopped, it no longer counts: a change after its stop does not fire.
    await go_to(hass, freezer, t0 + timedelta(minutes=41))
    await _change_payload(
        hass, dispatch_server, coordinator, running, {"max_current_a": 3}
    )
    assert fired == []
    # The automation turned off: its trigger is detached, nothing fires.
    await hass.services.async_call(
        "automation", "turn_off", {"entity_id": "all"}, blocking=True
    )
    await _change_payload(
        hass, dispatch_server, coordinator, later, {"max_current_a": 5}
    )
    assert fired == []
