"""The diagnostics download lists the dispatches and never shows a secret."""

from __future__ import annotations

from datetime import datetime, timedelta
import json
from typing import Any

from frequenz.api.dispatch.v1 import dispatch_pb2
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from dispatch_sim.server import DispatchSimulator

from .common import setup_entry, wait_for
from .conftest import API_KEY, MICROGRID_ID

SIGN_SECRET = "sign-secret-abcdef987654"
REDACTED = "**REDACTED**"


async def test_diagnostics_redacts_secrets_and_lists_dispatches(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    t0: datetime,
) -> None:
    # The fixture's server ignores signatures; this one verifies them, so the
    # entry loads only if the secret is really used.
    async with DispatchSimulator(api_key=API_KEY, sign_secret=SIGN_SECRET) as server:
        await _check_diagnostics(hass, hass_client, server, t0)


async def _check_diagnostics(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    server: DispatchSimulator,
    t0: datetime,
) -> None:
    running = server.create(
        MICROGRID_ID,
        type="BATTERY_CHARGE",
        start_time=t0 - timedelta(minutes=1),
        duration=timedelta(minutes=30),
        target=[1, 2],
        payload={"power_w": 5000},
    )
    later = server.create(
        MICROGRID_ID,
        type="PV_LIMIT",
        start_time=t0 + timedelta(hours=1),
        duration=None,
        target=["INVERTER:PV"],
        dry_run=True,
    )
    broken = dispatch_pb2.Dispatch()
    broken.data.type = "NO_START"
    broken.data.target.component_ids.ids.append(1)
    broken_id = server.insert_raw(MICROGRID_ID, broken)

    data = {
        "server_url": server.url,
        "api_key": API_KEY,
        "microgrid_id": MICROGRID_ID,
        "sign_secret": SIGN_SECRET,
    }
    entry = await setup_entry(hass, data, {"dry_run_counts": True})
    await wait_for(hass, lambda: server.open_streams == 1, "stream open")
    assert await async_setup_component(hass, "diagnostics", {})

    result: dict[str, Any] = dict(
        await get_diagnostics_for_config_entry(hass, hass_client, entry)
    )
    dump = json.dumps(result)
    assert API_KEY not in dump
    assert SIGN_SECRET not in dump

    assert result["entry"] == {
        "data": {
            "server_url": server.url,
            "api_key": REDACTED,
            "microgrid_id": MICROGRID_ID,
            "sign_secret": REDACTED,
        },
        "options": {"dry_run_counts": True},
    }
    assert result["connected"] is True
    dispatches = result["dispatches"]
    by_id = {item["dispatch_id"]: item for item in dispatches}
    assert list(by_id) == [running, later]
    first = by_id[running]
    assert first["type"] == "BATTERY_CHARGE"
    assert first["target"] == [1, 2]
    assert first["payload"] == {"power_w": 5000}
    assert first["window_start"] == (t0 - timedelta(minutes=1)).isoformat()
    assert first["window_end"] == (t0 + timedelta(minutes=29)).isoformat()
    assert isinstance(first["update_time"], str)
    second = by_id[later]
    assert second["dry_run"] is True
    assert second["duration"] is None
    assert second["window_start"] is None
    assert result["skipped_malformed"] == {str(broken_id): "start_time is missing"}
    [told] = result["told_runs"]
    assert told.startswith(f"{running}@{(t0 - timedelta(minutes=1)).isoformat()}#")


async def test_diagnostics_while_disconnected(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
) -> None:
    entry = await setup_entry(hass, entry_data)
    await wait_for(hass, lambda: dispatch_server.open_streams == 1, "stream open")
    await dispatch_server.stop()
    await wait_for(hass, lambda: not entry.runtime_data.connected, "disconnected")
    assert await async_setup_component(hass, "diagnostics", {})
    result: dict[str, Any] = dict(
        await get_diagnostics_for_config_entry(hass, hass_client, entry)
    )
    assert result["connected"] is False
    assert result["dispatches"] == []
    assert API_KEY not in json.dumps(result)
    assert result["entry"]["data"]["api_key"] == REDACTED


async def test_diagnostics_of_an_entry_that_is_not_loaded(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
) -> None:
    assert await async_setup_component(hass, "diagnostics", {})
    await dispatch_server.stop()
    entry = await setup_entry(hass, entry_data)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    result: dict[str, Any] = dict(
        await get_diagnostics_for_config_entry(hass, hass_client, entry)
    )
    assert result["state"] == ConfigEntryState.SETUP_RETRY.value
    assert result["entry"]["data"]["api_key"] == REDACTED
    assert API_KEY not in json.dumps(result)
