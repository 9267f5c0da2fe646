"""Tests of the in-memory Dispatch API server, through the real client."""

import asyncio
from collections.abc import AsyncIterator, Callable
import contextlib
from datetime import UTC, datetime, timedelta
import os
from pathlib import Path
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from frequenz.api.common.v1alpha8.pagination.pagination_params_pb2 import (
    PaginationParams,
)
from frequenz.api.common.v1alpha8.streaming import event_pb2
from frequenz.api.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from frequenz.client.common.microgrid import MicrogridId
from frequenz.client.common.microgrid.electrical_components import (
    ElectricalComponentCategory as Category,
)
from frequenz.client.common.streaming import Event
from frequenz.client.dispatch import DispatchApiClient
from frequenz.client.dispatch.recurrence import (
    EndCriteria,
    Frequency,
    RecurrenceRule,
    Weekday,
)
from frequenz.client.dispatch.types import (
    BatteryType,
    DispatchId,
    InverterType,
    TargetCategories,
    TargetComponents,
    TargetIds,
)
import grpc
import pytest

from dispatch_sim.__main__ import _parser, _serve
from dispatch_sim.seed import (
    SeedError,
    apply_seed,
    load_seed,
    parse_seed,
    parse_time,
    sample_seed_path,
)
from dispatch_sim.server import DispatchSimulator

from .conftest import API_KEY, MICROGRID_ID

if TYPE_CHECKING:
    from frequenz.api.dispatch.v1.dispatch_pb2_grpc import (
        MicrogridDispatchServiceAsyncStub,
    )

MG = MicrogridId(MICROGRID_ID)
ROOT = Path(__file__).resolve().parent.parent
WAIT = 5.0


def _now() -> datetime:
    return datetime.now(UTC)


async def _close(client: DispatchApiClient) -> None:
    for broadcaster in list(client._streams.values()):
        await broadcaster.stop()
    await client.disconnect()


@pytest.fixture
async def client(
    dispatch_server: DispatchSimulator,
) -> AsyncIterator[DispatchApiClient]:
    api = DispatchApiClient(server_url=dispatch_server.url, auth_key=API_KEY)
    try:
        yield api
    finally:
        await _close(api)


@contextlib.asynccontextmanager
async def raw_stub(
    server: DispatchSimulator,
) -> AsyncIterator["MicrogridDispatchServiceAsyncStub"]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub: MicrogridDispatchServiceAsyncStub = (
            dispatch_pb2_grpc.MicrogridDispatchServiceStub(channel)  # type: ignore[assignment]
        )
        yield stub


def _md(key: str = API_KEY) -> tuple[tuple[str, str], ...]:
    return (("key", key),)


async def _ids(client: DispatchApiClient, **filters: Any) -> set[int]:
    return {int(d.id) async for page in client.list(MG, **filters) for d in page}


def _create(server: DispatchSimulator, **fields: Any) -> int:
    fields.setdefault("type", "BATTERY_CHARGE")
    fields.setdefault("start_time", _now() + timedelta(hours=1))
    fields.setdefault("duration", timedelta(minutes=15))
    fields.setdefault("target", [1, 2])
    return server.create(MICROGRID_ID, **fields)


def _data() -> dispatch_pb2.DispatchData:
    data = dispatch_pb2.DispatchData(
        type="TEST",
        duration=60,
        target=dispatch_pb2.TargetComponents(
            component_ids=dispatch_pb2.TargetComponents.IdSet(ids=[1])
        ),
        is_active=True,
    )
    data.start_time.FromDatetime(_now() + timedelta(minutes=5))
    return data


