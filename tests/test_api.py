"""DispatchApi against the real in-memory gRPC server: writes, paging, versions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from frequenz.api.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from frequenz.client.dispatch.recurrence import (
    EndCriteria,
    Frequency,
    RecurrenceRule,
    Weekday,
)
import grpc
from homeassistant.core import HomeAssistant
import pytest

from custom_components.frequenz_dispatch.api import (
    LIST_PAGE_SIZE,
    DispatchApi,
    DispatchApiError,
    DispatchAuthError,
    DispatchConnectionError,
    DispatchInvalidInputError,
    DispatchNotFoundError,
    DispatchWriteDeniedError,
    MalformedDispatch,
    Unchanged,
    ValidDispatch,
    parse_dispatch,
)
from custom_components.frequenz_dispatch.event_data import dispatch_data
from dispatch_sim.server import DispatchSimulator

from .common import API_KEY, MICROGRID_ID, create_dispatch


@pytest.fixture
async def api(dispatch_server: DispatchSimulator) -> AsyncIterator[DispatchApi]:
    """Our API object connected to the local server."""
    async with DispatchApi(dispatch_server.url, API_KEY, MICROGRID_ID) as api:
        yield api


def _soon() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)


def _valid(item: object) -> ValidDispatch:
    assert isinstance(item, ValidDispatch), item
    return item


async def test_create_get_update_delete(
    api: DispatchApi, dispatch_server: DispatchSimulator
) -> None:
    start = _soon()
    rule = RecurrenceRule(
        frequency=Frequency.DAILY, interval=2, end_criteria=EndCriteria(count=3)
    )
    created = _valid(
        await api.create(
            dispatch_type="BATTERY_CHARGE",
            start_time=start,
            duration=timedelta(minutes=15),
            target=["BATTERY:LI_ION", "INVERTER"],
            payload={"power_w": 5000},
            dry_run=True,
            recurrence=rule,
        )
    )
    data = dispatch_data(created.dispatch)
    assert data["target"] == ["BATTERY:LI_ION", "INVERTER"]
    assert data["start_time"] == start.isoformat()
    assert data["duration"] == 900
    assert data["dry_run"] is True
    assert data["payload"] == {"power_w": 5000}
    assert data["recurrence"]["frequency"] == "DAILY"
    assert data["recurrence"]["count"] == 3
    stored = dispatch_server.get(MICROGRID_ID, created.id)
    assert stored.type == "BATTERY_CHARGE"

    fetched = _valid(await api.get(created.id))
    assert dispatch_data(fetched.dispatch) == data

    updated = _valid(
        await api.update(
            created.id,
            {
                "duration": None,
                "target": [7, 3],
                "payload": {"power_w": 1000},
                "active": False,
                "recurrence": None,
            },
        )
    )
    new = dispatch_data(updated.dispatch)
    assert new["duration"] is None
    assert new["target"] == [3, 7]
    assert new["payload"] == {"power_w": 1000}
    assert new["active"] is False
    assert new["recurrence"] is None
    # Only the given keys change.
    assert new["start_time"] == data["start_time"]
    assert new["type"] == "BATTERY_CHARGE"
    assert dispatch_server.get(MICROGRID_ID, created.id).duration is None

    await api.delete(created.id)
    assert dispatch_server.dispatches(MICROGRID_ID) == []


async def test_update_sets_recurrence_and_start(api: DispatchApi) -> None:
    created = _valid(
        await api.create(
            dispatch_type="X",
            start_time=_soon(),
            duration=None,
            target=[1],
            payload={},
        )
    )
    later = _soon() + timedelta(days=1)
    rule = RecurrenceRule(frequency=Frequency.HOURLY, interval=1, byminutes=[0, 30])
    updated = _valid(
        await api.update(created.id, {"start_time": later, "recurrence": rule})
    )
    assert updated.dispatch.start_time == later
    assert updated.dispatch.recurrence.frequency is Frequency.HOURLY
    assert updated.dispatch.recurrence.byminutes == [0, 30]


async def test_far_count_rules_arrive_prepared(
    api: DispatchApi, dispatch_server: DispatchSimulator
) -> None:
    """A count rule whose end lies millennia ahead is compiled off the loop."""
    rule = RecurrenceRule(
        frequency=Frequency.YEARLY,
        interval=1,
        bymonths=[2],
        bymonthdays=[29],
        byweekdays=[Weekday.MONDAY],
        end_criteria=EndCriteria(count=100),  # Monday 29 February: ~2800 years
    )
    created = _valid(
        await api.create(
            dispatch_type="X",
            start_time=_soon(),
            duration=timedelta(seconds=1),
            target=[1],
            payload={},
            recurrence=rule,
        )
    )
    assert not created.schedule.needs_preparation
    [listed] = await api.list_all()
    assert not _valid(listed).schedule.needs_preparation
    assert not _valid(await api.get(created.id)).schedule.needs_preparation
    stream = api.open_stream()
    try:
        updates = aiter(stream)
        await dispatch_server.wait_for_streams()
        dispatch_server.update(MICROGRID_ID, created.id, payload={"w": 1})
        update = await asyncio.wait_for(anext(updates), 10)
    finally:
        stream.cancel()
    assert not _valid(update.item).schedule.needs_preparation


async def test_blocking_work_runs_through_the_callers_hook(
    hass: HomeAssistant, dispatch_server: DispatchSimulator
) -> None:
    """The far rule's compile step runs in HA's executor when HA opens the API."""
    ran: list[str] = []

    def run_blocking[T](target: Callable[[], T], /) -> Awaitable[T]:
        ran.append(getattr(target, "__name__", repr(target)))
        return hass.async_add_executor_job(target)

    rule = RecurrenceRule(
        frequency=Frequency.YEARLY,
        interval=1,
        bymonths=[2],
        bymonthdays=[29],
        byweekdays=[Weekday.MONDAY],
        end_criteria=EndCriteria(count=100),
    )
    async with await DispatchApi.async_open(
        dispatch_server.url, API_KEY, MICROGRID_ID, run_blocking=run_blocking
    ) as api:
        created = _valid(
            await api.create(
                dispatch_type="X",
                start_time=_soon(),
                duration=timedelta(seconds=1),
                target=[1],
                payload={},
                recurrence=rule,
            )
        )
        await api.list_all()
        await api.get(created.id)
        stream = api.open_stream()
        try:
            updates = aiter(stream)
            await dispatch_server.wait_for_streams()
            dispatch_server.update(MICROGRID_ID, created.id, payload={"w": 1})
            await asyncio.wait_for(anext(updates), 10)
        finally:
            stream.cancel()
    # create, list, get and the stream's update: each compiled through the hook.
    assert ran == ["prepare"] * 4


async def test_server_invalid_argument(api: DispatchApi) -> None:
    # In the past beyond the server's tolerance: the server refuses it.
    with pytest.raises(DispatchInvalidInputError, match="past"):
        await api.create(
            dispatch_type="X",
            start_time=_soon() - timedelta(days=1),
            duration=None,
            target=[1],
            payload={},
        )
    rule = RecurrenceRule(frequency=Frequency.DAILY, interval=0)
    with pytest.raises(DispatchInvalidInputError, match="interval"):
        await api.create(
            dispatch_type="X",
            start_time=_soon(),
            duration=None,
            target=[1],
            payload={},
            recurrence=rule,
        )


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ([], "empty"),
        (["BATERY"], "unknown category"),
        (["BATTERY:PV"], "unknown type"),
        (["METER:AC"], "has no types"),
        ([1, "BATTERY"], "all component ids"),
        ([-1], "negative"),
        ([True], "all component ids"),
    ],
)
async def test_bad_target_refused_before_sending(
    api: DispatchApi, dispatch_server: DispatchSimulator, target: list[int], match: str
) -> None:
    with pytest.raises(DispatchInvalidInputError, match=match):
        await api.create(
            dispatch_type="X",
            start_time=_soon(),
            duration=None,
            target=target,
            payload={},
        )
    assert dispatch_server.dispatches(MICROGRID_ID) == []


async def test_other_local_refusals(api: DispatchApi) -> None:
    with pytest.raises(DispatchInvalidInputError, match="time zone"):
        await api.create(
            dispatch_type="X",
            start_time=datetime(2030, 1, 1),  # noqa: DTZ001
            duration=None,
            target=[1],
            payload={},
        )
    with pytest.raises(DispatchInvalidInputError, match="duration"):
        await api.create(
            dispatch_type="X",
            start_time=_soon(),
            duration=timedelta(seconds=-5),
            target=[1],
            payload={},
        )
    with pytest.raises(DispatchInvalidInputError, match="payload"):
        await api.create(
            dispatch_type="X",
            start_time=_soon(),
            duration=None,
            target=[1],
            payload={"when": datetime.now(UTC)},
        )
    for key in ("type", "dry_run"):
        with pytest.raises(DispatchInvalidInputError, match=key):
            await api.update(1, {key: "Y"})


async def test_not_found(api: DispatchApi) -> None:
    with pytest.raises(DispatchNotFoundError):
        await api.get(999)
    with pytest.raises(DispatchNotFoundError):
        await api.update(999, {"active": False})
    with pytest.raises(DispatchNotFoundError):
        await api.delete(999)


async def test_write_with_rejected_key_is_never_an_auth_error(
    dispatch_server: DispatchSimulator,
) -> None:
    async with DispatchApi(dispatch_server.url, "not-the-key", MICROGRID_ID) as api:
        with pytest.raises(DispatchWriteDeniedError) as caught:
            await api.create(
                dispatch_type="X",
                start_time=_soon(),
                duration=None,
                target=[1],
                payload={},
            )
        assert not isinstance(caught.value, DispatchAuthError)
        assert isinstance(caught.value, DispatchApiError)
        with pytest.raises(DispatchWriteDeniedError):
            await api.update(1, {"active": False})
        with pytest.raises(DispatchWriteDeniedError):
            await api.delete(1)
        # A read with the same key is an auth error (reauth may follow).
        with pytest.raises(DispatchAuthError):
            await api.get(1)


# -- listing: versions, unchanged dispatches, paging ---------------------------


def _raw_copy(
    server: DispatchSimulator, dispatch_id: int, seconds: int, nanos: int
) -> dispatch_pb2.Dispatch:
    """A stored dispatch with its update time set to seconds + nanos."""
    (raw,) = [
        d
        for d in server.raw_dispatches(MICROGRID_ID)
        if d.metadata.dispatch_id == dispatch_id
    ]
    raw.metadata.update_time.seconds = seconds
    raw.metadata.update_time.nanos = nanos
    return raw


async def test_versions_are_exact_nanoseconds(
    api: DispatchApi, dispatch_server: DispatchSimulator
) -> None:
    """Two versions within one microsecond differ; a re-list must not skip one."""
    dispatch_id = create_dispatch(dispatch_server, start_time=_soon(), duration=None)
    seconds = 1_800_000_000
    dispatch_server.insert_raw(
        MICROGRID_ID, _raw_copy(dispatch_server, dispatch_id, seconds, 1_000)
    )
    (first,) = await api.list_all()
    first = _valid(first)
    assert first.version == seconds * 10**9 + 1_000

    dispatch_server.insert_raw(
        MICROGRID_ID, _raw_copy(dispatch_server, dispatch_id, seconds, 1_001)
    )
    # The client's datetimes cannot tell these two versions apart.
    (second,) = await api.list_all({dispatch_id: first.version})
    second = _valid(second)
    assert second.dispatch.update_time == first.dispatch.update_time
    assert second.version == first.version + 1

    (again,) = await api.list_all({dispatch_id: second.version})
    assert again == Unchanged(dispatch_id)


async def test_relist_skips_unchanged_before_parsing(
    api: DispatchApi, dispatch_server: DispatchSimulator
) -> None:
    ids = [
        create_dispatch(dispatch_server, start_time=_soon(), duration=None)
        for _ in range(3)
    ]
    listed = {item.id: item for item in await api.list_all()}
    known = {i: _valid(listed[i]).version for i in ids}
    dispatch_server.update(MICROGRID_ID, ids[1], payload={"x": 1})
    # A broken dispatch the caller does not know is parsed (and malformed).
    broken = dispatch_pb2.Dispatch()
    broken.data.type = "BROKEN"
    broken_id = dispatch_server.insert_raw(MICROGRID_ID, broken)

    again = {item.id: item for item in await api.list_all(known)}
    assert again[ids[0]] == Unchanged(ids[0])
    assert again[ids[2]] == Unchanged(ids[2])
    changed = _valid(again[ids[1]])
    assert changed.dispatch.payload == {"x": 1}
    assert changed.version > known[ids[1]]
    malformed = again[broken_id]
    assert isinstance(malformed, MalformedDispatch)
    assert malformed.version is not None


def test_malformed_update_time_is_exact() -> None:
    """Dividing nanoseconds by 1e9 rounded .9999996 s up into the next second."""
    message = dispatch_pb2.Dispatch()
    message.metadata.dispatch_id = 5
    message.metadata.update_time.seconds = 1_800_000_000
    message.metadata.update_time.nanos = 999_999_600
    item = parse_dispatch(message)
    assert isinstance(item, MalformedDispatch)
    assert item.update_time == datetime.fromtimestamp(1_800_000_000, UTC) + timedelta(
        microseconds=999_999
    )
    assert item.version == 1_800_000_000_999_999_600


class _ScriptedPages(dispatch_pb2_grpc.MicrogridDispatchServiceServicer):
    """A misbehaving server: answers each page token from a script (lists only)."""

    def __init__(self, pages: dict[str, tuple[list[int], str]]) -> None:
        self.pages = pages
        self.requests: list[dispatch_pb2.ListMicrogridDispatchesRequest] = []

    async def ListMicrogridDispatches(
        self, request: dispatch_pb2.ListMicrogridDispatchesRequest, context: Any
    ) -> dispatch_pb2.ListMicrogridDispatchesResponse:
        self.requests.append(request)
        ids, token = self.pages[request.pagination_params.page_token]
        response = dispatch_pb2.ListMicrogridDispatchesResponse()
        for dispatch_id in ids:
            response.dispatches.add().metadata.dispatch_id = dispatch_id
        response.pagination_info.next_page_token = token
        return response


async def _serve_script(servicer: _ScriptedPages) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    dispatch_pb2_grpc.add_MicrogridDispatchServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"grpc://127.0.0.1:{port}?ssl=false"


@pytest.mark.parametrize(
    "pages",
    [
        {"": ([1], "A"), "A": ([2], "A")},
        {"": ([1], "A"), "A": ([2], "B"), "B": ([3], "A")},
    ],
    ids=["A-A", "A-B-A"],
)
async def test_page_token_cycle_is_an_error(
    pages: dict[str, tuple[list[int], str]],
) -> None:
    servicer = _ScriptedPages(pages)  # type: ignore[abstract]
    server, url = await _serve_script(servicer)
    try:
        async with DispatchApi(url, API_KEY, MICROGRID_ID) as api:
            with pytest.raises(DispatchConnectionError, match="page tokens"):
                await api.list_all()
    finally:
        await server.stop(None)
    assert len(servicer.requests) == len(pages)


async def test_every_page_asks_for_the_page_size() -> None:
    """The first page asks for our size; later ones keep it (via the token).

    In api-common v1alpha8 size and token are a oneof: the token carries the
    size. Where both fields exist, the size is sent with every token.
    """
    pages = {"": ([1], "A"), "A": ([2], "B"), "B": ([3], "")}
    servicer = _ScriptedPages(pages)  # type: ignore[abstract]
    server, url = await _serve_script(servicer)
    try:
        async with DispatchApi(url, API_KEY, MICROGRID_ID) as api:
            assert [item.id for item in await api.list_all()] == [1, 2, 3]
    finally:
        await server.stop(None)
    params = [r.pagination_params for r in servicer.requests]
    assert [p.page_token for p in params] == ["", "A", "B"]
    assert params[0].page_size == LIST_PAGE_SIZE
    oneof = params[0].DESCRIPTOR.fields_by_name["page_size"].containing_oneof
    if oneof is None:
        assert all(p.page_size == LIST_PAGE_SIZE for p in params)


# -- oversized responses ---------------------------------------------------------


def _big(server: DispatchSimulator, size: int, *, notify: bool = False) -> int:
    """Store a valid dispatch whose payload is `size` bytes (no size check)."""
    dispatch_id = create_dispatch(server, start_time=_soon(), duration=None)
    (raw,) = [
        d
        for d in server.raw_dispatches(MICROGRID_ID)
        if d.metadata.dispatch_id == dispatch_id
    ]
    raw.data.payload.update({"blob": "x" * size})
    return server.insert_raw(MICROGRID_ID, raw, notify=notify)


async def test_page_over_the_limit_is_asked_again_smaller(
    api: DispatchApi, dispatch_server: DispatchSimulator
) -> None:
    """100 dispatches of 200 KB: one page would be 20 MB, over 16 MiB."""
    ids = {_big(dispatch_server, 200_000) for _ in range(LIST_PAGE_SIZE)}
    dispatch_server.list_calls = 0
    items = await api.list_all()
    assert {item.id for item in items} == ids
    assert all(isinstance(item, ValidDispatch) for item in items)
    # 100 refused, then two pages of 50.
    assert dispatch_server.list_calls == 3
    assert api.unlisted == 0


async def test_page_of_5_mb_is_received(
    api: DispatchApi, dispatch_server: DispatchSimulator
) -> None:
    """gRPC's default limit (4 MiB) is raised."""
    big = _big(dispatch_server, 5_000_000)
    dispatch_server.list_calls = 0
    (item,) = await api.list_all()
    assert _valid(item).id == big
    assert dispatch_server.list_calls == 1


