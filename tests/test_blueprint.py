"""The blueprint, imported as a person would and run against real dispatches."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
import shutil
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component

from dispatch_sim.server import DispatchSimulator

from .common import (
    MICROGRID_ID,
    add_subentry,
    create_dispatch,
    go_to,
    setup_and_follow,
    wait_for,
)

BLUEPRINTS = Path(__file__).parent.parent / "blueprints/automation/frequenz_dispatch"
BLUEPRINT = BLUEPRINTS / "keep_on_while_dispatch_runs.yaml"
SETPOINT_BLUEPRINT = BLUEPRINTS / "follow_dispatch_setpoint.yaml"
SWITCH = "input_boolean.battery_charger"


def _is_on(hass: HomeAssistant) -> bool:
    state = hass.states.get(SWITCH)
    assert state is not None
    return state.state == "on"


async def test_overlapping_dispatches_keep_it_on(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    tmp_path: Path,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    hass.config.config_dir = str(tmp_path)
    target = tmp_path / "blueprints/automation/frequenz_dispatch"
    target.mkdir(parents=True)
    shutil.copy(BLUEPRINT, target)

    create_dispatch(
        dispatch_server,
        start_time=t0 + timedelta(minutes=5),
        duration=timedelta(minutes=10),
    )
    create_dispatch(
        dispatch_server,
        start_time=t0 + timedelta(minutes=10),
        duration=timedelta(minutes=15),
    )
    create_dispatch(
        dispatch_server,
        type="PV_CURTAILMENT",
        start_time=t0 + timedelta(minutes=30),
        duration=timedelta(minutes=5),
    )
    await setup_and_follow(hass, entry_data, dispatch_server)
    assert await async_setup_component(hass, "homeassistant", {})
    assert await async_setup_component(
        hass, "input_boolean", {"input_boolean": {"battery_charger": {}}}
    )
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "alias": "Keep charger on",
                "use_blueprint": {
                    "path": "frequenz_dispatch/keep_on_while_dispatch_runs.yaml",
                    "input": {
                        "type_sensor": (
                            "binary_sensor.microgrid_42_battery_charge_running"
                        ),
                        "keep_on": [SWITCH],
                    },
                },
            }
        },
    )
    await hass.async_block_till_done()
    assert hass.states.get("automation.keep_charger_on") is not None
    assert not _is_on(hass)

    await go_to(hass, freezer, t0 + timedelta(minutes=5))
    assert _is_on(hass)

    # Someone switches it off while the dispatch runs: it goes back on.
    await hass.services.async_call(
        "input_boolean", "turn_off", {"entity_id": SWITCH}, blocking=True
    )
    await hass.async_block_till_done()
    assert _is_on(hass)

    # The first dispatch ends while the second one runs: still on.
    await go_to(hass, freezer, t0 + timedelta(minutes=15))
    assert _is_on(hass)

    await go_to(hass, freezer, t0 + timedelta(minutes=25))
    assert not _is_on(hass)

    # Another type does not touch it.
    await go_to(hass, freezer, t0 + timedelta(minutes=30))
    assert not _is_on(hass)


async def test_follow_a_setpoint_through_overlaps_and_a_payload_change(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    tmp_path: Path,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    hass.config.config_dir = str(tmp_path)
    target = tmp_path / "blueprints/automation/frequenz_dispatch"
    target.mkdir(parents=True)
    shutil.copy(SETPOINT_BLUEPRINT, target)

    def limit(start: int, minutes: int, amps: float) -> int:
        return create_dispatch(
            dispatch_server,
            type="EV_CHARGING_LIMIT",
            target=["EV_CHARGER"],
            start_time=t0 + timedelta(minutes=start),
            duration=timedelta(minutes=minutes),
            payload={"limits": {"max_current_a": amps}},
        )

    limit(5, 10, 8)
    second = limit(10, 15, 40)
    coordinator, _ = await setup_and_follow(hass, entry_data, dispatch_server)
    sensor = await add_subentry(
        hass,
        coordinator.config_entry,
        "setpoint",
        {
            "dispatch_type": "EV_CHARGING_LIMIT",
            "payload_key": "limits.max_current_a",
            "kind": "current",
        },
    )
    assert await async_setup_component(hass, "homeassistant", {})
    assert await async_setup_component(
        hass,
        "input_number",
        {
            "input_number": {
                "charger_current": {"min": 6, "max": 32, "step": 1, "initial": 32}
            }
        },
    )
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "alias": "Follow the charging limit",
                "use_blueprint": {
                    "path": "frequenz_dispatch/follow_dispatch_setpoint.yaml",
                    "input": {
                        "setpoint_sensor": sensor,
                        "target_entity": CURRENT,
                        "factor": 2,
                        "reset_value": 20,
                    },
                },
            }
        },
    )
    await hass.async_block_till_done()
    assert _current(hass) == 32

    await go_to(hass, freezer, t0 + timedelta(minutes=5))
    assert _current(hass) == 16  # 8 A times 2
    # The second starts last: it counts, clamped to the entity's maximum.
    await go_to(hass, freezer, t0 + timedelta(minutes=10))
    assert _current(hass) == 32
    # Its payload changes while it runs: followed at once.
    dispatch_server.update(
        MICROGRID_ID, second, payload={"limits": {"max_current_a": 5}}
    )
    await wait_for(hass, lambda: _current(hass) == 10, "new limit")
    # The first ends; the second still runs.
    await go_to(hass, freezer, t0 + timedelta(minutes=15))
    assert _current(hass) == 10
    # None runs: back to the chosen value.
    await go_to(hass, freezer, t0 + timedelta(minutes=25))
    assert hass.states.get(sensor).state == "unknown"  # type: ignore[union-attr]
    assert _current(hass) == 20


CURRENT = "input_number.charger_current"


def _current(hass: HomeAssistant) -> float:
    state = hass.states.get(CURRENT)
    assert state is not None
    return float(state.state)