async def _status(awaitable: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    code: grpc.StatusCode = info.value.code()
    return code


# ---- list ----------------------------------------------------------------


async def test_list_pages_through_everything(
    dispatch_server: DispatchSimulator, client: DispatchApiClient
) -> None:
    created = {_create(dispatch_server, type=f"T{i}") for i in range(45)}
    dispatch_server.create(
        MICROGRID_ID + 1, type="X", start_time=_now(), duration=None, target=[1]
    )

    pages = [[int(d.id) for d in page] async for page in client.list(MG)]

    assert [len(page) for page in pages] == [20, 20, 5]
    flat = [i for page in pages for i in page]
    assert set(flat) == created
    assert flat == sorted(flat, reverse=True)  # newest first by default
    assert dispatch_server.list_calls == 3

    small = [len(list(page)) async for page in client.list(MG, page_size=7)]
    assert small == [7] * 6 + [3]


async def test_list_pagination_raw(dispatch_server: DispatchSimulator) -> None:
    for i in range(5):
        _create(dispatch_server, start_time=_now() + timedelta(hours=5 - i))
    request = dispatch_pb2.ListMicrogridDispatchesRequest(
        microgrid_id=MICROGRID_ID,
        sort_options=dispatch_pb2.SortOptions(
            sort_field=dispatch_pb2.SORT_FIELD_START_TIME,
            sort_order=dispatch_pb2.SORT_ORDER_ASCENDING,
        ),
        pagination_params=PaginationParams(page_size=2),
    )
    async with raw_stub(dispatch_server) as stub:
        seen: list[int] = []
        while True:
            response = await stub.ListMicrogridDispatches(request, metadata=_md())
            assert response.pagination_info.total_items == 5
            seen += [d.metadata.dispatch_id for d in response.dispatches]
            token = response.pagination_info.next_page_token
            if not token:
                break
            request.pagination_params.CopyFrom(PaginationParams(page_token=token))
        assert seen == [5, 4, 3, 2, 1]  # ascending start time

        request.pagination_params.CopyFrom(PaginationParams(page_token="garbage"))
        code = await _status(stub.ListMicrogridDispatches(request, metadata=_md()))
        assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_list_filters(
    dispatch_server: DispatchSimulator, client: DispatchApiClient
) -> None:
    now = _now()
    charge = _create(
        dispatch_server,
        type="BATTERY_CHARGE",
        start_time=now + timedelta(hours=1),
        target=["BATTERY"],
    )
    curtail = _create(
        dispatch_server,
        type="PV_CURTAILMENT",
        start_time=now + timedelta(hours=2),
        duration=timedelta(hours=1),
        target=[5, 6],
        dry_run=True,
    )
    ev = _create(
        dispatch_server,
        type="EV_LIMIT",
        start_time=now + timedelta(hours=3),
        duration=None,
        target=["EV_CHARGER"],
        active=False,
    )
    old = _create(
        dispatch_server,
        type="battery_discharge",
        start_time=now - timedelta(days=1),
        target=[6, 7],
    )
    everything = {charge, curtail, ev, old}

    assert await _ids(client) == everything
    assert await _ids(client, dispatch_ids=[DispatchId(charge), DispatchId(ev)]) == {
        charge,
        ev,
    }
    assert await _ids(client, active=False) == {ev}
    assert await _ids(client, active=True) == {charge, curtail, old}
    assert await _ids(client, dry_run=True) == {curtail}
    assert await _ids(client, target_components=[TargetIds(6)]) == {curtail, old}
    battery = TargetCategories(Category.BATTERY)
    assert await _ids(client, target_components=[battery]) == {charge}
    li_ion = TargetCategories(BatteryType.LI_ION)
    assert await _ids(client, target_components=[li_ion]) == {charge}
    assert await _ids(client, target_components=[TargetIds(99)]) == set()
    window = {"start_from": now, "start_to": now + timedelta(minutes=150)}
    assert await _ids(client, **window) == {charge, curtail}
    assert await _ids(client, end_from=now) == {charge, curtail, ev}
    assert await _ids(client, end_to=now) == {old}
    assert await _ids(client, filter_queries=["battery"]) == {charge, old}
    assert await _ids(client, filter_queries=[f"#{curtail}", "EV"]) == {curtail, ev}
    assert await _ids(client, filter_queries=["#nothing"]) == set()


async def test_list_recurring_and_update_time_filters(
    dispatch_server: DispatchSimulator,
) -> None:
    before = _now()
    once = _create(dispatch_server)
    daily = RecurrenceRule(frequency=Frequency.DAILY, interval=1)
    repeated = _create(dispatch_server, recurrence=daily)
    flt = dispatch_pb2.DispatchFilter(is_recurring=True)
    flt.update_time_interval.start_time.FromDatetime(before)
    request = dispatch_pb2.ListMicrogridDispatchesRequest(
        microgrid_id=MICROGRID_ID, filter=flt
    )
    async with raw_stub(dispatch_server) as stub:
        response = await stub.ListMicrogridDispatches(request, metadata=_md())
        assert [d.metadata.dispatch_id for d in response.dispatches] == [repeated]
        request.filter.is_recurring = False
        response = await stub.ListMicrogridDispatches(request, metadata=_md())
        assert [d.metadata.dispatch_id for d in response.dispatches] == [once]
        request.filter.update_time_interval.end_time.FromDatetime(before)
        response = await stub.ListMicrogridDispatches(request, metadata=_md())
        assert list(response.dispatches) == []


# ---- create / get / update / delete ----------------------------------------


async def test_round_trip_with_recurrence_and_categories(
    dispatch_server: DispatchSimulator, client: DispatchApiClient
) -> None:
    start = (_now() + timedelta(hours=1)).replace(microsecond=0)
    unrounded = start + timedelta(microseconds=700_000)  # rounded up by the service
    rule = RecurrenceRule(
        frequency=Frequency.DAILY,
        interval=1,
        end_criteria=EndCriteria(count=3),
        byhours=[start.hour],
        byweekdays=list(Weekday)[1:],
    )
    target: TargetComponents = TargetCategories(BatteryType.LI_ION, Category.INVERTER)
    created = await client.create(
        MG,
        "BATTERY_CHARGE",
        unrounded - timedelta(seconds=1),
        timedelta(minutes=30),
        target,
        payload={"power_kw": 5, "nested": {"a": [1, 2]}},
        recurrence=rule,
    )
    assert created.type == "BATTERY_CHARGE"
    assert created.start_time == start
    assert created.duration == timedelta(minutes=30)
    assert created.target == target
    assert created.payload == {"power_kw": 5, "nested": {"a": [1, 2]}}
    assert created.recurrence == rule
    assert created.active
    assert not created.dry_run
    assert created.create_time == created.update_time
    assert created.end_time == start + timedelta(days=2, minutes=30)

    fetched = await client.get(microgrid_id=MG, dispatch_id=created.id)
    assert fetched == created
    assert dispatch_server.dispatches(MICROGRID_ID) == [created]

    await asyncio.sleep(0.01)
    new_start = start + timedelta(hours=2)
    new_unrounded = new_start + timedelta(microseconds=400_000)  # rounded down
    updated = await client.update(
        microgrid_id=MG,
        dispatch_id=created.id,
        new_fields={
            "start_time": new_unrounded,
            "duration": None,
            "active": False,
            "payload": {"power_kw": 7},
            "target": TargetIds(3, 4),
            "recurrence.interval": 2,
            "recurrence.frequency": Frequency.HOURLY,
            "recurrence.byhours": [],
            "recurrence.byweekdays": [Weekday.MONDAY],
            "recurrence.end_criteria": EndCriteria(until=new_start + timedelta(days=1)),
        },
    )
    assert updated.start_time == new_start
    assert updated.duration is None
    assert not updated.active
    assert updated.payload == {"power_kw": 7}
    assert updated.target == TargetIds(3, 4)
    assert updated.recurrence.interval == 2
    assert updated.recurrence.frequency == Frequency.HOURLY
    assert updated.recurrence.byhours == []
    assert updated.recurrence.byweekdays == [Weekday.MONDAY]
    assert updated.end_time is None  # open-ended: no duration
    assert updated.create_time == created.create_time
    assert updated.update_time > created.update_time
    assert await client.get(microgrid_id=MG, dispatch_id=created.id) == updated

    await client.delete(microgrid_id=MG, dispatch_id=created.id)
    assert dispatch_server.dispatches(MICROGRID_ID) == []
    code = await _status(client.get(microgrid_id=MG, dispatch_id=created.id))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_create_now_and_ids_increase(client: DispatchApiClient) -> None:
    before = _now()
    first = await client.create(MG, "A", "NOW", None, TargetIds(1))
    second = await client.create(MG, "B", "NOW", timedelta(seconds=1), TargetIds(1))
    assert before - timedelta(seconds=1) <= first.start_time <= _now()
    assert first.started
    assert first.start_time.microsecond == 0  # the service rounds to seconds
    assert first.duration is None
    assert first.end_time is None
    assert int(second.id) > int(first.id)
    assert second.end_time == second.start_time + timedelta(seconds=1)


async def test_control_api(dispatch_server: DispatchSimulator) -> None:
    start = _now() - timedelta(hours=1)  # past start times are fine here
    dispatch_id = dispatch_server.create(
        MICROGRID_ID,
        type="PV_CURTAILMENT",
        start_time=start,
        duration=timedelta(hours=2),
        target=["INVERTER:PV", "BATTERY"],
        payload={"limit": 3},
    )
    (dispatch,) = dispatch_server.dispatches(MICROGRID_ID)
    assert dispatch.target == TargetCategories(InverterType.PV, Category.BATTERY)
    assert dispatch.started

    dispatch_server.update(MICROGRID_ID, dispatch_id, type="RENAMED", dry_run=True)
    changed = dispatch_server.get(MICROGRID_ID, dispatch_id)
    assert (changed.type, changed.dry_run) == ("RENAMED", True)
    assert changed.update_time >= dispatch.update_time

    with pytest.raises(ValueError, match="unknown component category"):
        _create(dispatch_server, target=["TOASTER"])
    with pytest.raises(ValueError, match="mix"):
        _create(dispatch_server, target=[1, "BATTERY"])
    with pytest.raises(ValueError, match="negative"):
        _create(dispatch_server, duration=timedelta(seconds=-1))
    with pytest.raises(ValueError, match="interval"):
        _create(dispatch_server, recurrence=RecurrenceRule(frequency=Frequency.DAILY))
    with pytest.raises(TypeError, match="unknown dispatch field"):
        dispatch_server.update(MICROGRID_ID, dispatch_id, colour="red")
    with pytest.raises(LookupError):
        dispatch_server.delete(MICROGRID_ID, dispatch_id + 1)


async def test_insert_raw_keeps_malformed(dispatch_server: DispatchSimulator) -> None:
    bad = dispatch_pb2.Dispatch(data=_data())
    bad.data.ClearField("target")
    bad.data.recurrence.freq = dispatch_pb2.RecurrenceRule.FREQUENCY_HOURLY
    bad_id = dispatch_server.insert_raw(MICROGRID_ID, bad)
    good_id = _create(dispatch_server)
    assert good_id == bad_id + 1
    assert [int(d.id) for d in dispatch_server.dispatches(MICROGRID_ID)] == [good_id]
    (raw, _) = dispatch_server.raw_dispatches(MICROGRID_ID)
    assert raw.metadata.dispatch_id == bad_id
    assert raw.metadata.HasField("create_time")
    assert raw.data.recurrence.interval == 0

    explicit = dispatch_pb2.Dispatch(data=_data())
    explicit.metadata.dispatch_id = 100
    assert dispatch_server.insert_raw(MICROGRID_ID, explicit, notify=False) == 100
    assert _create(dispatch_server) == 101


# ---- errors ----------------------------------------------------------------


async def test_wrong_key_is_unauthenticated(
    dispatch_server: DispatchSimulator,
) -> None:
    wrong = DispatchApiClient(server_url=dispatch_server.url, auth_key="wrong")
    try:
        code = await _status(wrong.get(microgrid_id=MG, dispatch_id=DispatchId(1)))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        create = wrong.create(MG, "A", "NOW", None, TargetIds(1))
        assert await _status(create) == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _ids(wrong)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await _close(wrong)

    async with raw_stub(dispatch_server) as stub:
        request = dispatch_pb2.StreamMicrogridDispatchesRequest(microgrid_id=1)
        call = stub.StreamMicrogridDispatches(request)  # no key at all
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert dispatch_server.list_calls == 0
    assert dispatch_server.stream_calls == 0
    assert dispatch_server.dispatches(MICROGRID_ID) == []


async def test_unknown_ids_are_not_found(
    dispatch_server: DispatchSimulator, client: DispatchApiClient
) -> None:
    other_grid = dispatch_server.create(
        MICROGRID_ID + 1, type="X", start_time=_now(), duration=None, target=[1]
    )
    for dispatch_id in (DispatchId(999), DispatchId(other_grid)):
        get = client.get(microgrid_id=MG, dispatch_id=dispatch_id)
        assert await _status(get) == grpc.StatusCode.NOT_FOUND
        delete = client.delete(microgrid_id=MG, dispatch_id=dispatch_id)
        assert await _status(delete) == grpc.StatusCode.NOT_FOUND
        update = client.update(
            microgrid_id=MG, dispatch_id=dispatch_id, new_fields={"active": False}
        )
        assert await _status(update) == grpc.StatusCode.NOT_FOUND
    assert len(dispatch_server.dispatches(MICROGRID_ID + 1)) == 1


def _no_target(data: dispatch_pb2.DispatchData) -> None:
    data.ClearField("target")


def _daily(**fields: Any) -> Callable[[dispatch_pb2.DispatchData], None]:
    def change(data: dispatch_pb2.DispatchData) -> None:
        data.recurrence.CopyFrom(
            dispatch_pb2.RecurrenceRule(
                freq=dispatch_pb2.RecurrenceRule.FREQUENCY_DAILY, **fields
            )
        )

    return change


INVALID_CREATES: dict[str, Callable[[dispatch_pb2.DispatchData], None]] = {
    "no-type": lambda data: setattr(data, "type", ""),
    "blank-type": lambda data: setattr(data, "type", "  "),
    "no-target": _no_target,
    "empty-ids": lambda data: data.target.component_ids.ClearField("ids"),
    "unspecified-category": lambda data: (
        data.target.component_categories_types.categories.add()
    ),
    "no-start": lambda data: data.ClearField("start_time"),
    "past-start": lambda data: data.start_time.FromSeconds(1_000_000),
    "interval-0": _daily(interval=0),
    "hour-24": _daily(interval=1, byhours=[24]),
    "count-0": _daily(interval=1, end_criteria={"count": 0}),
    "huge-payload": lambda data: data.payload.update({"x": "y" * 60_000}),
}


@pytest.mark.parametrize("change", INVALID_CREATES.values(), ids=INVALID_CREATES)
async def test_invalid_create_is_rejected(
    dispatch_server: DispatchSimulator,
    change: Callable[[dispatch_pb2.DispatchData], None],
) -> None:
    data = _data()
    change(data)
    request = dispatch_pb2.CreateMicrogridDispatchRequest(
        microgrid_id=MICROGRID_ID, dispatch_data=data
    )
    async with raw_stub(dispatch_server) as stub:
        code = await _status(stub.CreateMicrogridDispatch(request, metadata=_md()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert dispatch_server.raw_dispatches(MICROGRID_ID) == []


@pytest.mark.parametrize("paths", [[], ["type"], ["is_dry_run"], ["recurrence.bogus"]])
async def test_invalid_update_is_rejected(
    dispatch_server: DispatchSimulator, paths: list[str]
) -> None:
    dispatch_id = _create(dispatch_server)
    request = dispatch_pb2.UpdateMicrogridDispatchRequest(
        microgrid_id=MICROGRID_ID, dispatch_id=dispatch_id
    )
    request.update_mask.paths.extend(paths)
    async with raw_stub(dispatch_server) as stub:
        code = await _status(stub.UpdateMicrogridDispatch(request, metadata=_md()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_update_validates_result(
    dispatch_server: DispatchSimulator, client: DispatchApiClient
) -> None:
    daily = RecurrenceRule(frequency=Frequency.DAILY, interval=1)
    dispatch_id = DispatchId(_create(dispatch_server, recurrence=daily))
    bad = client.update(
        microgrid_id=MG, dispatch_id=dispatch_id, new_fields={"recurrence.interval": 0}
    )
    assert await _status(bad) == grpc.StatusCode.INVALID_ARGUMENT
    past = client.update(
        microgrid_id=MG,
        dispatch_id=dispatch_id,
        new_fields={"start_time": _now() - timedelta(days=1)},
    )
    assert await _status(past) == grpc.StatusCode.INVALID_ARGUMENT
    assert dispatch_server.get(MICROGRID_ID, int(dispatch_id)).recurrence == daily


# Each recurrence sub-field, as `DispatchApiClient.update` names it: a value to
# set and the value that clears it again.
RECURRENCE_FIELDS: dict[str, tuple[Any, Any]] = {
    "interval": (3, 1),
    "end_criteria": (EndCriteria(count=5), EndCriteria()),
    "byminutes": ([0, 30], []),
    "byhours": ([6, 18], []),
    "byweekdays": ([Weekday.MONDAY, Weekday.FRIDAY], []),
    "bymonthdays": ([1, -1], []),
    "bymonths": ([1, 12], []),
}


async def test_update_every_field_the_client_sends(
    dispatch_server: DispatchSimulator, client: DispatchApiClient
) -> None:
    start = (_now() + timedelta(hours=1)).replace(microsecond=0)
    dispatch_id = DispatchId(
        _create(dispatch_server, start_time=start, payload={"a": 1})
    )

    async def update(**fields: Any) -> Any:
        return await client.update(
            microgrid_id=MG, dispatch_id=dispatch_id, new_fields=fields
        )

    changed = await update(start_time=start + timedelta(hours=1))
    assert changed.start_time == start + timedelta(hours=1)
    changed = await update(duration=None)
    assert (changed.duration, changed.end_time) == (None, None)  # open-ended
    changed = await update(duration=timedelta(minutes=5))
    assert changed.duration == timedelta(minutes=5)
    changed = await update(target=TargetCategories(Category.BATTERY))
    assert changed.target == TargetCategories(Category.BATTERY)
    changed = await update(payload={})
    assert changed.payload == {}
    changed = await update(active=False)
    assert not changed.active

    changed = await client.update(
        microgrid_id=MG,
        dispatch_id=dispatch_id,
        new_fields={
            "recurrence.frequency": Frequency.MONTHLY,
            "recurrence.interval": 1,
        },
    )
    assert changed.recurrence.frequency == Frequency.MONTHLY
    for name, (value, cleared) in RECURRENCE_FIELDS.items():
        path = f"recurrence.{name}"
        changed = await client.update(
            microgrid_id=MG, dispatch_id=dispatch_id, new_fields={path: value}
        )
        assert getattr(changed.recurrence, name) == value, name
        changed = await client.update(
            microgrid_id=MG, dispatch_id=dispatch_id, new_fields={path: cleared}
        )
        expected = None if name == "end_criteria" else cleared
        assert getattr(changed.recurrence, name) == expected, name
    assert changed.recurrence == RecurrenceRule(frequency=Frequency.MONTHLY, interval=1)

    # An unspecified frequency removes the whole rule: a one-off again.
    await update(**{"recurrence.byhours": [7]})
    changed = await client.update(
        microgrid_id=MG,
        dispatch_id=dispatch_id,
        new_fields={"recurrence.frequency": Frequency.UNSPECIFIED},
    )
    assert changed.recurrence == RecurrenceRule()
    (raw,) = dispatch_server.raw_dispatches(MICROGRID_ID)
    assert not raw.data.HasField("recurrence")
    assert changed.end_time == changed.start_time + timedelta(minutes=5)
    assert await client.get(microgrid_id=MG, dispatch_id=dispatch_id) == changed


# ---- access, sizes and injected faults ----------------------------------------

READER_KEY = "read-only-key"


async def test_read_only_key_reads_but_cannot_write(
    dispatch_server: DispatchSimulator,
) -> None:
    dispatch_server.read_only_api_key = READER_KEY
    assert dispatch_server.read_only_api_key == READER_KEY
    existing = _create(dispatch_server)
    existing_id = DispatchId(existing)
    reader = DispatchApiClient(server_url=dispatch_server.url, auth_key=READER_KEY)
    try:
        assert await _ids(reader) == {existing}
        fetched = await reader.get(microgrid_id=MG, dispatch_id=existing_id)
        assert int(fetched.id) == existing
        receiver = reader.stream(MG)
        await dispatch_server.wait_for_streams()
        created = _create(dispatch_server)
        assert await _next(receiver) == (Event.CREATED, created)

        writes = [
            reader.create(MG, "A", "NOW", None, TargetIds(1)),
            reader.update(
                microgrid_id=MG, dispatch_id=existing_id, new_fields={"active": False}
            ),
            reader.delete(microgrid_id=MG, dispatch_id=existing_id),
        ]
        for write in writes:
            assert await _status(write) == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await _close(reader)
    assert {int(d.id) for d in dispatch_server.dispatches(MICROGRID_ID)} == {
        existing,
        created,
    }
    assert dispatch_server.get(MICROGRID_ID, existing).active

    # The full key still writes; without a read-only key the reader is unknown.
    dispatch_server.read_only_api_key = None
    stranger = DispatchApiClient(server_url=dispatch_server.url, auth_key=READER_KEY)
    try:
        code = await _status(stranger.get(microgrid_id=MG, dispatch_id=existing_id))
        assert code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await _close(stranger)


BIG = 16 * 1024 * 1024


@contextlib.asynccontextmanager
async def big_stub(
    server: DispatchSimulator,
) -> AsyncIterator["MicrogridDispatchServiceAsyncStub"]:
    """A raw stub whose channel accepts messages up to 16 MiB."""
    options = [("grpc.max_receive_message_length", BIG)]
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{server.port}", options=options
    ) as channel:
        stub: MicrogridDispatchServiceAsyncStub = (
            dispatch_pb2_grpc.MicrogridDispatchServiceStub(channel)  # type: ignore[assignment]
        )
        yield stub


async def test_pages_and_stream_messages_over_4_mib(
    dispatch_server: DispatchSimulator, client: DispatchApiClient
) -> None:
    # 100 dispatches of 45 KB: one page of about 4.5 MB.
    for index in range(100):
        _create(dispatch_server, payload={"blob": "x" * 45_000, "n": index})
    request = dispatch_pb2.ListMicrogridDispatchesRequest(
        microgrid_id=MICROGRID_ID, pagination_params=PaginationParams(page_size=100)
    )
    # The client's own 4 MiB default refuses the page ...
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _ids(client, page_size=100)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    async with big_stub(dispatch_server) as stub:
        # ... a client with a 16 MiB limit gets it.
        response = await stub.ListMicrogridDispatches(request, metadata=_md())
        assert len(response.dispatches) == 100
        assert response.ByteSize() > 4 * 1024 * 1024

        # A 5 MB payload is refused by default, accepted when asked for.
        huge = {"blob": "y" * 5_000_000}
        code = await _status(
            client.create(MG, "HUGE", "NOW", None, TargetIds(1), payload=huge)
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        dispatch_server.max_payload_bytes = 6 * 1024 * 1024
        assert dispatch_server.max_payload_bytes == 6 * 1024 * 1024
        stream = stub.StreamMicrogridDispatches(
            dispatch_pb2.StreamMicrogridDispatchesRequest(microgrid_id=MICROGRID_ID),
            metadata=_md(),
        )
        await dispatch_server.wait_for_streams()
        # (The create's answer echoes the payload: too large for the client's
        # default limit too.)
        data = _data()
        data.payload.update(huge)
        created = await stub.CreateMicrogridDispatch(
            dispatch_pb2.CreateMicrogridDispatchRequest(
                microgrid_id=MICROGRID_ID, dispatch_data=data
            ),
            metadata=_md(),
        )
        async with asyncio.timeout(WAIT):
            message = await stream.read()
        assert isinstance(message, dispatch_pb2.StreamMicrogridDispatchesResponse)
        assert message.dispatch == created.dispatch
        assert message.ByteSize() > 4 * 1024 * 1024
        stream.cancel()


async def test_max_page_bytes_fails_large_pages(
    dispatch_server: DispatchSimulator, client: DispatchApiClient
) -> None:
    small = {_create(dispatch_server, payload={"blob": "s" * 10_000}) for _ in range(4)}
    big = _create(dispatch_server, payload={"blob": "b" * 30_000})
    dispatch_server.max_page_bytes = 25_000
    assert dispatch_server.max_page_bytes == 25_000

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _ids(client, page_size=4)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in (info.value.details() or "")
    only_small = [DispatchId(i) for i in small]
    assert await _ids(client, page_size=2, dispatch_ids=only_small) == small
    # The big one cannot be listed even alone.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _ids(client, page_size=1, dispatch_ids=[DispatchId(big)])
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dispatch_server.list_calls == 4  # refused pages count as calls

    dispatch_server.max_page_bytes = None
    assert await _ids(client) == {*small, big}


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAVAILABLE,
    ],
)
async def test_fail_next_list_and_stream_calls(
    dispatch_server: DispatchSimulator,
    client: DispatchApiClient,
    code: grpc.StatusCode,
) -> None:
    kept = _create(dispatch_server)
    dispatch_server.fail_next(code, 2)
    assert dispatch_server.pending_failures == 2
    for remaining in (1, 0):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _ids(client)
        assert info.value.code() == code
        assert dispatch_server.pending_failures == remaining
    assert await _ids(client) == {kept}
    assert dispatch_server.list_calls == 1  # injected failures are not counted

    # Only the chosen RPCs fail: here the stream, not a get.
    dispatch_server.fail_next(code, rpcs=["stream"])
    fetched = await client.get(microgrid_id=MG, dispatch_id=DispatchId(kept))
    assert int(fetched.id) == kept
    async with raw_stub(dispatch_server) as stub:
        request = dispatch_pb2.StreamMicrogridDispatchesRequest(
            microgrid_id=MICROGRID_ID
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.StreamMicrogridDispatches(request, metadata=_md()).read()
        assert info.value.code() == code
        assert dispatch_server.stream_calls == 0
        await _open_raw_stream(dispatch_server, stub)
        assert dispatch_server.stream_calls == 1

    with pytest.raises(ValueError, match="unknown RPC"):
        dispatch_server.fail_next(code, rpcs=["lits"])


# ---- streams ---------------------------------------------------------------


async def _next(receiver: Any) -> tuple[Event, int]:
    async with asyncio.timeout(WAIT):
        message = await receiver.receive()
    return message.event, int(message.dispatch.id)


async def test_stream_events_from_rpcs_and_control_api(
    dispatch_server: DispatchSimulator, client: DispatchApiClient
) -> None:
    receiver = client.stream(MG)
    await dispatch_server.wait_for_streams()
    assert dispatch_server.stream_calls == 1

    # Other microgrids' changes are not sent.
    dispatch_server.create(
        MICROGRID_ID + 1, type="X", start_time=_now(), duration=None, target=[1]
    )
    created = await client.create(MG, "RPC", "NOW", None, TargetIds(1))
    assert await _next(receiver) == (Event.CREATED, int(created.id))
    await client.update(
        microgrid_id=MG, dispatch_id=created.id, new_fields={"active": False}
    )
    assert await _next(receiver) == (Event.UPDATED, int(created.id))
    await client.delete(microgrid_id=MG, dispatch_id=created.id)
    assert await _next(receiver) == (Event.DELETED, int(created.id))

    dispatch_id = _create(dispatch_server)
    assert await _next(receiver) == (Event.CREATED, dispatch_id)
    dispatch_server.update(MICROGRID_ID, dispatch_id, payload={"x": 1})
    async with asyncio.timeout(WAIT):
        message = await receiver.receive()
    assert message.event == Event.UPDATED
    assert message.dispatch.payload == {"x": 1}
    dispatch_server.delete(MICROGRID_ID, dispatch_id)
    async with asyncio.timeout(WAIT):
        message = await receiver.receive()
    assert message.event == Event.DELETED
    assert message.dispatch.payload == {"x": 1}  # the last state

    raw_id = dispatch_server.insert_raw(
        MICROGRID_ID, dispatch_pb2.Dispatch(data=_data())
    )
    assert await _next(receiver) == (Event.CREATED, raw_id)


async def _open_raw_stream(
    server: DispatchSimulator, stub: "MicrogridDispatchServiceAsyncStub"
) -> Any:
    request = dispatch_pb2.StreamMicrogridDispatchesRequest(microgrid_id=MICROGRID_ID)
    call = stub.StreamMicrogridDispatches(request, metadata=_md())
    await server.wait_for_streams()
    _create(server)
    async with asyncio.timeout(WAIT):
        first = await call.read()
    assert isinstance(first, dispatch_pb2.StreamMicrogridDispatchesResponse)
    assert first.event == event_pb2.EVENT_CREATED
    return call


async def test_end_streams_finishes_cleanly(dispatch_server: DispatchSimulator) -> None:
    async with raw_stub(dispatch_server) as stub:
        call = await _open_raw_stream(dispatch_server, stub)
        await dispatch_server.end_streams()
        async with asyncio.timeout(WAIT):
            assert await call.read() is grpc.aio.EOF  # type: ignore[attr-defined]
            assert await call.code() == grpc.StatusCode.OK
    assert dispatch_server.open_streams == 0


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL]
)
async def test_break_streams_aborts(
    dispatch_server: DispatchSimulator, code: grpc.StatusCode
) -> None:
    async with raw_stub(dispatch_server) as stub:
        call = await _open_raw_stream(dispatch_server, stub)
        if code == grpc.StatusCode.UNAVAILABLE:
            await dispatch_server.break_streams()
        else:
            await dispatch_server.break_streams(code)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async with asyncio.timeout(WAIT):
                await call.read()
        assert info.value.code() == code
    assert dispatch_server.open_streams == 0


async def test_stop_errors_open_streams(dispatch_server: DispatchSimulator) -> None:
    async with raw_stub(dispatch_server) as stub:
        call = await _open_raw_stream(dispatch_server, stub)
        started = time.monotonic()
        await dispatch_server.stop()
        assert time.monotonic() - started < 2
        assert not dispatch_server.is_running
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async with asyncio.timeout(WAIT):
                await call.read()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    await dispatch_server.stop()  # idempotent


# ---- keepalive (REAL TIME) ----------------------------------------------------

KEEPALIVE_IDLE = 10.0
"""Seconds the keepalive test keeps a stream idle (real time, on purpose)."""


@pytest.mark.timeout(30)
async def test_keepalive_pings_keep_an_idle_stream_open(
    dispatch_server: DispatchSimulator,
) -> None:
    """REAL TIME, 10 s: a client pinging every second keeps its idle stream.

    Keepalive is a property of the real-time HTTP/2 connection, so this one
    test waits on the real clock. With grpc's server default the pings are
    answered with GOAWAY "too many pings" after the third one, the stream
    fails with UNAVAILABLE and the client opens a new one.
    """
    url = f"{dispatch_server.url}&keep_alive_interval_s=1&keep_alive_timeout_s=5"
    api = DispatchApiClient(server_url=url, auth_key=API_KEY)
    try:
        receiver = api.stream(MG)
        await dispatch_server.wait_for_streams()
        await asyncio.sleep(KEEPALIVE_IDLE)
        assert dispatch_server.open_streams == 1
        dispatch_id = _create(dispatch_server)
        assert await _next(receiver) == (Event.CREATED, dispatch_id)
        assert dispatch_server.stream_calls == 1  # never reconnected
    finally:
        await _close(api)


# ---- lifecycle and faults ----------------------------------------------------


async def test_restart_keeps_data_and_port(dispatch_server: DispatchSimulator) -> None:
    port, url = dispatch_server.port, dispatch_server.url
    assert port > 0
    assert url == f"grpc://127.0.0.1:{port}?ssl=false"
    kept = _create(dispatch_server)
    await dispatch_server.stop()
    changed_while_down = _create(dispatch_server, type="WHILE_DOWN")
    await dispatch_server.restart()
    assert dispatch_server.port == port
    assert dispatch_server.is_running

    fresh = DispatchApiClient(server_url=dispatch_server.url, auth_key=API_KEY)
    try:
        assert await _ids(fresh) == {kept, changed_while_down}
    finally:
        await _close(fresh)


async def test_delay_slows_unary_calls(dispatch_server: DispatchSimulator) -> None:
    dispatch_server.delay = 0.3
    assert dispatch_server.delay == 0.3
    hasty = DispatchApiClient(
        server_url=dispatch_server.url,
        auth_key=API_KEY,
        call_timeout=timedelta(seconds=0.1),
    )
    patient = DispatchApiClient(server_url=dispatch_server.url, auth_key=API_KEY)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _ids(hasty)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        started = time.monotonic()
        assert await _ids(patient) == set()
        assert time.monotonic() - started >= 0.3
    finally:
        await _close(hasty)
        await _close(patient)
    dispatch_server.list_calls = 0
    assert dispatch_server.list_calls == 0


async def test_signed_requests() -> None:
    server = DispatchSimulator(api_key=API_KEY, sign_secret="s3cret")
    await server.start()
    clients = {
        secret: DispatchApiClient(
            server_url=server.url, auth_key=API_KEY, sign_secret=secret
        )
        for secret in ("s3cret", "wrong")
    }
    unsigned = DispatchApiClient(server_url=server.url, auth_key=API_KEY)
    try:
        assert await _ids(clients["s3cret"]) == set()
        for bad in (clients["wrong"], unsigned):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await _ids(bad)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        for api in (*clients.values(), unsigned):
            await _close(api)
        await server.stop()


async def test_bind_failure_raises() -> None:
    first = DispatchSimulator(api_key=API_KEY)
    await first.start()
    second = DispatchSimulator(api_key=API_KEY, port=first.port)
    try:
        with pytest.raises(OSError, match="cannot bind"):
            await second.start()
        assert not second.is_running
    finally:
        await second.stop()
        await first.stop()


# ---- seed and command line -----------------------------------------------


def test_parse_time() -> None:
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    assert parse_time("now", now) == now
    assert parse_time("now+60s", now) == now + timedelta(seconds=60)
    assert parse_time("now-2h", now) == now - timedelta(hours=2)
    assert parse_time("NOW + 1d", now) == now + timedelta(days=1)
    assert parse_time("now+1.5m", now) == now + timedelta(seconds=90)
    assert parse_time("2025-01-01T11:00:00Z", now) == datetime(
        2025, 1, 1, 11, tzinfo=UTC
    )
    assert parse_time("2025-01-01T11:00:00", now).tzinfo == UTC
    with pytest.raises(SeedError):
        parse_time("tomorrow", now)


def test_sample_seed_parses() -> None:
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    seed = {item.type: item for item in load_seed(sample_seed_path(), now=now)}
    charge = seed["BATTERY_CHARGE"]
    assert charge.start_time == now + timedelta(seconds=60)
    assert charge.duration == timedelta(minutes=15)
    assert charge.microgrid_id == 1
    pv = seed["PV_CURTAILMENT"]
    assert pv.recurrence is not None
    assert pv.recurrence.frequency == Frequency.DAILY
    assert (pv.start_time.hour, pv.start_time.minute) == (11, 0)
    assert pv.duration == timedelta(hours=2)
    dry = seed["DRY_RUN_TEST"]
    assert dry.duration is None
    assert dry.dry_run
    assert dry.start_time == now - timedelta(minutes=10)
    assert (
        sum(item.start_time < now - timedelta(hours=1) for item in seed.values()) >= 2
    )


async def test_seed_applies(dispatch_server: DispatchSimulator) -> None:
    seed = load_seed(sample_seed_path(), default_microgrid_id=MICROGRID_ID)
    ids = apply_seed(dispatch_server, seed)
    dispatches = dispatch_server.dispatches(MICROGRID_ID)
    assert [int(d.id) for d in dispatches] == ids
    by_type = {d.type: d for d in dispatches}
    assert by_type["DRY_RUN_TEST"].started
    assert by_type["PV_CURTAILMENT"].end_time is None
    fcr = by_type["FCR_PREQUALIFICATION"]
    assert fcr.end_time == fcr.start_time + timedelta(hours=8, minutes=15)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"type": "X"}, "JSON list"),
        ([{"target": [1]}], "entry 0: missing key: 'type'"),
        ([{"type": "X", "target": [1], "colour": 1}], "unknown keys"),
        ([{"type": "X", "target": [1], "duration": "long"}], "entry 0"),
        (
            [{"type": "X", "target": [1], "recurrence": {"frequency": "SOMETIMES"}}],
            "name",
        ),
    ],
)
def test_bad_seed(raw: Any, message: str) -> None:
    with pytest.raises(SeedError, match=message):
        parse_seed(raw)


