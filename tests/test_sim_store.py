"""The simulator's indexed store: pages equal a full sort, across changes."""

from datetime import UTC, datetime, timedelta
import itertools

from frequenz.api.common.v1alpha8.pagination.pagination_params_pb2 import (
    PaginationParams,
)
from frequenz.api.dispatch.v1 import dispatch_pb2
import pytest

from dispatch_sim.convert import build_data
from dispatch_sim.seed import generate_dispatches
from dispatch_sim.store import DispatchStore, matches, nanos

MG = 1
NOW = datetime(2030, 1, 1, tzinfo=UTC)
FIELDS: dict[int, str] = {
    dispatch_pb2.SORT_FIELD_UNSPECIFIED: "create",
    dispatch_pb2.SORT_FIELD_CREATE_TIME: "create",
    dispatch_pb2.SORT_FIELD_START_TIME: "start",
    dispatch_pb2.SORT_FIELD_LAST_UPDATE_TIME: "update",
}


def _store(count: int) -> DispatchStore:
    store = DispatchStore()
    for fields in generate_dispatches(count, now=NOW, current=count // 2):
        store.create(MG, build_data(**fields))
    return store


def _expected(
    store: DispatchStore, field: int, descending: bool, flt: dispatch_pb2.DispatchFilter
) -> list[int]:
    def key(dispatch: dispatch_pb2.Dispatch) -> tuple[int, int]:
        stamp = {
            "create": dispatch.metadata.create_time,
            "start": dispatch.data.start_time,
            "update": dispatch.metadata.update_time,
        }[FIELDS[field]]
        return (nanos(stamp), dispatch.metadata.dispatch_id)

    found = [d for d in store.all(MG) if matches(d, flt)]
    found.sort(key=key, reverse=descending)
    return [d.metadata.dispatch_id for d in found]


def _list(
    store: DispatchStore,
    request: dispatch_pb2.ListMicrogridDispatchesRequest,
) -> list[int]:
    seen: list[int] = []
    while True:
        page = store.page(MG, request, 20)
        assert len(page.dispatches) <= (request.pagination_params.page_size or 20)
        seen += [d.metadata.dispatch_id for d in page.dispatches]
        if not page.next_page_token:
            return seen
        request.pagination_params.Clear()
        request.pagination_params.page_token = page.next_page_token


@pytest.mark.parametrize(
    ("field", "order"),
    itertools.product(
        FIELDS,
        [
            dispatch_pb2.SORT_ORDER_UNSPECIFIED,
            dispatch_pb2.SORT_ORDER_ASCENDING,
            dispatch_pb2.SORT_ORDER_DESCENDING,
        ],
    ),
)
def test_pages_follow_the_requested_order(field: int, order: int) -> None:
    store = _store(57)
    # Updates move dispatches in the update-time order and the start order.
    for dispatch_id in (3, 10, 40):
        data = store.get(MG, dispatch_id).data
        data.start_time.FromDatetime(NOW + timedelta(days=dispatch_id))
        store.replace_data(MG, dispatch_id, data)
    store.delete(MG, 5)
    descending = order != dispatch_pb2.SORT_ORDER_ASCENDING
    for flt in (
        dispatch_pb2.DispatchFilter(),
        dispatch_pb2.DispatchFilter(queries=["battery"]),
    ):
        request = dispatch_pb2.ListMicrogridDispatchesRequest(
            microgrid_id=MG,
            filter=flt,
            sort_options=dispatch_pb2.SortOptions(
                sort_field=dispatch_pb2.SortField.ValueType(field),
                sort_order=dispatch_pb2.SortOrder.ValueType(order),
            ),
            pagination_params=PaginationParams(page_size=7),
        )
        seen = _list(store, request)
        assert seen == _expected(store, field, descending, flt)


def test_changes_between_pages_and_filter_cache() -> None:
    store = _store(30)
    flt = dispatch_pb2.DispatchFilter(is_active=True)
    request = dispatch_pb2.ListMicrogridDispatchesRequest(
        microgrid_id=MG, filter=flt, pagination_params=PaginationParams(page_size=10)
    )
    first = store.page(MG, request, 20)
    assert first.total_items == 30
    # Newest first: ids 30..21, then the cursor continues below id 21, even
    # though 25 is deleted and a new dispatch arrives meanwhile.
    assert [d.metadata.dispatch_id for d in first.dispatches] == list(range(30, 20, -1))
    store.delete(MG, 15)
    inactive = store.get(MG, 14).data
    inactive.is_active = False
    store.replace_data(MG, 14, inactive)
    store.create(MG, build_data(**generate_dispatches(1, now=NOW)[0]))
    request.pagination_params.Clear()
    request.pagination_params.page_token = first.next_page_token
    second = store.page(MG, request, 20)
    assert [d.metadata.dispatch_id for d in second.dispatches] == [
        20,
        19,
        18,
        17,
        16,
        13,
        12,
        11,
        10,
        9,
    ]
    assert second.total_items == 29  # 31 stored, one deleted, one inactive


def test_empty_and_unknown_microgrid() -> None:
    store = DispatchStore()
    request = dispatch_pb2.ListMicrogridDispatchesRequest(microgrid_id=MG)
    page = store.page(MG, request, 20)
    assert (page.dispatches, page.next_page_token, page.total_items) == ([], "", 0)
    assert store.count(MG) == 0


def test_generated_dispatches_are_valid_and_mixed() -> None:
    items = generate_dispatches(100, now=NOW)
    store = DispatchStore()
    for fields in items:
        store.create(MG, build_data(**fields))
    dispatches = store.all(MG)
    assert len(dispatches) == 100
    ended = [
        d
        for d in dispatches
        if d.metadata.HasField("end_time")
        and d.metadata.end_time.ToDatetime(tzinfo=UTC) < NOW
    ]
    assert len(ended) == 90  # a tenth is current by default
    recurring = [d for d in dispatches if d.data.recurrence.freq]
    assert recurring