async def test_dispatch_too_large_even_alone_is_skipped_and_named(
    api: DispatchApi, dispatch_server: DispatchSimulator
) -> None:
    small = [
        create_dispatch(dispatch_server, start_time=_soon(), duration=None)
        for _ in range(2)
    ]
    huge = _big(dispatch_server, 17 * 1024 * 1024)
    small += [
        create_dispatch(dispatch_server, start_time=_soon(), duration=None)
        for _ in range(2)
    ]
    # Unknown to the caller: listed around it, counted, not named.
    items = await api.list_all()
    assert {item.id for item in items} == set(small)
    assert api.unlisted == 1

    # Known to the caller: named as unlistable, not taken for deleted.
    by_id = {item.id: item for item in await api.list_all({huge: 1})}
    assert set(by_id) == {*small, huge}
    skipped = by_id[huge]
    assert isinstance(skipped, MalformedDispatch)
    assert skipped.unlistable
    assert "too large" in skipped.reason
    assert api.unlisted == 0


async def test_oversized_stream_message_raises_connection_error(
    api: DispatchApi, dispatch_server: DispatchSimulator
) -> None:
    stream = api.open_stream()
    received: list[int] = []

    async def follow() -> None:
        async for update in stream:
            received.append(update.item.id)

    task = asyncio.create_task(follow())
    try:
        await dispatch_server.wait_for_streams(1)
        fine = _big(dispatch_server, 5_000_000, notify=True)
        _big(dispatch_server, 17 * 1024 * 1024, notify=True)
        with pytest.raises(DispatchConnectionError, match="RESOURCE_EXHAUSTED"):
            await asyncio.wait_for(task, 10)
    finally:
        stream.cancel()
        task.cancel()
    # The 5 MB message came through before the stream broke.
    assert fine in received


