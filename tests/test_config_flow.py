"""Config, reauth, reconfigure and options flows against a real local server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
import json
from pathlib import Path
import threading
from typing import Any

import grpc
from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    SOURCE_USER,
    ConfigEntry,
    ConfigEntryState,
    ConfigFlowResult,
)
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    start_reauth_flow,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.frequenz_dispatch.channel import MAX_KEY_LENGTH
from custom_components.frequenz_dispatch.coordinator import FrequenzDispatchCoordinator
from dispatch_sim.server import DispatchSimulator

from .common import settle, setup_entry, wait_for
from .conftest import API_KEY, DOMAIN, MICROGRID_ID

STRINGS = json.loads(
    (
        Path(__file__).parent.parent
        / "custom_components"
        / "frequenz_dispatch"
        / "strings.json"
    ).read_text()
)
OTHER_KEY = "other-api-key-9876543210"
# A zero-width space, as pasted along with a key from a web page: gRPC cannot
# send it as metadata, so the form refuses it.
UNSENDABLE_KEY = API_KEY + "\u200b"


def _assert_known(result: ConfigFlowResult) -> None:
    """Every error and abort reason a flow returns has a text in strings.json."""
    section = STRINGS["config"]
    for error in (result.get("errors") or {}).values():
        assert error in section["error"], error
    if result["type"] is FlowResultType.ABORT:
        assert result["reason"] in section["abort"], result["reason"]


async def _user_flow(hass: HomeAssistant) -> ConfigFlowResult:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {}
    return result


async def _configure(
    hass: HomeAssistant, result: ConfigFlowResult, user_input: dict[str, Any]
) -> ConfigFlowResult:
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input
    )
    _assert_known(result)
    await hass.async_block_till_done()
    return result


async def _reconfigure_flow(
    hass: HomeAssistant, entry: ConfigEntry
) -> ConfigFlowResult:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry.entry_id}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    return result


async def _configure_once_reachable(
    hass: HomeAssistant, result: ConfigFlowResult, user_input: dict[str, Any]
) -> ConfigFlowResult:
    """Submit until the restarted server is reachable again.

    gRPC shares one connection per address between channels and backs off
    (about 1 s) after a failed attempt, so a new check right after the server
    is back may still fail; a user pressing submit again gets through.
    """
    for _ in range(50):
        result = await _configure(hass, result, user_input)
        if result.get("errors") != {"base": "cannot_connect"}:
            return result
        await settle(hass, 0.1)
    raise AssertionError("server still unreachable")


def _detail(result: ConfigFlowResult) -> str:
    """What the form says is wrong in detail."""
    placeholders = result.get("description_placeholders")
    assert placeholders is not None
    return placeholders["error_detail"]


def _entities(hass: HomeAssistant, entry: ConfigEntry) -> set[tuple[str, str]]:
    """(entity_id, unique_id) of every registry entry of a config entry."""
    registry = er.async_get(hass)
    return {
        (item.entity_id, item.unique_id)
        for item in er.async_entries_for_config_entry(registry, entry.entry_id)
    }


def _is_loaded(entry: ConfigEntry) -> bool:
    # A function, so that mypy does not keep an earlier narrowing of the state.
    return entry.state is ConfigEntryState.LOADED


def _only_entry(hass: HomeAssistant) -> ConfigEntry:
    entries = hass.config_entries.async_entries(DOMAIN)
    assert len(entries) == 1
    return entries[0]


def _add_dispatch(server: DispatchSimulator, start: datetime) -> int:
    return server.create(
        MICROGRID_ID,
        type="BATTERY_CHARGE",
        start_time=start,
        duration=timedelta(hours=1),
        target=[1],
    )


@pytest.fixture
async def second_server() -> AsyncIterator[DispatchSimulator]:
    """Another server on another port, with another API key."""
    async with DispatchSimulator(api_key=OTHER_KEY, host="127.0.0.1", port=0) as server:
        yield server


# -- user step ---------------------------------------------------------------


async def test_user_creates_entry_that_loads(
    hass: HomeAssistant, dispatch_server: DispatchSimulator
) -> None:
    dispatch_id = _add_dispatch(dispatch_server, dt_util.utcnow() + timedelta(days=1))
    result = await _user_flow(hass)
    result = await _configure(
        hass,
        result,
        {
            "server_url": f"  {dispatch_server.url} ",
            "api_key": f" {API_KEY}\n",
            "microgrid_id": 42.0,  # what the number box sends
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"Microgrid {MICROGRID_ID}"
    assert result["data"] == {
        "server_url": dispatch_server.url,
        "api_key": API_KEY,
        "microgrid_id": MICROGRID_ID,
    }
    assert type(result["data"]["microgrid_id"]) is int
    entry = _only_entry(hass)
    assert entry.unique_id == str(MICROGRID_ID)
    assert (entry.version, entry.minor_version) == (1, 3)
    assert entry.state is ConfigEntryState.LOADED
    unique_ids = {unique_id for _, unique_id in _entities(hass, entry)}
    prefix = MICROGRID_ID
    assert unique_ids == {
        f"{prefix}_api_connection",
        f"{prefix}_calendar",
        f"{prefix}_dispatch_event",
        f"{prefix}_next_start",
        f"{prefix}_running_dispatches",
        f"{prefix}_dispatch_{dispatch_id}",
        f"{prefix}_type_BATTERY_CHARGE",
    }
    for entity_id, _ in _entities(hass, entry):
        assert hass.states.get(entity_id) is not None, entity_id
    await wait_for(hass, lambda: dispatch_server.open_streams == 1, "stream open")


async def test_user_check_asks_for_one_page(
    hass: HomeAssistant, dispatch_server: DispatchSimulator, entry_data: dict[str, Any]
) -> None:
    # More than one page of a full listing.
    for n in range(150):
        _add_dispatch(dispatch_server, dt_util.utcnow() + timedelta(days=1, minutes=n))
    lists = dispatch_server.list_calls
    result = await _configure(hass, await _user_flow(hass), entry_data)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = _only_entry(hass)
    assert entry.state is ConfigEntryState.LOADED
    by_flow_and_setup = dispatch_server.list_calls - lists

    # The setup alone lists as many pages as it takes; the check one page.
    lists = dispatch_server.list_calls
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    by_setup = dispatch_server.list_calls - lists
    assert by_setup >= 2
    assert by_flow_and_setup == by_setup + 1


async def test_user_sign_secret_is_stored_and_used(hass: HomeAssistant) -> None:
    # This server verifies request signatures (the fixture's server ignores them).
    signing = DispatchSimulator(api_key=API_KEY, sign_secret="s3cret")
    await signing.start()
    try:
        base = {"server_url": signing.url, "api_key": API_KEY, "microgrid_id": 42}
        result = await _user_flow(hass)
        for secret in (None, "   ", "wrong"):
            user_input = dict(base)
            if secret is not None:
                user_input["sign_secret"] = secret
            result = await _configure(hass, result, user_input)
            assert result["type"] is FlowResultType.FORM
            assert result["errors"] == {"base": "invalid_auth"}
        result = await _configure(hass, result, {**base, "sign_secret": " s3cret "})
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert result["data"] == {**base, "sign_secret": "s3cret"}
        entry = _only_entry(hass)
        assert entry.state is ConfigEntryState.LOADED
        await wait_for(hass, lambda: signing.open_streams == 1, "signed stream")
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await signing.stop()


async def test_user_blank_secret_is_not_stored(
    hass: HomeAssistant, dispatch_server: DispatchSimulator
) -> None:
    result = await _user_flow(hass)
    result = await _configure(
        hass,
        result,
        {
            "server_url": dispatch_server.url,
            "api_key": API_KEY,
            "sign_secret": "  ",
            "microgrid_id": 7,
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Microgrid 7"
    assert "sign_secret" not in result["data"]
    assert result["data"]["microgrid_id"] == 7


@pytest.mark.parametrize(
    ("bad_input", "errors"),
    [
        ({"api_key": "wrong-key"}, {"base": "invalid_auth"}),
        ({"api_key": "   "}, {"api_key": "invalid_auth"}),
        ({"api_key": UNSENDABLE_KEY}, {"api_key": "invalid_key_characters"}),
        ({"api_key": "ab\ncd"}, {"api_key": "invalid_key_characters"}),
        ({"api_key": "ab\x00cd"}, {"api_key": "invalid_key_characters"}),
        # Longer than gRPC's metadata limit: the server could not read it.
        ({"api_key": "k" * 20_000}, {"api_key": "key_too_long"}),
        ({"sign_secret": "s\nt"}, {"sign_secret": "invalid_key_characters"}),
        ({"server_url": "http://nope"}, {"server_url": "invalid_url"}),
        ({"server_url": "grpc://"}, {"server_url": "invalid_url"}),
        ({"server_url": "grpc://127.0.0.1:1/path"}, {"server_url": "invalid_url"}),
        ({"server_url": "grpc://127.0.0.1:1?ssl=maybe"}, {"server_url": "invalid_url"}),
    ],
)
async def test_user_error_then_recover(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    bad_input: dict[str, str],
    errors: dict[str, str],
) -> None:
    result = await _user_flow(hass)
    result = await _configure(hass, result, {**entry_data, **bad_input})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == errors
    assert hass.config_entries.async_entries(DOMAIN) == []
    # The user corrects the input in the same flow and finishes.
    result = await _configure(hass, result, entry_data)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert _only_entry(hass).state is ConfigEntryState.LOADED


async def test_a_key_at_the_length_limit_is_carried(
    hass: HomeAssistant, dispatch_server: DispatchSimulator, entry_data: dict[str, Any]
) -> None:
    """The longest key accepted reaches the server, and the entry lists with it."""
    key = "k" * MAX_KEY_LENGTH
    dispatch_server.api_key = key
    dispatch_id = dispatch_server.create(
        MICROGRID_ID,
        type="BATTERY_CHARGE",
        start_time=dt_util.utcnow() + timedelta(days=1),
        duration=None,
        target=[1],
    )
    result = await _user_flow(hass)
    result = await _configure(hass, result, {**entry_data, "api_key": key})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = _only_entry(hass)
    assert entry.state is ConfigEntryState.LOADED
    assert list(entry.runtime_data.dispatches()) == [dispatch_id]
    result = await _user_flow(hass)
    result = await _configure(
        hass, result, {**entry_data, "api_key": key + "k", "microgrid_id": 43}
    )
    assert result["errors"] == {"api_key": "key_too_long"}
    assert (result["description_placeholders"] or {})["error_detail"] == str(
        MAX_KEY_LENGTH
    )


async def test_user_cannot_connect_then_recover(
    hass: HomeAssistant, dispatch_server: DispatchSimulator, entry_data: dict[str, Any]
) -> None:
    await dispatch_server.stop()
    result = await _user_flow(hass)
    result = await _configure(hass, result, entry_data)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
    await dispatch_server.start()  # same port
    result = await _configure_once_reachable(hass, result, entry_data)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert _only_entry(hass).state is ConfigEntryState.LOADED


async def test_user_duplicate_aborts(
    hass: HomeAssistant, dispatch_server: DispatchSimulator, entry_data: dict[str, Any]
) -> None:
    await setup_entry(hass, entry_data)
    lists = dispatch_server.list_calls
    result = await _user_flow(hass)
    result = await _configure(
        hass,
        result,
        {**entry_data, "server_url": f" {entry_data['server_url']} ", "api_key": "x"},
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert dispatch_server.list_calls == lists  # aborted before connecting
    # Another microgrid on the same server is a new entry.
    result = await _user_flow(hass)
    result = await _configure(hass, result, {**entry_data, "microgrid_id": 43})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert len(hass.config_entries.async_entries(DOMAIN)) == 2


# -- reauth ------------------------------------------------------------------


async def test_reauth_after_rejected_key(
    hass: HomeAssistant, dispatch_server: DispatchSimulator, entry_data: dict[str, Any]
) -> None:
    entry = await setup_entry(hass, {**entry_data, "api_key": "old-key"})
    assert entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert len(flows) == 1
    assert flows[0]["context"]["source"] == "reauth"
    result = await hass.config_entries.flow.async_configure(flows[0]["flow_id"])
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reauth_confirm"
    assert result["description_placeholders"] == {
        "microgrid_id": str(MICROGRID_ID),
        "name": entry.title,
        "error_detail": "",
    }

    result = await _configure(hass, result, {"api_key": "still-wrong"})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}
    assert entry.data["api_key"] == "old-key"

    result = await _configure(hass, result, {"api_key": f" {API_KEY} "})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert _only_entry(hass) is entry
    assert dict(entry.data) == entry_data
    assert entry.unique_id == str(MICROGRID_ID)
    assert _is_loaded(entry)
    assert hass.config_entries.flow.async_progress_by_handler(DOMAIN) == []
    assert any(uid.endswith("_api_connection") for _, uid in _entities(hass, entry))


async def test_reauth_of_loaded_entry_keeps_entities(
    hass: HomeAssistant, dispatch_server: DispatchSimulator, entry_data: dict[str, Any]
) -> None:
    _add_dispatch(dispatch_server, dt_util.utcnow() + timedelta(days=1))
    entry = await setup_entry(hass, {**entry_data, "sign_secret": "old-secret"})
    assert entry.state is ConfigEntryState.LOADED
    before = _entities(hass, entry)
    assert len(before) == 7
    old_coordinator = entry.runtime_data

    result = await start_reauth_flow(hass, entry)
    assert result["step_id"] == "reauth_confirm"
    result = await _configure(hass, result, {"api_key": UNSENDABLE_KEY})
    assert result["errors"] == {"api_key": "invalid_key_characters"}
    result = await _configure(hass, result, {"api_key": ""})
    assert result["errors"] == {"api_key": "invalid_auth"}
    # A blank secret clears the old one (it is not kept behind the user's back).
    result = await _configure(hass, result, {"api_key": API_KEY, "sign_secret": ""})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert dict(entry.data) == entry_data
    await wait_for(
        hass,
        lambda: (
            entry.state is ConfigEntryState.LOADED
            and entry.runtime_data is not old_coordinator
        ),
        "reloaded",
    )
    assert _only_entry(hass) is entry
    assert _entities(hass, entry) == before

    # Reauth that sets a new secret.
    result = await start_reauth_flow(hass, entry)
    result = await _configure(
        hass, result, {"api_key": API_KEY, "sign_secret": " new-secret "}
    )
    assert result["reason"] == "reauth_successful"
    assert dict(entry.data) == {**entry_data, "sign_secret": "new-secret"}
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert _entities(hass, entry) == before


async def test_reauth_cannot_connect(
    hass: HomeAssistant, dispatch_server: DispatchSimulator, entry_data: dict[str, Any]
) -> None:
    entry = await setup_entry(hass, entry_data)
    result = await start_reauth_flow(hass, entry)
    await dispatch_server.stop()
    result = await _configure(hass, result, {"api_key": API_KEY})
    assert result["errors"] == {"base": "cannot_connect"}
    await dispatch_server.start()
    result = await _configure_once_reachable(hass, result, {"api_key": API_KEY})
    assert result["reason"] == "reauth_successful"


# -- reconfigure -------------------------------------------------------------


async def test_reconfigure_moves_to_other_server_keeping_entities(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    second_server: DispatchSimulator,
    entry_data: dict[str, Any],
) -> None:
    start = dt_util.utcnow() + timedelta(days=1)
    # The same data on both servers (ids are assigned from 1 on each).
    dispatch_id = _add_dispatch(dispatch_server, start)
    assert _add_dispatch(second_server, start) == dispatch_id
    entry = await setup_entry(hass, entry_data)
    await wait_for(hass, lambda: dispatch_server.open_streams == 1, "stream open")
    before = _entities(hass, entry)
    assert any(uid.endswith(f"_dispatch_{dispatch_id}") for _, uid in before)

    result = await _reconfigure_flow(hass, entry)
    schema = result["data_schema"]
    assert schema is not None
    assert {str(key) for key in schema.schema} == {
        "server_url",
        "api_key",
        "sign_secret",
        "microgrid_id",
    }
    assert result["description_placeholders"] == {
        "microgrid_id": str(MICROGRID_ID),
        "error_detail": "",
    }
    new_url = second_server.url
    # The old key is rejected by the new server: the form shows it.
    result = await _configure(hass, result, {"server_url": new_url, "api_key": API_KEY})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}
    assert entry.data == entry_data

    result = await _configure(
        hass,
        result,
        {"server_url": new_url, "api_key": OTHER_KEY, "sign_secret": "sec"},
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert _only_entry(hass) is entry
    assert dict(entry.data) == {
        "server_url": new_url,
        "api_key": OTHER_KEY,
        "sign_secret": "sec",
        "microgrid_id": MICROGRID_ID,
    }
    assert entry.unique_id == str(MICROGRID_ID)
    await wait_for(
        hass,
        lambda: (
            entry.state is ConfigEntryState.LOADED
            and second_server.open_streams == 1
            and dispatch_server.open_streams == 0
        ),
        "moved to the new server",
    )
    assert _entities(hass, entry) == before
    coordinator: FrequenzDispatchCoordinator = entry.runtime_data
    assert set(coordinator.dispatches()) == {dispatch_id}


async def test_reconfigure_same_url_changes_secret(
    hass: HomeAssistant, dispatch_server: DispatchSimulator, entry_data: dict[str, Any]
) -> None:
    entry = await setup_entry(hass, {**entry_data, "sign_secret": "old"})
    before = _entities(hass, entry)
    result = await _reconfigure_flow(hass, entry)
    result = await _configure(
        hass, result, {"server_url": entry_data["server_url"], "api_key": API_KEY}
    )
    assert result["reason"] == "reconfigure_successful"
    assert dict(entry.data) == entry_data  # the omitted secret is cleared
    assert entry.unique_id == str(MICROGRID_ID)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert _entities(hass, entry) == before


async def test_reconfigure_errors_then_recover(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    second_server: DispatchSimulator,
    entry_data: dict[str, Any],
) -> None:
    entry = await setup_entry(hass, entry_data)
    new_url = second_server.url
    await second_server.stop()
    result = await _reconfigure_flow(hass, entry)
    for user_input, errors in (
        (
            {"server_url": "grpc://", "api_key": OTHER_KEY},
            {"server_url": "invalid_url"},
        ),
        ({"server_url": new_url, "api_key": OTHER_KEY}, {"base": "cannot_connect"}),
        ({"server_url": new_url, "api_key": " "}, {"api_key": "invalid_auth"}),
    ):
        result = await _configure(hass, result, user_input)
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == errors
    await second_server.start()
    result = await _configure_once_reachable(
        hass, result, {"server_url": new_url, "api_key": "k"}
    )
    assert result["errors"] == {"base": "invalid_auth"}
    result = await _configure(
        hass, result, {"server_url": new_url, "api_key": UNSENDABLE_KEY}
    )
    assert result["errors"] == {"api_key": "invalid_key_characters"}
    assert entry.data == entry_data
    result = await _configure(
        hass, result, {"server_url": new_url, "api_key": OTHER_KEY}
    )
    assert result["reason"] == "reconfigure_successful"
    assert entry.data["server_url"] == new_url


async def test_reconfigure_to_another_microgrid_aborts(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    second_server: DispatchSimulator,
    entry_data: dict[str, Any],
) -> None:
    entry = await setup_entry(hass, entry_data)
    lists = dispatch_server.list_calls + second_server.list_calls
    result = await _reconfigure_flow(hass, entry)
    result = await _configure(
        hass,
        result,
        {
            "server_url": second_server.url,
            "api_key": OTHER_KEY,
            "microgrid_id": MICROGRID_ID + 1,
        },
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_microgrid"
    assert dispatch_server.list_calls + second_server.list_calls == lists
    assert dict(entry.data) == entry_data
    assert entry.unique_id == str(MICROGRID_ID)
    assert entry.state is ConfigEntryState.LOADED


async def test_same_microgrid_on_another_url_aborts(
    hass: HomeAssistant, dispatch_server: DispatchSimulator, entry_data: dict[str, Any]
) -> None:
    """127.0.0.1 and localhost are one server: one microgrid, one entry."""
    await setup_entry(hass, entry_data)
    lists = dispatch_server.list_calls
    result = await _user_flow(hass)
    result = await _configure(
        hass,
        result,
        {
            **entry_data,
            "server_url": entry_data["server_url"].replace("127.0.0.1", "localhost"),
        },
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert dispatch_server.list_calls == lists


# -- options -----------------------------------------------------------------


async def test_options_dry_run_counts_reloads(
    hass: HomeAssistant, dispatch_server: DispatchSimulator, entry_data: dict[str, Any]
) -> None:
    entry = await setup_entry(hass, entry_data)
    old_coordinator = entry.runtime_data
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "init"
    schema = result["data_schema"]
    assert schema is not None
    assert schema({}) == {"dry_run_counts": False}

    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"dry_run_counts": True}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.options == {"dry_run_counts": True}
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data is not old_coordinator  # reloaded

    # The form now defaults to the stored value.
    result = await hass.config_entries.options.async_init(entry.entry_id)
    schema = result["data_schema"]
    assert schema is not None
    assert schema({}) == {"dry_run_counts": True}


# -- input validation (issue 10, item 9) ---------------------------------------


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("keep_alive_interval_s=1e20", "keep_alive_interval_s must lie within"),
        ("keep_alive_timeout_s=inf", "keep_alive_timeout_s must lie within"),
        ("keep_alive_timeout_s=nan", "keep_alive_timeout_s must lie within"),
        ("keep_alive_interval_s=0", "keep_alive_interval_s must lie within"),
        ("keep_alive_interval_s=soon", "keep_alive_interval_s must be a number"),
        ("keep_alive=false&keep_alive_interval_s=5", "need keep_alive=true"),
        ("ssl=false&ssl_root_certificates_path=/x", "need ssl=true"),
        ("ssl_private_key_path=/k", "go together"),
        ("retries=3", "unknown option(s): retries"),
        ("ssl", "malformed options"),
    ],
)
async def test_user_url_options_are_checked(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    query: str,
    detail: str,
) -> None:
    url = f"grpc://127.0.0.1:{dispatch_server.port}?{query}"
    result = await _user_flow(hass)
    result = await _configure(hass, result, {**entry_data, "server_url": url})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"server_url": "invalid_url"}
    assert detail in _detail(result)
    assert dispatch_server.list_calls == 0


@pytest.mark.parametrize(
    "url",
    [
        "grpc://127.0.0.1:0",
        "grpc://127.0.0.1:70000",
        "grpc://user:pw@127.0.0.1:1",
        "grpc://127.0.0.1:1#frag",
        "grpc://[::1",
        "grpc://127.0.0.1:1?ssl=false\x00",
    ],
)
async def test_user_url_shapes_are_checked(
    hass: HomeAssistant, entry_data: dict[str, Any], url: str
) -> None:
    result = await _user_flow(hass)
    result = await _configure(hass, result, {**entry_data, "server_url": url})
    assert result["errors"] == {"server_url": "invalid_url"}


BAD_URL = {"server_url": "invalid_url"}


async def _rest_flow(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """Start a user flow and submit `body`, as the frontend does (HTTP)."""
    assert await async_setup_component(hass, "config", {})
    client = await hass_client()
    response = await client.post(
        "/api/config/config_entries/flow", json={"handler": DOMAIN}
    )
    assert response.status == 200
    flow_id = (await response.json())["flow_id"]
    response = await client.post(
        f"/api/config/config_entries/flow/{flow_id}", json=body
    )
    return response.status, await response.json()


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"microgrid_id": "nan"}, {"microgrid_id": "invalid_microgrid_id"}),
        ({"microgrid_id": "inf"}, {"microgrid_id": "invalid_microgrid_id"}),
        ({"microgrid_id": 1.5}, {"microgrid_id": "invalid_microgrid_id"}),
        ({"microgrid_id": 2.0**64}, {"microgrid_id": "invalid_microgrid_id"}),
        (
            {"server_url": "URL?keep_alive_interval_s=1e20"},
            {"server_url": "invalid_url"},
        ),
        ({"server_url": "URL?keep_alive_timeout_s=inf"}, {"server_url": "invalid_url"}),
        ({"api_key": "line\nbreak"}, {"api_key": "invalid_key_characters"}),
        ({"api_key": "nul\x00byte"}, {"api_key": "invalid_key_characters"}),
    ],
)
async def test_rest_flow_refuses_bad_input_with_a_form_error(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    changes: dict[str, Any],
    errors: dict[str, str],
) -> None:
    plain = f"grpc://127.0.0.1:{dispatch_server.port}"
    body = {
        **entry_data,
        **{
            k: v.replace("URL", plain) if isinstance(v, str) else v
            for k, v in changes.items()
        },
    }
    status, result = await _rest_flow(hass, hass_client, body)
    assert status == 200, result
    assert result["type"] == "form"
    assert result["errors"] == errors
    assert hass.config_entries.async_entries(DOMAIN) == []


async def test_rest_flow_whole_float_id_is_taken(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
) -> None:
    status, result = await _rest_flow(
        hass, hass_client, {**entry_data, "microgrid_id": 42.0}
    )
    assert status == 200, result
    assert result["type"] == "create_entry"
    assert _only_entry(hass).data["microgrid_id"] == 42
    assert _only_entry(hass).unique_id == "42"


# -- certificate files -----------------------------------------------------------


@pytest.fixture
def read_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the threads that read files through pathlib."""
    threads: list[str] = []
    original = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        threads.append(threading.current_thread().name)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    return threads