async def test_seed_rejected_by_server(
    dispatch_server: DispatchSimulator, tmp_path: Path
) -> None:
    seed = parse_seed([{"type": "X", "target": ["TOASTER"]}])
    with pytest.raises(SeedError, match="entry 0: unknown component category"):
        apply_seed(dispatch_server, seed)
    bad_file = tmp_path / "bad.json"
    bad_file.write_text("[{")
    with pytest.raises(SeedError, match="invalid JSON"):
        load_seed(bad_file)
    args = _parser().parse_args(["--api-key", "k", "--seed", str(bad_file)])
    assert await _serve(args) == 2


async def _read_url(stream: asyncio.StreamReader) -> str:
    async with asyncio.timeout(30):
        while line := (await stream.readline()).decode():
            if "listening on" in line:
                return line.split("listening on", 1)[1].strip()
    raise AssertionError("simulator exited before listening")


async def test_command_line_serves() -> None:
    key = "cli-key-42"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DISPATCH_API_KEY": ""}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatch_sim",
        "--port",
        "0",
        "--api-key",
        key,
        "--seed",
        "sample",
        "--microgrid-id",
        str(MICROGRID_ID),
        "--generate",
        "25",
        "--read-only-api-key",
        "cli-reader",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        url = await _read_url(proc.stdout)
        api = DispatchApiClient(server_url=url, auth_key=key)
        reader = DispatchApiClient(server_url=url, auth_key="cli-reader")
        try:
            listed = [d async for page in api.list(MG) for d in page]
            create = reader.create(MG, "A", "NOW", None, TargetIds(1))
            assert await _status(create) == grpc.StatusCode.PERMISSION_DENIED
        finally:
            await _close(api)
            await _close(reader)
        sample = len(load_seed(sample_seed_path()))
        assert len(listed) == sample + 25
        types = {d.type for d in listed}
        assert {"BATTERY_CHARGE", "PV_CURTAILMENT", "DRY_RUN_TEST"} <= types
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    log = stderr.decode()
    assert "ListMicrogridDispatches" in log
    assert key not in log
    assert "cli-reader" not in log


