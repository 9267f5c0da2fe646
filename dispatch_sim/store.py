"""In-memory dispatches per microgrid, indexed by the list orders, and listing.

Each microgrid keeps its dispatches by id and, for every sort field, a sorted
list of `(time in ns, id)` keys. A page is a bisect to the cursor and a slice:
O(log N + page) for the common request (no filter), whatever the order. A
filtered request scans the microgrid once and caches the matching keys until
the next change, so its later pages are as cheap.
"""

import base64
import binascii
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
import json

from frequenz.api.common.v1alpha8.types.interval_pb2 import Interval
from frequenz.api.dispatch.v1 import dispatch_pb2
from frequenz.client.common.streaming import Event
from google.protobuf.timestamp_pb2 import Timestamp

from .convert import now_utc, to_timestamp
from .errors import DispatchNotFoundError, InvalidDispatchError
from .rules import compute_end_time

MAX_PAGE_SIZE = 1000
"""Larger requested page sizes are silently capped to this."""

Listener = Callable[[int, Event, dispatch_pb2.Dispatch], None]
"""Called with (microgrid_id, event, dispatch) after every change.

The dispatch is the stored message: a listener copies what it keeps.
"""

_Key = tuple[int, int]
_Category = tuple[int, tuple[str, int] | None]
_FIELDS = (
    dispatch_pb2.SORT_FIELD_CREATE_TIME,
    dispatch_pb2.SORT_FIELD_START_TIME,
    dispatch_pb2.SORT_FIELD_LAST_UPDATE_TIME,
)


def nanos(stamp: Timestamp) -> int:
    """Return a timestamp as integer nanoseconds since the epoch."""
    return int(stamp.seconds) * 1_000_000_000 + int(stamp.nanos)


def _sort_field(value: int) -> int:
    """Map a requested `SortField` to an indexed one (default: create time)."""
    return value if value in _FIELDS else dispatch_pb2.SORT_FIELD_CREATE_TIME


def _sort_key(dispatch: dispatch_pb2.Dispatch, sort_field: int) -> _Key:
    """Return the key of a dispatch in one order: (time of the field, id)."""
    if sort_field == dispatch_pb2.SORT_FIELD_START_TIME:
        stamp = dispatch.data.start_time
    elif sort_field == dispatch_pb2.SORT_FIELD_LAST_UPDATE_TIME:
        stamp = dispatch.metadata.update_time
    else:
        stamp = dispatch.metadata.create_time
    return (nanos(stamp), int(dispatch.metadata.dispatch_id))


# ---- filters --------------------------------------------------------------------


def _in_interval(stamp: Timestamp | None, interval: Interval) -> bool:
    """Check `from <= stamp < to` (either bound optional; None = an open end)."""
    lower_set = interval.HasField("start_time")
    upper_set = interval.HasField("end_time")
    if stamp is None:
        return not upper_set
    value = nanos(stamp)
    if lower_set and value < nanos(interval.start_time):
        return False
    return not (upper_set and value >= nanos(interval.end_time))


def _categories(target: dispatch_pb2.TargetComponents) -> set[_Category] | None:
    """Return the (category, type) pairs of a target; None if it lists ids."""
    match target.WhichOneof("components"):
        case "component_categories":
            return {(cat, None) for cat in target.component_categories.categories}
        case "component_categories_types":
            result: set[_Category] = set()
            for entry in target.component_categories_types.categories:
                kind = entry.WhichOneof("type")
                type_ = None if kind is None else (kind, getattr(entry, kind))
                result.add((entry.category, type_))
            return result
        case _:
            return None


def targets_overlap(
    dispatch_target: dispatch_pb2.TargetComponents,
    wanted: dispatch_pb2.TargetComponents,
) -> bool:
    """Check whether a dispatch's target shares a component or category.

    Ids match ids; categories match categories, where a category without a
    type matches every type of that category (and vice versa).
    """
    if wanted.WhichOneof("components") == "component_ids":
        if dispatch_target.WhichOneof("components") != "component_ids":
            return False
        return bool(
            set(dispatch_target.component_ids.ids) & set(wanted.component_ids.ids)
        )
    have, want = _categories(dispatch_target), _categories(wanted)
    if not have or not want:
        return False
    return any(
        category == w_category and (type_ is None or w_type is None or type_ == w_type)
        for category, type_ in have
        for w_category, w_type in want
    )


