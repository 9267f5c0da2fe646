"""Logbook lines of the bus events, read back through HA's logbook API."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from homeassistant.components.recorder.core import Recorder
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.frequenz_dispatch.logbook import describe_message
from custom_components.frequenz_dispatch.names import readable_type
from dispatch_sim.server import DispatchSimulator

from .common import create_dispatch, setup_and_follow, wait_for


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    recorder_db_url: str, enable_custom_integrations: None
) -> None:
    """Prepare the recorder's database before HA starts (and load ours)."""


async def _logbook(
    hass: HomeAssistant, client_factory: WebSocketGenerator, since: datetime
) -> list[dict[str, Any]]:
    await async_wait_recording_done(hass)
    client = await client_factory(hass)
    await client.send_json_auto_id(
        {
            "type": "logbook/get_events",
            "start_time": since.isoformat(),
            # The clock is frozen: the events carry the very instant of "now".
            "end_time": (since + timedelta(hours=2)).isoformat(),
        }
    )
    reply = await client.receive_json()
    assert reply["success"], reply
    return [
        entry for entry in reply["result"] if entry.get("domain") == "frequenz_dispatch"
    ]


@pytest.mark.parametrize(
    ("language", "charge", "fcr"),
    [
        ("en", "Battery charge", "FCR prequalification"),
        ("de", "Batterieladung", "FCR-Präqualifikation"),
    ],
)
async def test_logbook_lines_read_naturally(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    hass_ws_client: WebSocketGenerator,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
    language: str,
    charge: str,
    fcr: str,
) -> None:
    await hass.config.async_set_time_zone("Europe/Berlin")
    hass.config.language = language
    # The logbook needs the frontend only for its panel; the test has no frontend.
    hass.config.components.add("frontend")
    assert await async_setup_component(hass, "logbook", {})
    charge_id = create_dispatch(
        dispatch_server,
        start_time=t0 - timedelta(minutes=1),
        duration=timedelta(minutes=30),
    )
    fcr_id = create_dispatch(
        dispatch_server,
        type="FCR_PREQUALIFICATION",
        start_time=t0 - timedelta(minutes=1),
        duration=None,
        dry_run=True,
    )
    _, recorder = await setup_and_follow(hass, entry_data, dispatch_server)
    hass.bus.async_fire("homeassistant_started")  # the held `started` events go out
    await wait_for(hass, recorder.count_is(2), "started events")

    entries = await _logbook(hass, hass_ws_client, t0 - timedelta(hours=1))
    until = dt_util.as_local(t0 + timedelta(minutes=29)).strftime("%H:%M")
    assert {(e["name"], e["message"], e["icon"]) for e in entries} == {
        (
            f"{charge} (dispatch {charge_id})",
            f"started, until {until}",
            "mdi:play-circle",
        ),
        (
            f"{fcr} (dispatch {fcr_id})",
            "started, open-ended (dry run)",
            "mdi:play-circle",
        ),
    }


def _at(hour: int, minute: int = 0, day: int = 2) -> str:
    year = dt_util.now().year  # a date of this year is shown without its year
    return datetime(year, 12, day, hour, minute, tzinfo=dt_util.UTC).isoformat()


@pytest.mark.parametrize(
    ("kind", "data", "message"),
    [
        (
            "started",
            {"window_start": _at(13), "window_end": _at(13, 15)},
            "started, until 14:15",
        ),
        (
            "started",
            {"window_start": _at(22), "window_end": _at(23, 30)},
            "started, until 3 Dec 00:30",
        ),
        (
            "started",
            {"window_start": _at(13), "window_end": None},
            "started, open-ended",
        ),
        ("stopped", {"window_start": _at(13), "window_end": _at(14)}, "stopped"),
        (
            "created",
            {"start_time": _at(9, 5, day=4)},
            "was created, starts 4 Dec 10:05",
        ),
        ("updated", {"dry_run": True}, "was updated (dry run)"),
        ("deleted", {}, "was deleted"),
    ],
)
async def test_messages_use_local_time(
    hass: HomeAssistant,
    kind: str,
    data: dict[str, Any],
    message: str,
) -> None:
    await hass.config.async_set_time_zone("Europe/Berlin")
    assert describe_message(kind, data) == message


@pytest.mark.parametrize(
    ("raw", "readable"),
    [
        ("BATTERY_CHARGE", "Battery charge"),
        ("FCR_PREQUALIFICATION", "FCR prequalification"),
        ("ev-charging limit", "EV charging limit"),
        ("peakShaving", "PeakShaving"),
        ("pv.curtailment", "PV curtailment"),
        ("___", "___"),
    ],
)
def test_readable_type(raw: str, readable: str) -> None:
    assert readable_type(raw) == readable