async def test_read_only_key_write_is_denied_never_auth(
    dispatch_server: DispatchSimulator,
) -> None:
    dispatch_server.read_only_api_key = "reader-key"
    dispatch_id = create_dispatch(dispatch_server, start_time=_soon(), duration=None)
    async with DispatchApi(dispatch_server.url, "reader-key", MICROGRID_ID) as api:
        assert [item.id for item in await api.list_all()] == [dispatch_id]
        assert (await api.get(dispatch_id)).id == dispatch_id
        with pytest.raises(DispatchWriteDeniedError) as caught:
            await api.create(
                dispatch_type="X",
                start_time=_soon(),
                duration=None,
                target=["BATTERY"],
                payload={},
            )
        assert not isinstance(caught.value, DispatchAuthError)
        with pytest.raises(DispatchWriteDeniedError):
            await api.update(dispatch_id, {"active": False})
        with pytest.raises(DispatchWriteDeniedError):
            await api.delete(dispatch_id)
    assert dispatch_server.get(MICROGRID_ID, dispatch_id).active


async def test_server_refusing_large_pages_gets_smaller_ones(
    api: DispatchApi, dispatch_server: DispatchSimulator
) -> None:
    """A server that answers RESOURCE_EXHAUSTED for pages over 300 KB."""
    ids = {_big(dispatch_server, 40_000) for _ in range(20)}
    dispatch_server.max_page_bytes = 300_000
    dispatch_server.list_calls = 0
    items = await api.list_all()
    assert {item.id for item in items} == ids
    # 100, 50, 25, 12 refused; pages of 6 (240 KB) pass: 4 of them.
    assert dispatch_server.list_calls == 4 + 4