async def test_certificate_files_are_read_off_the_loop(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    tmp_path: Path,
    read_threads: list[str],
) -> None:
    roots = tmp_path / "roots.pem"
    roots.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    url = f"grpc://127.0.0.1:{dispatch_server.port}?ssl_root_certificates_path={roots}"
    result = await _user_flow(hass)
    # The plain-text server cannot speak TLS: the check fails to connect,
    # after the file was read in the executor.
    result = await _configure(hass, result, {**entry_data, "server_url": url})
    assert result["errors"] == {"base": "cannot_connect"}
    assert read_threads
    assert threading.main_thread().name not in read_threads

    missing = tmp_path / "missing.pem"
    url = (
        f"grpc://127.0.0.1:{dispatch_server.port}?ssl_root_certificates_path={missing}"
    )
    result = await _configure(hass, result, {**entry_data, "server_url": url})
    assert result["errors"] == {"server_url": "invalid_url"}
    assert str(missing) in _detail(result)


async def test_setup_reads_certificate_files_off_the_loop(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    tmp_path: Path,
    read_threads: list[str],
) -> None:
    roots = tmp_path / "roots.pem"
    roots.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    url = f"grpc://127.0.0.1:{dispatch_server.port}?ssl_root_certificates_path={roots}"
    entry = await setup_entry(hass, {**entry_data, "server_url": url})
    assert entry.state is ConfigEntryState.SETUP_RETRY  # no TLS on this server
    assert read_threads
    assert threading.main_thread().name not in read_threads
    await hass.config_entries.async_unload(entry.entry_id)