async def test_traffic_counts_requests_and_response_bytes_per_method(
    dispatch_server: DispatchSimulator,
) -> None:
    kept = _create(dispatch_server)
    request = dispatch_pb2.ListMicrogridDispatchesRequest(microgrid_id=MICROGRID_ID)
    async with raw_stub(dispatch_server) as stub:
        response = await stub.ListMicrogridDispatches(request, metadata=_md())
        dispatch_server.exceed_quota(1)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListMicrogridDispatches(request, metadata=_md())
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.details() == "quota exceeded"
    listed = dispatch_server.traffic()["ListMicrogridDispatches"]
    assert listed.requests == 2  # the refused one too
    assert listed.responses == 1
    assert listed.response_bytes == response.ByteSize()
    assert [d.metadata.dispatch_id for d in response.dispatches] == [kept]
    dispatch_server.reset_traffic()
    assert dispatch_server.traffic() == {}


async def test_stream_headers_come_once_subscribed(
    dispatch_server: DispatchSimulator,
) -> None:
    """With a subscription delay, the headers wait for the subscription."""
    dispatch_server.subscribe_delay = 0.3
    request = dispatch_pb2.StreamMicrogridDispatchesRequest(microgrid_id=MICROGRID_ID)
    async with raw_stub(dispatch_server) as stub:
        call = stub.StreamMicrogridDispatches(request, metadata=_md(), timeout=60)
        await call.initial_metadata()
        assert dispatch_server.open_streams == 1
        (remaining,) = dispatch_server.open_stream_deadlines
        assert remaining is not None
        assert 0 < remaining <= 60
        call.cancel()