async def test_server_refusing_one_dispatch_even_alone(
    api: DispatchApi, dispatch_server: DispatchSimulator
) -> None:
    small = create_dispatch(dispatch_server, start_time=_soon(), duration=None)
    big = _big(dispatch_server, 400_000)
    newer = create_dispatch(dispatch_server, start_time=_soon(), duration=None)
    dispatch_server.max_page_bytes = 300_000
    items = await api.list_all()
    assert {item.id for item in items} == {small, newer}
    assert api.unlisted == 1
    # Known: fetched alone (this server limits only list pages).
    by_id = {item.id: item for item in await api.list_all({big: 1})}
    assert set(by_id) == {small, newer, big}
    assert _valid(by_id[big]).id == big
    assert api.unlisted == 0


async def test_only_dispatch_too_large_is_counted(
    api: DispatchApi, dispatch_server: DispatchSimulator
) -> None:
    """No page ever arrives, yet the dispatch is counted as unlisted."""
    dispatch_server.max_page_bytes = 300_000
    big = _big(dispatch_server, 400_000)
    assert await api.list_all() == []
    assert api.unlisted == 1
    (item,) = await api.list_all({big: 1})
    assert _valid(item).id == big


async def test_later_page_too_large_shrinks_the_pages(
    api: DispatchApi, dispatch_server: DispatchSimulator
) -> None:
    """Page 1 fits, page 2 does not: the size shrinks for the pages after it.

    (With api-common v1alpha8 the token carries the page size, so the listing
    starts over at the smaller size, keeping what it has.)
    """
    big = {_big(dispatch_server, 40_000) for _ in range(10)}  # oldest: last pages
    small = {
        create_dispatch(dispatch_server, start_time=_soon(), duration=None)
        for _ in range(LIST_PAGE_SIZE)
    }
    dispatch_server.max_page_bytes = 300_000
    dispatch_server.list_calls = 0
    items = await api.list_all()
    assert {item.id for item in items} == big | small
    assert all(isinstance(item, ValidDispatch) for item in items)
    assert api.unlisted == 0
    assert dispatch_server.list_calls < 60


