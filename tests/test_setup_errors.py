"""Entry data the transport cannot use: a clear state instead of a silent entry."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.frequenz_dispatch.channel import MAX_KEY_LENGTH
from custom_components.frequenz_dispatch.const import DOMAIN
from custom_components.frequenz_dispatch.lookup import (
    check_microgrid_device,
    entry_id_of_device,
)
from dispatch_sim.server import DispatchSimulator

from .common import setup_entry


async def test_a_stored_url_that_is_not_valid_is_a_setup_error(
    hass: HomeAssistant, dispatch_server: DispatchSimulator, entry_data: dict[str, Any]
) -> None:
    entry = await setup_entry(hass, {**entry_data, "server_url": "http://nope"})
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert entry.reason == "The configured server URL is not valid"


async def test_a_stored_key_too_long_to_send_asks_for_a_new_one(
    hass: HomeAssistant, dispatch_server: DispatchSimulator, entry_data: dict[str, Any]
) -> None:
    """A key an older version accepted, longer than gRPC can carry: reauth."""
    long_key = "k" * (MAX_KEY_LENGTH + 1)
    dispatch_server.api_key = long_key
    entry = await setup_entry(hass, {**entry_data, "api_key": long_key})
    assert entry.state is ConfigEntryState.SETUP_ERROR
    [flow] = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert flow["context"]["source"] == SOURCE_REAUTH
    assert dispatch_server.list_calls == 0


async def test_a_device_of_another_integration_is_not_a_microgrid(
    hass: HomeAssistant, dispatch_server: DispatchSimulator, entry_data: dict[str, Any]
) -> None:
    ours = await setup_entry(hass, entry_data)
    other = MockConfigEntry(domain="other")
    other.add_to_hass(hass)
    devices = dr.async_get(hass)
    foreign = devices.async_get_or_create(
        config_entry_id=other.entry_id, identifiers={("other", "42")}
    )
    # Our identifier form, but naming no entry of ours.
    orphan = devices.async_get_or_create(
        config_entry_id=other.entry_id,
        identifiers={("other", "x"), (DOMAIN, other.entry_id)},
    )
    assert entry_id_of_device(hass, foreign.id) is None
    assert entry_id_of_device(hass, orphan.id) is None
    [device] = dr.async_entries_for_config_entry(devices, ours.entry_id)
    assert entry_id_of_device(hass, device.id) == ours.entry_id
    with pytest.raises(Exception, match="not a Frequenz Dispatch microgrid"):
        check_microgrid_device(hass, foreign.id)