# -- migration to the microgrid ID as unique ID ------------------------------------


def _old_entry(data: dict[str, Any]) -> MockConfigEntry:
    """An entry as version 1.1 stored it."""
    return MockConfigEntry(
        domain=DOMAIN,
        title=f"Microgrid {data['microgrid_id']} ({data['server_url']})",
        data=data,
        unique_id=f"{data['server_url']}#{data['microgrid_id']}",
        version=1,
        minor_version=1,
    )


async def test_migration_sets_the_microgrid_id_as_unique_id(
    hass: HomeAssistant, dispatch_server: DispatchSimulator, entry_data: dict[str, Any]
) -> None:
    entry = _old_entry(entry_data)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert entry.unique_id == str(MICROGRID_ID)
    assert (entry.version, entry.minor_version) == (1, 3)


async def test_migration_of_two_entries_for_one_microgrid(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
) -> None:
    """127.0.0.1 and localhost made two entries; one stays, one gets a repair."""
    kept = _old_entry(entry_data)
    other_url = entry_data["server_url"].replace("127.0.0.1", "localhost")
    duplicate = _old_entry({**entry_data, "server_url": other_url})
    kept.add_to_hass(hass)
    duplicate.add_to_hass(hass)
    # Setting up the integration sets up both entries, in the order added.
    await hass.config_entries.async_setup(kept.entry_id)
    await hass.async_block_till_done()
    assert kept.state is ConfigEntryState.LOADED
    assert kept.unique_id == str(MICROGRID_ID)
    assert duplicate.state is ConfigEntryState.MIGRATION_ERROR
    assert duplicate.unique_id == f"{other_url}#{MICROGRID_ID}"
    await wait_for(hass, lambda: dispatch_server.open_streams == 1, "one stream")

    issue_id = f"duplicate_microgrid_{duplicate.entry_id}"
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.is_fixable
    assert issue.translation_placeholders == {
        "title": duplicate.title,
        "microgrid_id": str(MICROGRID_ID),
        "server_url": other_url,
        "kept_title": kept.title,
    }
    issues = STRINGS["issues"]["duplicate_microgrid"]
    assert "{title}" in issues["fix_flow"]["step"]["confirm"]["description"]

    # The repair removes the duplicate entry; the issue goes with it.
    assert await async_setup_component(hass, "repairs", {})
    client = await hass_client()
    response = await client.post(
        "/api/repairs/issues/fix", json={"handler": DOMAIN, "issue_id": issue_id}
    )
    result = await response.json()
    assert result["step_id"] == "confirm"
    response = await client.post(f"/api/repairs/issues/fix/{result['flow_id']}")
    result = await response.json()
    assert result["type"] == "create_entry"
    await hass.async_block_till_done()
    assert hass.config_entries.async_entries(DOMAIN) == [kept]
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    assert kept.state is ConfigEntryState.LOADED