def matches_query(dispatch: dispatch_pb2.Dispatch, queries: Iterable[str]) -> bool:
    """Check the free-text queries (OR-combined; none matches everything).

    `#<int>` matches the dispatch id; anything else matches case-insensitively
    as a substring of the type (including a leading `#` that is not an id).
    """
    queries = list(queries)
    if not queries:
        return True
    type_ = dispatch.data.type.lower()
    for query in queries:
        if query.startswith("#") and query[1:].isdigit():
            if int(query[1:]) == dispatch.metadata.dispatch_id:
                return True
        elif query.lower() in type_:
            return True
    return False


def matches(dispatch: dispatch_pb2.Dispatch, flt: dispatch_pb2.DispatchFilter) -> bool:
    """Check a dispatch against every criterion a list filter gives."""
    data, meta = dispatch.data, dispatch.metadata
    end_time = meta.end_time if meta.HasField("end_time") else None
    checks = [
        not flt.dispatch_ids or meta.dispatch_id in flt.dispatch_ids,
        not flt.HasField("is_active") or data.is_active == flt.is_active,
        not flt.HasField("is_dry_run") or data.is_dry_run == flt.is_dry_run,
        flt.WhichOneof("recurrence") != "is_recurring"
        or (data.recurrence.freq != 0) == flt.is_recurring,
        not flt.targets or any(targets_overlap(data.target, t) for t in flt.targets),
        not flt.HasField("start_time_interval")
        or _in_interval(data.start_time, flt.start_time_interval),
        not flt.HasField("end_time_interval")
        or _in_interval(end_time, flt.end_time_interval),
        not flt.HasField("update_time_interval")
        or _in_interval(meta.update_time, flt.update_time_interval),
    ]
    return all(checks) and matches_query(dispatch, flt.queries)


# ---- page tokens ----------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One page of a list response."""

    dispatches: list[dispatch_pb2.Dispatch]
    """The dispatches on this page (stored messages: copy before changing)."""

    next_page_token: str
    """Opaque token for the next page; empty on the last page."""

    total_items: int
    """Number of dispatches matching the filter, over all pages."""


@dataclass(frozen=True)
class _Cursor:
    """What a page token remembers."""

    page_size: int
    field: int
    descending: bool
    after: _Key | None


def _encode(cursor: _Cursor) -> str:
    """Serialise a cursor into an opaque page token."""
    raw = json.dumps(
        [cursor.page_size, cursor.field, cursor.descending, cursor.after]
    ).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode(token: str) -> _Cursor:
    """Parse a page token; InvalidDispatchError if this server did not issue it."""
    try:
        size, sort_field, descending, after = json.loads(
            base64.urlsafe_b64decode(token)
        )
        key = (int(after[0]), int(after[1]))
        return _Cursor(int(size), _sort_field(int(sort_field)), bool(descending), key)
    except (ValueError, TypeError, IndexError, binascii.Error):
        raise InvalidDispatchError("invalid page_token") from None


def _first_cursor(
    request: dispatch_pb2.ListMicrogridDispatchesRequest, default_page_size: int
) -> _Cursor:
    """Build the cursor of a first-page request (default: newest created first)."""
    options = request.sort_options
    return _Cursor(
        page_size=request.pagination_params.page_size or default_page_size,
        field=_sort_field(options.sort_field),
        descending=options.sort_order != dispatch_pb2.SORT_ORDER_ASCENDING,
        after=None,
    )


# ---- the store ------------------------------------------------------------------


