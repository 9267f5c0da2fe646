"""The coordinator over a real local Dispatch API: sync, scheduling, bus events."""

from __future__ import annotations

from datetime import datetime, timedelta
import logging
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from frequenz.api.dispatch.v1 import dispatch_pb2
from frequenz.client.dispatch.recurrence import EndCriteria, Frequency, RecurrenceRule
import grpc
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
import pytest

from dispatch_sim.server import DispatchSimulator

from .common import (
    API_KEY,
    MICROGRID_ID,
    create_dispatch as _create,
    create_running as _create_running,
    go_to as _go_to,
    settle,
    setup_and_follow as _setup,
    setup_entry,
    step_clock,
    wait_for,
)


async def test_initial_fetch_across_pages(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    ids = {
        _create(
            dispatch_server,
            start_time=t0 + timedelta(hours=1 + i),
            duration=timedelta(minutes=5),
        )
        for i in range(230)
    }
    # Another microgrid's dispatch must not show up.
    dispatch_server.create(
        MICROGRID_ID + 1, type="OTHER", start_time=t0, duration=None, target=[1]
    )
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    assert set(coordinator.dispatches()) == ids
    assert dispatch_server.list_calls >= 3  # 100 + 100 + 30
    # Existing dispatches are not "created" on start-up; none runs yet.
    assert recorder.events == []


async def test_stream_create_update_delete(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    dispatch_id = _create(
        dispatch_server,
        start_time=t0 + timedelta(hours=1),
        duration=timedelta(minutes=30),
        payload={"power_w": 5000},
    )
    await wait_for(hass, lambda: dispatch_id in coordinator.dispatches(), "created")
    assert recorder.kinds() == ["created"]
    data = recorder.of("created")[0]
    assert data == {
        "config_entry_id": coordinator.config_entry.entry_id,
        "microgrid_id": MICROGRID_ID,
        "device_id": coordinator.device_id,
        "dispatch_id": dispatch_id,
        "type": "BATTERY_CHARGE",
        "active": True,
        "dry_run": False,
        "start_time": (t0 + timedelta(hours=1)).isoformat(),
        "duration": 1800.0,
        "target": [1, 2],
        "payload": {"power_w": 5000},
        "recurrence": None,
    }

    dispatch_server.update(MICROGRID_ID, dispatch_id, payload={"power_w": 1000})
    await wait_for(hass, lambda: len(recorder.events) == 2, "updated")
    assert recorder.kinds() == ["created", "updated"]
    assert recorder.of("updated")[0]["payload"] == {"power_w": 1000}

    dispatch_server.delete(MICROGRID_ID, dispatch_id)
    await wait_for(hass, lambda: dispatch_id not in coordinator.dispatches(), "deleted")
    assert recorder.kinds() == ["created", "updated", "deleted"]


async def test_one_shot_starts_and_stops_exactly_once(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    start = t0 + timedelta(minutes=10)
    dispatch_id = _create(
        dispatch_server, start_time=start, duration=timedelta(minutes=5)
    )
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)

    await _go_to(hass, freezer, start - timedelta(seconds=1))
    assert recorder.kinds() == []
    await _go_to(hass, freezer, start)
    assert recorder.kinds() == ["started"]
    started = recorder.of("started")[0]
    assert started["window_start"] == start.isoformat()
    assert started["window_end"] == (start + timedelta(minutes=5)).isoformat()
    assert coordinator.run_of(dispatch_id) is not None

    await _go_to(hass, freezer, start + timedelta(minutes=4, seconds=59))
    assert recorder.kinds() == ["started"]
    await _go_to(hass, freezer, start + timedelta(minutes=5))
    assert recorder.kinds() == ["started", "stopped"]
    await _go_to(hass, freezer, start + timedelta(days=3))
    assert recorder.kinds() == ["started", "stopped"]
    assert coordinator.run_of(dispatch_id) is None


async def test_already_running_starts_at_sync(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    dispatch_id = _create(
        dispatch_server,
        start_time=t0 - timedelta(minutes=5),
        duration=timedelta(minutes=10),
    )
    _coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    assert recorder.kinds() == ["started"]
    assert recorder.of("started")[0]["dispatch_id"] == dispatch_id
    assert (
        recorder.of("started")[0]["window_start"]
        == (t0 - timedelta(minutes=5)).isoformat()
    )


async def test_recurring_runs_each_window(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    rule = RecurrenceRule(
        frequency=Frequency.HOURLY, interval=1, end_criteria=EndCriteria(count=3)
    )
    start = t0 + timedelta(minutes=1)
    dispatch_id = _create(
        dispatch_server,
        start_time=start,
        duration=timedelta(minutes=10),
        recurrence=rule,
    )
    _coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    for hour in range(4):
        begin = start + timedelta(hours=hour)
        await _go_to(hass, freezer, begin)
        await _go_to(hass, freezer, begin + timedelta(minutes=10))
    assert recorder.kinds(dispatch_id) == ["started", "stopped"] * 3
    windows = [d["window_start"] for d in recorder.of("started")]
    assert windows == [(start + timedelta(hours=h)).isoformat() for h in range(3)]
    assert recorder.of("created") == []
    recurrence = recorder.of("started")[0]["recurrence"]
    assert recurrence["frequency"] == "HOURLY"
    assert recurrence["count"] == 3


async def test_open_ended_never_stops(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    start = t0 + timedelta(minutes=2)
    _create(dispatch_server, start_time=start, duration=None)
    _coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    await _go_to(hass, freezer, start)
    assert recorder.kinds() == ["started"]
    assert recorder.of("started")[0]["window_end"] is None
    assert recorder.of("started")[0]["duration"] is None
    await _go_to(hass, freezer, start + timedelta(days=400))
    assert recorder.kinds() == ["started"]


async def test_back_to_back_windows_are_one_run(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    rule = RecurrenceRule(
        frequency=Frequency.HOURLY, interval=1, end_criteria=EndCriteria(count=3)
    )
    start = t0 + timedelta(minutes=1)
    _create(
        dispatch_server, start_time=start, duration=timedelta(hours=1), recurrence=rule
    )
    _coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    for minutes in (0, 60, 120, 150):
        await _go_to(hass, freezer, start + timedelta(minutes=minutes))
    assert recorder.kinds() == ["started"]
    assert (
        recorder.of("started")[0]["window_end"]
        == (start + timedelta(hours=3)).isoformat()
    )
    await _go_to(hass, freezer, start + timedelta(hours=3))
    assert recorder.kinds() == ["started", "stopped"]


async def test_update_while_running(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    dispatch_id = _create_running(dispatch_server, t0)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    assert recorder.kinds() == ["started"]

    for change in (
        {"payload": {"soc": 80}},
        {"target": [7]},
        {"dry_run": True},
        {"type": "X"},
    ):
        dispatch_server.update(MICROGRID_ID, dispatch_id, **change)
        await wait_for(hass, recorder.count_is(len(recorder.events) + 1), str(change))
        assert recorder.events[-1][0] == "updated"
    assert coordinator.run_of(dispatch_id) is not None

    # Shorten it: it now ends 10 minutes after its start, once.
    dispatch_server.update(MICROGRID_ID, dispatch_id, duration=timedelta(minutes=10))
    await wait_for(
        hass,
        lambda: recorder.kinds()[-1] == "updated" and len(recorder.events) == 6,
        "duration",
    )
    await _go_to(hass, freezer, t0 + timedelta(minutes=9))
    assert recorder.kinds().count("stopped") == 1
    assert recorder.kinds() == ["started"] + ["updated"] * 5 + ["stopped"]
    await _go_to(hass, freezer, t0 + timedelta(minutes=40))
    assert recorder.kinds().count("stopped") == 1


async def test_update_into_the_past_stops_now(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    dispatch_id = _create_running(dispatch_server, t0)
    _coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    dispatch_server.update(MICROGRID_ID, dispatch_id, duration=timedelta(seconds=30))
    await wait_for(hass, lambda: "stopped" in recorder.kinds(), "stopped")
    assert recorder.kinds() == ["started", "updated", "stopped"]


async def test_delete_while_running(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    dispatch_id = _create_running(dispatch_server, t0)
    _coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    dispatch_server.delete(MICROGRID_ID, dispatch_id)
    await wait_for(hass, lambda: "deleted" in recorder.kinds(), "deleted")
    assert recorder.kinds() == ["started", "stopped", "deleted"]
    await _go_to(hass, freezer, t0 + timedelta(hours=1))
    assert recorder.kinds() == ["started", "stopped", "deleted"]


async def test_deactivate_while_running(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    dispatch_id = _create_running(dispatch_server, t0)
    _coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    dispatch_server.update(MICROGRID_ID, dispatch_id, active=False)
    await wait_for(hass, lambda: "stopped" in recorder.kinds(), "stopped")
    assert recorder.kinds() == ["started", "updated", "stopped"]
    assert recorder.of("stopped")[0]["active"] is False
    await _go_to(hass, freezer, t0 + timedelta(hours=1))
    # Re-activated later within its window: it starts again.
    dispatch_server.update(
        MICROGRID_ID, dispatch_id, active=True, duration=timedelta(hours=2)
    )
    await wait_for(hass, lambda: recorder.kinds().count("started") == 2, "restarted")
    assert recorder.kinds() == ["started", "updated", "stopped", "updated", "started"]


async def test_reconcile_after_restart(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    later = t0 + timedelta(hours=2)
    kept = _create(dispatch_server, start_time=later, duration=timedelta(minutes=5))
    changed = _create(dispatch_server, start_time=later, duration=timedelta(minutes=5))
    removed = _create(
        dispatch_server,
        start_time=t0 - timedelta(minutes=1),
        duration=timedelta(hours=1),
    )
    caplog.set_level(logging.INFO, logger="custom_components.frequenz_dispatch")
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    assert recorder.kinds() == ["started"]
    recorder.clear()
    lists_before = dispatch_server.list_calls

    await dispatch_server.stop()
    await wait_for(hass, lambda: not coordinator.connected, "disconnected")
    assert "unreachable" in caplog.text
    # Changes while the server is down (a real server's update time moves on).
    freezer.tick(1)
    dispatch_server.update(MICROGRID_ID, changed, payload={"v": 2})
    dispatch_server.delete(MICROGRID_ID, removed)
    added = _create(dispatch_server, start_time=later, duration=timedelta(minutes=5))
    await dispatch_server.start()

    # Reconnection waits for the back-off delay: fire the clock until it is back.
    async def _reconnected() -> bool:
        await _go_to(hass, freezer, dt_util.utcnow() + timedelta(seconds=5))
        return coordinator.connected

    for _ in range(30):
        if await _reconnected():
            break
        await settle(hass, 0.1)
    await wait_for(hass, lambda: len(recorder.events) == 4, "reconciled")
    assert dispatch_server.list_calls > lists_before
    assert sorted(recorder.kinds()) == ["created", "deleted", "stopped", "updated"]
    assert recorder.kinds().index("stopped") < recorder.kinds().index("deleted")
    by_kind = {kind: data["dispatch_id"] for kind, data in recorder.events}
    assert by_kind == {
        "created": added,
        "updated": changed,
        "deleted": removed,
        "stopped": removed,
    }
    assert set(coordinator.dispatches()) == {kept, changed, added}
    assert caplog.text.count("unreachable") == 1
    # "Back" is logged once the new stream has proven healthy.
    assert caplog.text.count("is back") == 0
    await _go_to(hass, freezer, dt_util.utcnow() + timedelta(seconds=31))
    assert caplog.text.count("is back") == 1


async def test_clean_stream_end_relists_without_noise(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    _create(
        dispatch_server,
        start_time=t0 + timedelta(hours=1),
        duration=timedelta(minutes=5),
    )
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    freezer.tick(60)  # a healthy, long-lived stream: reopen without delay
    lists, streams = dispatch_server.list_calls, dispatch_server.stream_calls
    await dispatch_server.end_streams()
    await wait_for(hass, lambda: dispatch_server.list_calls == lists + 1, "re-list")
    await wait_for(hass, lambda: dispatch_server.open_streams == 1, "stream reopened")
    assert dispatch_server.stream_calls == streams + 1
    # A change after the reopen still arrives.
    new_id = _create(dispatch_server, start_time=t0 + timedelta(hours=2), duration=None)
    await wait_for(
        hass, lambda: new_id in coordinator.dispatches(), "created after reopen"
    )
    assert recorder.kinds() == ["created"]


async def test_malformed_dispatch_is_skipped(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = _create(dispatch_server, start_time=t0 - timedelta(minutes=1), duration=None)
    bad = dispatch_pb2.Dispatch()
    bad.data.type = "BROKEN"
    bad.data.start_time.FromDatetime(t0.replace(tzinfo=None))
    bad.data.duration = 60
    bad.data.target.component_ids.ids.append(1)
    bad.data.is_active = True
    bad.data.recurrence.freq = dispatch_pb2.RecurrenceRule.FREQUENCY_HOURLY
    bad.data.recurrence.interval = 0  # invalid with a frequency
    bad_id = dispatch_server.insert_raw(MICROGRID_ID, bad)
    no_start = dispatch_pb2.Dispatch()
    no_start.data.type = "NO_START"
    no_start.data.target.component_ids.ids.append(1)
    no_start_id = dispatch_server.insert_raw(MICROGRID_ID, no_start)
    no_target = dispatch_pb2.Dispatch()
    no_target.data.type = "NO_TARGET"
    no_target.data.start_time.FromDatetime(t0.replace(tzinfo=None))
    no_target_id = dispatch_server.insert_raw(MICROGRID_ID, no_target)
    far_future = dispatch_pb2.Dispatch()
    far_future.data.type = "YEAR_BEYOND_9999"
    far_future.data.start_time.seconds = 2**62  # the client's conversion overflows
    far_future.data.target.component_ids.ids.append(1)
    far_future_id = dispatch_server.insert_raw(MICROGRID_ID, far_future)

    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    assert set(coordinator.dispatches()) == {good}
    assert set(coordinator.malformed) == {
        bad_id,
        no_start_id,
        no_target_id,
        far_future_id,
    }
    assert recorder.kinds() == ["started"]
    assert f"Skipping dispatch {bad_id}" in caplog.text
    assert f"Skipping dispatch {no_start_id}" in caplog.text

    # Still working: a new good one arrives through the stream.
    new_id = _create(dispatch_server, start_time=t0 + timedelta(hours=1), duration=None)
    await wait_for(
        hass, lambda: new_id in coordinator.dispatches(), "new after malformed"
    )
    assert caplog.text.count(f"Skipping dispatch {bad_id}") == 1


async def test_setup_retries_when_server_down(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
) -> None:
    await dispatch_server.stop()
    entry = await setup_entry(hass, entry_data)
    assert entry.state is ConfigEntryState.SETUP_RETRY


async def test_setup_wrong_key_starts_reauth(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
) -> None:
    entry = await setup_entry(hass, {**entry_data, "api_key": "wrong"})
    assert entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress()
    assert [flow["context"]["source"] for flow in flows] == ["reauth"]


async def test_unload_cancels_everything(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    _create(
        dispatch_server,
        start_time=t0 + timedelta(hours=1),
        duration=timedelta(minutes=5),
    )
    coordinator, _recorder = await _setup(hass, entry_data, dispatch_server)
    entry = coordinator.config_entry
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.NOT_LOADED
    assert coordinator.running_count == 0
    await wait_for(hass, lambda: dispatch_server.open_streams == 0, "stream closed")


async def test_key_revoked_at_runtime_retries_then_starts_reauth(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    """Auth errors are retried; reauth starts after 10 minutes, retries go on."""
    dispatch_id = _create(
        dispatch_server, start_time=t0 - timedelta(minutes=1), duration=None
    )
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    dispatch_server.api_key = "rotated"
    await dispatch_server.break_streams()
    await wait_for(hass, lambda: not coordinator.connected, "disconnected")

    def reauth_flows() -> list[str]:
        flows = hass.config_entries.flow.async_progress()
        return [flow["context"]["source"] for flow in flows]

    half_minute = timedelta(seconds=30)
    now = await step_clock(
        hass, freezer, t0, half_minute, t0 + timedelta(minutes=9), real=0.05
    )
    assert reauth_flows() == []  # a transient error must not need a new key
    now = await step_clock(
        hass,
        freezer,
        now,
        half_minute,
        t0 + timedelta(minutes=12),
        done=lambda: bool(reauth_flows()),
        real=0.05,
    )
    assert reauth_flows() == ["reauth"]
    # Retries go on while the flow waits: the key works again, we are back.
    dispatch_server.api_key = API_KEY
    await step_clock(
        hass,
        freezer,
        now,
        timedelta(minutes=1),
        now + timedelta(minutes=10),
        done=lambda: _connected(coordinator),
        real=0.1,
    )
    assert _connected(coordinator)
    assert reauth_flows() == ["reauth"]  # one flow, never a second
    # The known dispatch kept running; nothing was reported as deleted.
    assert coordinator.run_of(dispatch_id) is not None
    assert recorder.kinds() == ["started"]


def _connected(coordinator: Any) -> bool:
    return bool(coordinator.connected)


async def test_quick_clean_end_backs_off(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    """A server that closes streams at once must not cause a hot loop."""
    _coordinator, _recorder = await _setup(hass, entry_data, dispatch_server)
    streams, lists = dispatch_server.stream_calls, dispatch_server.list_calls
    await dispatch_server.end_streams()  # no time passed: a quick end
    await settle(hass, 0.3)
    assert dispatch_server.stream_calls == streams  # waiting for the back-off
    await _go_to(hass, freezer, t0 + timedelta(seconds=1))
    await settle(hass, 0.2)
    # The back-off has passed, but the last listing was under 5 s ago.
    assert dispatch_server.list_calls == lists
    await _go_to(hass, freezer, t0 + timedelta(seconds=5))
    await wait_for(
        hass, lambda: dispatch_server.list_calls == lists + 1, "re-list after 5 s"
    )
    assert dispatch_server.stream_calls == streams + 1


async def test_api_key_never_logged_or_sent_in_events(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    dispatch_id = _create_running(dispatch_server, t0)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    dispatch_server.update(MICROGRID_ID, dispatch_id, payload={"x": 1})
    dispatch_server.delete(MICROGRID_ID, dispatch_id)
    await wait_for(hass, lambda: "deleted" in recorder.kinds(), "deleted")
    await dispatch_server.break_streams()
    await wait_for(hass, lambda: not coordinator.connected, "disconnected")
    assert recorder.kinds() == ["started", "updated", "stopped", "deleted"]
    assert "Dispatch API for microgrid 42 is unreachable" in caplog.text
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(recorder.events)


def _broken_copy(
    held: dispatch_pb2.Dispatch, update_time: datetime
) -> dispatch_pb2.Dispatch:
    """A version of `held` that cannot be read (interval 0 with a frequency)."""
    message = dispatch_pb2.Dispatch()
    message.CopyFrom(held)
    message.data.recurrence.freq = dispatch_pb2.RecurrenceRule.FREQUENCY_HOURLY
    message.data.recurrence.interval = 0
    message.metadata.update_time.FromDatetime(update_time.replace(tzinfo=None))
    return message


async def test_older_valid_version_after_a_malformed_one_is_ignored(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    """A lagging listing cannot bring back the version a malformed one replaced."""
    dispatch_id = _create_running(dispatch_server, t0)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    held = dispatch_server.raw_dispatches(MICROGRID_ID)[0]
    dispatch_server.insert_raw(
        MICROGRID_ID, _broken_copy(held, t0 + timedelta(seconds=1))
    )
    await wait_for(hass, lambda: dispatch_id not in coordinator.dispatches(), "skipped")
    assert recorder.kinds() == ["started", "stopped"]
    # The listing lags: it still has the older, valid version.
    dispatch_server.insert_raw(MICROGRID_ID, held, notify=False)
    freezer.tick(60)  # a healthy, long-lived stream: reopen without delay
    lists = dispatch_server.list_calls
    await dispatch_server.end_streams()
    await wait_for(hass, lambda: dispatch_server.list_calls == lists + 1, "re-list")
    await wait_for(hass, lambda: dispatch_server.open_streams == 1, "stream reopened")
    await settle(hass, 0.2)
    assert dispatch_id not in coordinator.dispatches()
    assert recorder.kinds() == ["started", "stopped"]
    assert set(coordinator.malformed) == {dispatch_id}


async def test_tombstones_are_dropped_once_a_listing_confirms(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    """Deleted ids are remembered only until a listing no longer has them."""
    ids = [
        _create(dispatch_server, start_time=t0 + timedelta(hours=1), duration=None)
        for _ in range(5)
    ]
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    for dispatch_id in ids:
        dispatch_server.delete(MICROGRID_ID, dispatch_id)
    await wait_for(hass, lambda: not coordinator.dispatches(), "deleted")
    assert coordinator.tombstones == 5
    freezer.tick(60)
    lists = dispatch_server.list_calls
    await dispatch_server.end_streams()
    await wait_for(hass, lambda: dispatch_server.list_calls == lists + 1, "re-list")
    await wait_for(hass, lambda: coordinator.tombstones == 0, "tombstones dropped")
    assert recorder.kinds() == ["deleted"] * 5


async def test_versions_are_compared_exactly(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    """An older version within the same microsecond is still older."""
    dispatch_id = _create_running(dispatch_server, t0)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    held = dispatch_server.raw_dispatches(MICROGRID_ID)[0]
    newer = dispatch_pb2.Dispatch()
    newer.CopyFrom(held)
    newer.data.payload.update({"power_w": 1})
    newer.metadata.update_time.seconds = int((t0 + timedelta(seconds=5)).timestamp())
    newer.metadata.update_time.nanos = 123_456_500
    dispatch_server.insert_raw(MICROGRID_ID, newer)
    await wait_for(hass, lambda: recorder.kinds() == ["started", "updated"], "update")
    stale = _broken_copy(newer, t0)
    stale.metadata.update_time.CopyFrom(newer.metadata.update_time)
    stale.metadata.update_time.nanos = 123_456_400  # same microsecond, older
    dispatch_server.insert_raw(MICROGRID_ID, stale)
    await settle(hass, 0.3)
    assert dispatch_id in coordinator.dispatches()
    assert coordinator.malformed == {}
    assert recorder.kinds() == ["started", "updated"]


async def test_a_dispatch_that_cannot_be_evaluated_breaks_nothing(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Poison input (an interval so large the next start overflows) is isolated."""
    minute = timedelta(minutes=1)
    before = _create(dispatch_server, start_time=t0 + minute, duration=minute)
    coordinator, recorder = await _setup(hass, entry_data, dispatch_server)
    message = dispatch_pb2.Dispatch()
    message.CopyFrom(dispatch_server.raw_dispatches(MICROGRID_ID)[0])
    message.metadata.dispatch_id = 0  # a new one
    message.metadata.ClearField("update_time")
    message.metadata.ClearField("create_time")
    message.data.start_time.FromDatetime((t0 - minute).replace(tzinfo=None))
    message.data.recurrence.freq = dispatch_pb2.RecurrenceRule.FREQUENCY_MINUTELY
    message.data.recurrence.interval = 2**32 - 1  # the simulator would refuse it
    poison = dispatch_server.insert_raw(MICROGRID_ID, message)
    after = _create(dispatch_server, start_time=t0 + 2 * minute, duration=minute)
    await wait_for(
        hass, lambda: after in coordinator.dispatches(), "the next one arrives"
    )
    assert coordinator.run_of(poison) is None
    assert recorder.kinds(poison) in ([], ["created"])
    await _go_to(hass, freezer, t0 + minute)
    await _go_to(hass, freezer, t0 + 2 * minute)
    await _go_to(hass, freezer, t0 + 3 * minute)
    assert recorder.kinds(before) == ["started", "stopped"]
    assert recorder.kinds(after) == ["created", "started", "stopped"]
    assert caplog.text.count(f"Skipping dispatch {poison}") <= 1
    assert "Unexpected error" not in caplog.text


async def test_a_stream_that_always_rejects_the_key_leads_to_reauth(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    """Listing works, every stream fails with PERMISSION_DENIED.

    The successful listings do not reset the auth clock (reauth starts after
    10 minutes) nor the back-off (no full listing every 6 s).
    """
    coordinator, _recorder = await _setup(hass, entry_data, dispatch_server)
    dispatch_server.fail_next(
        grpc.StatusCode.PERMISSION_DENIED, times=10_000, rpcs=("stream",)
    )
    await dispatch_server.break_streams(grpc.StatusCode.PERMISSION_DENIED)
    await wait_for(hass, lambda: not coordinator.connected, "disconnected")
    lists = dispatch_server.list_calls

    def reauth_flows() -> list[str]:
        flows = hass.config_entries.flow.async_progress()
        return [flow["context"]["source"] for flow in flows]

    await step_clock(
        hass,
        freezer,
        t0,
        timedelta(seconds=5),
        t0 + timedelta(minutes=12),
        done=lambda: bool(reauth_flows()),
        real=0.02,
    )
    assert reauth_flows() == ["reauth"]
    # Back-off up to a minute: about 15 listings in 11 minutes, not 110.
    assert dispatch_server.list_calls - lists <= 20