async def test_quota_error_raises_at_once_and_lists_nothing(
    api: DispatchApi, dispatch_server: DispatchSimulator
) -> None:
    """RESOURCE_EXHAUSTED without gRPC's size message is a quota: no halving."""
    known = create_dispatch(dispatch_server, start_time=_soon(), duration=None)
    dispatch_server.exceed_quota(100)
    with pytest.raises(DispatchConnectionError, match="quota exceeded"):
        await api.list_all({known: 1})
    # One refused page; not 100, 50, ... 1 in both orders, nor a get per id.
    assert dispatch_server.pending_failures == 99
    dispatch_server.exceed_quota(0)
    assert [item.id for item in await api.list_all()] == [known]


async def test_wait_open_raises_what_a_listing_would(
    dispatch_server: DispatchSimulator,
) -> None:
    async with DispatchApi(dispatch_server.url, "wrong-key", MICROGRID_ID) as api:
        stream = api.open_stream()
        try:
            with pytest.raises(DispatchAuthError):
                await stream.wait_open()
        finally:
            stream.cancel()


async def test_wait_open_returns_once_the_server_subscribed(
    api: DispatchApi, dispatch_server: DispatchSimulator
) -> None:
    dispatch_server.subscribe_delay = 0.3
    stream = api.open_stream()
    try:
        await stream.wait_open()
        assert dispatch_server.open_streams == 1
        assert dispatch_server.open_stream_deadlines == [None]
    finally:
        stream.cancel()