@dataclass
class _Grid:
    """The dispatches of one microgrid and their orders."""

    by_id: dict[int, dispatch_pb2.Dispatch] = field(default_factory=dict)
    orders: dict[int, list[_Key]] = field(
        default_factory=lambda: {sort_field: [] for sort_field in _FIELDS}
    )
    version: int = 0
    """Bumped on every change; invalidates `filtered`."""
    filtered: tuple[bytes, int, int, list[_Key]] | None = None
    """The last filter's (serialized filter, sort field, version, matching keys)."""

    def add(self, dispatch: dispatch_pb2.Dispatch) -> None:
        """Store a dispatch (its id must be new) and index it."""
        self.by_id[int(dispatch.metadata.dispatch_id)] = dispatch
        for sort_field, order in self.orders.items():
            insort(order, _sort_key(dispatch, sort_field))
        self.version += 1

    def remove(self, dispatch_id: int) -> dispatch_pb2.Dispatch:
        """Drop a stored dispatch from the map and every order; return it."""
        dispatch = self.by_id.pop(dispatch_id)
        for sort_field, order in self.orders.items():
            key = _sort_key(dispatch, sort_field)
            del order[bisect_left(order, key)]
        self.version += 1
        return dispatch

    def keys(self, flt: dispatch_pb2.DispatchFilter, sort_field: int) -> list[_Key]:
        """Return the ascending keys of the dispatches that pass a filter."""
        order = self.orders[sort_field]
        if flt.ByteSize() == 0:
            return order
        raw = flt.SerializeToString(deterministic=True)
        cached = self.filtered
        if cached is not None and cached[:3] == (raw, sort_field, self.version):
            return cached[3]
        found = [key for key in order if matches(self.by_id[key[1]], flt)]
        self.filtered = (raw, sort_field, self.version, found)
        return found


def _set_end_time(dispatch: dispatch_pb2.Dispatch) -> None:
    """Set or clear `metadata.end_time` from the data."""
    end = compute_end_time(dispatch.data)
    if end is None:
        dispatch.metadata.ClearField("end_time")
    else:
        dispatch.metadata.end_time.CopyFrom(to_timestamp(end))


def _copy(dispatch: dispatch_pb2.Dispatch) -> dispatch_pb2.Dispatch:
    """Return a copy of a protobuf dispatch."""
    copy = dispatch_pb2.Dispatch()
    copy.CopyFrom(dispatch)
    return copy


