"""Sorting and cursor-based pagination for ListMicrogridDispatches."""

import base64
import binascii
from dataclasses import dataclass
import json

from frequenz.api.dispatch.v1 import dispatch_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from .validate import InvalidDispatchError

MAX_PAGE_SIZE = 1000
"""Larger requested page sizes are silently capped to this."""

_Key = tuple[int, int]


@dataclass(frozen=True)
class Page:
    """One page of a list response."""

    dispatches: list[dispatch_pb2.Dispatch]
    """The dispatches on this page."""

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


def nanos(stamp: Timestamp) -> int:
    """Convert a timestamp to integer nanoseconds since the epoch.

    Args:
        stamp: The timestamp.

    Returns:
        The nanoseconds.

    """
    return int(stamp.seconds) * 1_000_000_000 + int(stamp.nanos)


def _sort_key(dispatch: dispatch_pb2.Dispatch, field: int) -> _Key:
    """Compute the sort key of a dispatch: (time of the sort field, id).

    Args:
        dispatch: The dispatch.
        field: A `SortField` value.

    Returns:
        The key.

    """
    if field == dispatch_pb2.SORT_FIELD_START_TIME:
        stamp = dispatch.data.start_time
    elif field == dispatch_pb2.SORT_FIELD_LAST_UPDATE_TIME:
        stamp = dispatch.metadata.update_time
    else:
        stamp = dispatch.metadata.create_time
    return (nanos(stamp), int(dispatch.metadata.dispatch_id))


def _after(key: _Key, cursor: _Key, *, descending: bool) -> bool:
    """Check whether a key comes after the cursor in the page order.

    Args:
        key: The key of a dispatch.
        cursor: The key of the last dispatch on the previous page.
        descending: Whether the order is descending.

    Returns:
        Whether the dispatch belongs to a later page.

    """
    return key < cursor if descending else key > cursor


def _encode(cursor: _Cursor) -> str:
    """Serialise a cursor into an opaque page token.

    Args:
        cursor: The cursor.

    Returns:
        The token.

    """
    raw = json.dumps(
        [cursor.page_size, cursor.field, cursor.descending, cursor.after]
    ).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode(token: str) -> _Cursor:
    """Parse a page token.

    Args:
        token: The token.

    Returns:
        The cursor.

    Raises:
        InvalidDispatchError: If the token was not issued by this server.

    """
    try:
        size, field, descending, after = json.loads(base64.urlsafe_b64decode(token))
        key = (int(after[0]), int(after[1]))
        return _Cursor(int(size), int(field), bool(descending), key)
    except (ValueError, TypeError, IndexError, binascii.Error):
        raise InvalidDispatchError("invalid page_token") from None


def _first_cursor(
    request: dispatch_pb2.ListMicrogridDispatchesRequest, default_page_size: int
) -> _Cursor:
    """Build the cursor of a first-page request.

    Args:
        request: The request.
        default_page_size: Page size when the request gives none.

    Returns:
        The cursor.

    """
    options = request.sort_options
    return _Cursor(
        page_size=request.pagination_params.page_size or default_page_size,
        field=options.sort_field,
        descending=options.sort_order != dispatch_pb2.SORT_ORDER_ASCENDING,
        after=None,
    )


def paginate(
    dispatches: list[dispatch_pb2.Dispatch],
    request: dispatch_pb2.ListMicrogridDispatchesRequest,
    default_page_size: int,
) -> Page:
    """Sort filtered dispatches and cut out the requested page.

    The default order is by create time, newest first (as the API specifies).

    Args:
        dispatches: The dispatches that passed the filter.
        request: The request (sort options and pagination params are used).
        default_page_size: Page size when the request gives none.

    Returns:
        The page.

    """
    token = request.pagination_params.page_token
    cursor = _decode(token) if token else _first_cursor(request, default_page_size)
    page_size = min(
        request.pagination_params.page_size or cursor.page_size, MAX_PAGE_SIZE
    )
    page_size = max(page_size, 1)
    ordered = sorted(
        dispatches,
        key=lambda d: _sort_key(d, cursor.field),
        reverse=cursor.descending,
    )
    after = cursor.after
    if after is not None:
        ordered = [
            d
            for d in ordered
            if _after(_sort_key(d, cursor.field), after, descending=cursor.descending)
        ]
    page = ordered[:page_size]
    next_token = ""
    if len(ordered) > page_size:
        last_key = _sort_key(page[-1], cursor.field)
        next_token = _encode(
            _Cursor(page_size, cursor.field, cursor.descending, last_key)
        )
    return Page(page, next_token, len(dispatches))