# -- every refusal of the user step, then recovery ------------------------------


async def test_user_unknown_error_then_recover(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An answer the flow does not expect shows "unknown"; a retry finishes."""
    dispatch_server.fail_next(grpc.StatusCode.INVALID_ARGUMENT, rpcs=("list",))
    result = await _user_flow(hass)
    result = await _configure(hass, result, entry_data)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "unknown"}
    assert "Unexpected error while checking the Dispatch API" in caplog.text
    assert API_KEY not in caplog.text
    result = await _configure(hass, result, entry_data)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert _only_entry(hass).state is ConfigEntryState.LOADED


@pytest.mark.parametrize("microgrid_id", [1.5, 2.0**64])
async def test_user_invalid_microgrid_id_then_recover(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    microgrid_id: Any,
) -> None:
    result = await _user_flow(hass)
    result = await _configure(
        hass, result, {**entry_data, "microgrid_id": microgrid_id}
    )
    assert result["errors"] == {"microgrid_id": "invalid_microgrid_id"}
    result = await _configure(hass, result, entry_data)
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_user_unreadable_certificate_then_recover(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    tmp_path: Path,
) -> None:
    """A certificate file that cannot be read: the URL field says why."""
    missing = tmp_path / "missing.pem"
    url = (
        f"grpc://127.0.0.1:{dispatch_server.port}?ssl_root_certificates_path={missing}"
    )
    result = await _user_flow(hass)
    result = await _configure(hass, result, {**entry_data, "server_url": url})
    assert result["errors"] == {"server_url": "invalid_url"}
    assert str(missing) in (result["description_placeholders"] or {})["error_detail"]
    result = await _configure(hass, result, entry_data)
    assert result["type"] is FlowResultType.CREATE_ENTRY