class DispatchStore:
    """Dispatches as protobufs: microgrid id -> dispatch id -> `Dispatch`.

    Accessors return copies, so callers cannot change stored state; `page`
    returns stored messages for the response to copy.
    """

    def __init__(self) -> None:
        self._grids: dict[int, _Grid] = {}
        self._last_id = 0
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        """Register a listener called after every create, update and delete."""
        self._listeners.append(listener)

    def _notify(
        self, microgrid_id: int, event: Event, dispatch: dispatch_pb2.Dispatch
    ) -> None:
        """Tell every listener about a change."""
        for listener in self._listeners:
            listener(microgrid_id, event, dispatch)

    def _grid(self, microgrid_id: int) -> _Grid:
        """Return the grid of a microgrid, creating it if needed."""
        return self._grids.setdefault(microgrid_id, _Grid())

    def _find(self, microgrid_id: int, dispatch_id: int) -> dispatch_pb2.Dispatch:
        """Return the stored dispatch (not a copy); DispatchNotFoundError if none."""
        grid = self._grids.get(microgrid_id)
        found = None if grid is None else grid.by_id.get(dispatch_id)
        if found is None:
            raise DispatchNotFoundError(
                f"dispatch {dispatch_id} not found in microgrid {microgrid_id}"
            )
        return found

    def get(self, microgrid_id: int, dispatch_id: int) -> dispatch_pb2.Dispatch:
        """Return a copy of one dispatch; DispatchNotFoundError if unknown."""
        return _copy(self._find(microgrid_id, dispatch_id))

    def all(self, microgrid_id: int) -> list[dispatch_pb2.Dispatch]:
        """Return copies of all dispatches of a microgrid, by ascending id."""
        grid = self._grids.get(microgrid_id)
        if grid is None:
            return []
        return [_copy(grid.by_id[dispatch_id]) for dispatch_id in sorted(grid.by_id)]

    def count(self, microgrid_id: int) -> int:
        """Return the number of dispatches of a microgrid."""
        grid = self._grids.get(microgrid_id)
        return 0 if grid is None else len(grid.by_id)

    def create(
        self, microgrid_id: int, data: dispatch_pb2.DispatchData
    ) -> dispatch_pb2.Dispatch:
        """Store new (validated) data with a fresh id and the current time.

        Returns:
            A copy of the stored dispatch.

        """
        self._last_id += 1
        now = to_timestamp(now_utc())
        dispatch = dispatch_pb2.Dispatch(data=data)
        dispatch.metadata.dispatch_id = self._last_id
        dispatch.metadata.create_time.CopyFrom(now)
        dispatch.metadata.update_time.CopyFrom(now)
        _set_end_time(dispatch)
        self._grid(microgrid_id).add(dispatch)
        self._notify(microgrid_id, Event.CREATED, dispatch)
        return _copy(dispatch)

    def replace_data(
        self, microgrid_id: int, dispatch_id: int, data: dispatch_pb2.DispatchData
    ) -> dispatch_pb2.Dispatch:
        """Replace a dispatch's data (validated) and bump its update time.

        Returns:
            A copy of the updated dispatch.

        """
        self._find(microgrid_id, dispatch_id)
        grid = self._grids[microgrid_id]
        dispatch = grid.remove(dispatch_id)
        dispatch.data.CopyFrom(data)
        dispatch.metadata.update_time.CopyFrom(to_timestamp(now_utc()))
        _set_end_time(dispatch)
        grid.add(dispatch)
        self._notify(microgrid_id, Event.UPDATED, dispatch)
        return _copy(dispatch)

    def delete(self, microgrid_id: int, dispatch_id: int) -> dispatch_pb2.Dispatch:
        """Remove a dispatch and return its last state."""
        self._find(microgrid_id, dispatch_id)
        dispatch = self._grids[microgrid_id].remove(dispatch_id)
        self._notify(microgrid_id, Event.DELETED, dispatch)
        return dispatch

    def insert_raw(
        self, microgrid_id: int, dispatch: dispatch_pb2.Dispatch, *, notify: bool
    ) -> int:
        """Store a protobuf as-is (a copy), without validation; return its id.

        A zero `dispatch_id` gets a fresh id, unset create/update times get the
        current time; everything else (including `end_time`) is kept. With
        `notify`, emits CREATED (UPDATED if the id existed).
        """
        stored = _copy(dispatch)
        meta = stored.metadata
        if meta.dispatch_id == 0:
            self._last_id += 1
            meta.dispatch_id = self._last_id
        self._last_id = max(self._last_id, meta.dispatch_id)
        now = to_timestamp(now_utc())
        if not meta.HasField("create_time"):
            meta.create_time.CopyFrom(now)
        if not meta.HasField("update_time"):
            meta.update_time.CopyFrom(now)
        grid = self._grid(microgrid_id)
        existed = meta.dispatch_id in grid.by_id
        if existed:
            grid.remove(meta.dispatch_id)
        grid.add(stored)
        if notify:
            self._notify(
                microgrid_id, Event.UPDATED if existed else Event.CREATED, stored
            )
        return int(meta.dispatch_id)

    def page(
        self,
        microgrid_id: int,
        request: dispatch_pb2.ListMicrogridDispatchesRequest,
        default_page_size: int,
    ) -> Page:
        """Cut out the requested page: filtered, sorted, after the token's cursor.

        Raises:
            InvalidDispatchError: If the page token is not one of ours.

        """
        token = request.pagination_params.page_token
        cursor = _decode(token) if token else _first_cursor(request, default_page_size)
        size = request.pagination_params.page_size or cursor.page_size
        size = max(min(size, MAX_PAGE_SIZE), 1)
        grid = self._grids.get(microgrid_id) or _Grid()
        keys = grid.keys(request.filter, cursor.field)
        if cursor.descending:
            end = len(keys) if cursor.after is None else bisect_left(keys, cursor.after)
            start = max(end - size, 0)
            chosen = keys[start:end][::-1]
            more = start > 0
        else:
            start = 0 if cursor.after is None else bisect_right(keys, cursor.after)
            chosen = keys[start : start + size]
            more = start + size < len(keys)
        next_token = ""
        if more and chosen:
            next_token = _encode(
                _Cursor(size, cursor.field, cursor.descending, chosen[-1])
            )
        return Page([grid.by_id[key[1]] for key in chosen], next_token, len(keys))
