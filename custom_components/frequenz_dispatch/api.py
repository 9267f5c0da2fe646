"""The only module that talks gRPC: list and stream dispatches of one microgrid.

We use the client library's types, but open the channel ourselves
(`channel.py`: checked URL, certificate files read off the loop, a 16 MiB
receive limit) and drive the RPCs ourselves: the client converts a whole page
at once (one malformed dispatch would lose the page), its stream helper
retries on its own without telling us, while we must re-list after every
stream restart, and it maps no errors.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol, Self, overload

from frequenz.api.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from frequenz.client.dispatch.recurrence import RecurrenceRule
from frequenz.client.dispatch.types import Event
import grpc

from .channel import (
    Certificates,
    InvalidServerUrl,
    open_channel,
    parse_server_url,
    read_certificates,
    sendable,
)
from .const import LOGGER
from .parsed import (
    MalformedDispatch,
    ParsedDispatch,
    StreamUpdate,
    Unchanged,
    ValidDispatch,
    message_version,
    parse_dispatch,
    version_of,
)
from .write_requests import create_request, update_request

__all__ = [
    "CALL_TIMEOUT_S",
    "LIST_PAGE_SIZE",
    "STREAM_OPEN_TIMEOUT_S",
    "UNLISTABLE_REASON",
    "Certificates",
    "DispatchApi",
    "DispatchApiError",
    "DispatchAuthError",
    "DispatchConnectionError",
    "DispatchInvalidInputError",
    "DispatchInvalidUrlError",
    "DispatchNotFoundError",
    "DispatchStream",
    "DispatchWriteDeniedError",
    "MalformedDispatch",
    "ParsedDispatch",
    "RunBlocking",
    "StreamUpdate",
    "Unchanged",
    "ValidDispatch",
    "parse_dispatch",
    "version_of",
]

_AUTH_CODES = frozenset(
    {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
)
_CLEAN_END_CODES = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED})
"""A stream ending so is not a failure (a proxy's limit on a call's lifetime)."""
LIST_PAGE_SIZE = 100
CALL_TIMEOUT_S = 60.0
STREAM_OPEN_TIMEOUT_S = 5.0
"""How long `DispatchStream.wait_open` waits for the server's headers.

The stream call itself has no deadline: it stays open (kept alive by the
channel's keepalive pings) until it breaks. A server that sends no headers
before its first message costs this wait, and the listing then runs without
knowing that the stream is subscribed.
"""
_SIZE_ERROR_MARK = "message larger than max"
"""In gRPC's status message of a message over a receive or send limit.

The client's own limit says "Received message larger than max (N vs. M)", a
server's send limit "Sent message larger than max (N vs. M)". Any other
RESOURCE_EXHAUSTED is a quota or rate limit: a smaller page does not help.
"""
_SIZE_WITH_TOKEN = (
    dispatch_pb2.ListMicrogridDispatchesRequest.DESCRIPTOR.fields_by_name[
        "pagination_params"
    ]
    .message_type.fields_by_name["page_size"]
    .containing_oneof
    is None
)
"""Whether a request can give the page size along with a page token.

In frequenz-api-common v1alpha8 the two are a oneof (the token carries the
size); older message modules have both, and a server may then fall back to
its default size when a token comes without one.
"""
UNLISTABLE_REASON = "too large to receive, even alone; it is ignored"


class DispatchApiError(Exception):
    """Base class of the errors this module raises."""


class DispatchAuthError(DispatchApiError):
    """The server rejected the API key."""


class DispatchConnectionError(DispatchApiError):
    """The server could not be reached or failed to answer."""


class DispatchInvalidUrlError(DispatchApiError):
    """The server URL cannot be used."""


class DispatchInvalidInputError(DispatchApiError):
    """The server (or this module, before sending) refused the input of a write."""


class DispatchNotFoundError(DispatchApiError):
    """The dispatch does not exist (any more)."""


class DispatchWriteDeniedError(DispatchApiError):
    """The server refused a write with this key (e.g. a read-only key).

    Not a reason to re-authenticate: the same key may still read.
    """


class RunBlocking(Protocol):
    """Runs a blocking call off the event loop (`hass.async_add_executor_job`)."""

    def __call__[T](self, target: Callable[[], T], /) -> Awaitable[T]:
        """Run `target` in a worker thread; await its result."""
        ...


async def prepared(item: ParsedDispatch, run_blocking: RunBlocking) -> ParsedDispatch:
    """Do a schedule's rare expensive compile step through `run_blocking`.

    Only a `count` rule with by-fields whose last occurrence lies decades from
    its start needs it (`Schedule.needs_preparation`); without it every query
    would walk that far on the event loop.
    """
    if isinstance(item, ValidDispatch) and item.schedule.needs_preparation:
        await run_blocking(item.schedule.prepare)
    return item


def _map_error(err: grpc.aio.AioRpcError, *, write: bool = False) -> DispatchApiError:
    """Map a gRPC failure to our exception hierarchy."""
    return _map_status(err.code(), err.details(), write=write)


def _map_status(
    code: grpc.StatusCode, details: str | None, *, write: bool = False
) -> DispatchApiError:
    """Map a failed call's status to our exception hierarchy."""
    if code in _AUTH_CODES:
        if write:
            return DispatchWriteDeniedError(details or "write refused")
        return DispatchAuthError(details or "authentication failed")
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return DispatchInvalidInputError(details or "invalid input")
    if code is grpc.StatusCode.NOT_FOUND:
        return DispatchNotFoundError(details or "dispatch not found")
    return DispatchConnectionError(f"{code.name}: {details}")


def is_size_error(err: grpc.aio.AioRpcError) -> bool:
    """Whether a failure says a message was over a size limit.

    Only that RESOURCE_EXHAUSTED is helped by a smaller page; the same code
    also says "quota exceeded" or "rate limited".
    """
    return (
        err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        and _SIZE_ERROR_MARK in (err.details() or "").lower()
    )


class _Listing:
    """What one `list_all` has collected so far."""

    def __init__(self, known: Mapping[int, int]) -> None:
        self.known = known
        self.items: dict[int, ParsedDispatch | Unchanged] = {}
        self.total: int | None = None
        """The server's count of all dispatches; None until a page arrives."""

    def add(self, messages: Iterable[Any], *, stop_at_seen: bool) -> bool:
        """Take a page; False if `stop_at_seen` and it reached a listed id."""
        for message in messages:
            dispatch_id = int(message.metadata.dispatch_id)
            if dispatch_id in self.items:
                if stop_at_seen:
                    return False
                continue
            version = message_version(message)
            if version is not None and self.known.get(dispatch_id) == version:
                self.items[dispatch_id] = Unchanged(dispatch_id)
            else:
                self.items[dispatch_id] = parse_dispatch(message)
        return True


class DispatchApi:
    """Access to the dispatches of one microgrid."""

    unlisted: int = 0
    """Dispatches the last `list_all` could neither receive nor name.

    From the server's total count; when not even one page arrived, 1 stands
    for "at least one".
    """

    def __init__(
        self,
        server_url: str,
        api_key: str,
        microgrid_id: int,
        sign_secret: str | None = None,
        *,
        certificates: Certificates | None = None,
        run_blocking: RunBlocking = asyncio.to_thread,
    ) -> None:
        """Open a (lazily connecting) channel.

        Raises DispatchInvalidUrlError for a bad URL and DispatchAuthError for
        a key gRPC cannot send. Certificate files the URL names are read here
        unless `certificates` are given: on the event loop use `async_open`.
        Blocking work on received dispatches runs through `run_blocking`.
        """
        try:
            url = parse_server_url(server_url)
            if certificates is None:
                certificates = read_certificates(url)
        except InvalidServerUrl as err:
            raise DispatchInvalidUrlError(str(err)) from err
        if not api_key or not sendable(api_key):
            raise DispatchAuthError("the API key contains characters gRPC cannot send")
        self._channel = open_channel(url, certificates, api_key, sign_secret or None)
        self._stub: Any = dispatch_pb2_grpc.MicrogridDispatchServiceStub(self._channel)
        self.microgrid_id = microgrid_id
        self._run_blocking = run_blocking

    @classmethod
    async def async_open(
        cls,
        server_url: str,
        api_key: str,
        microgrid_id: int,
        sign_secret: str | None = None,
        *,
        run_blocking: RunBlocking,
    ) -> Self:
        """Like the constructor, reading certificate files through `run_blocking`.

        In Home Assistant pass `hass.async_add_executor_job`; the API then also
        runs its other blocking work through it. (The channel itself must be
        made on the loop: grpc.aio binds it to the running loop.)
        """
        try:
            url = parse_server_url(server_url)
            certificates = (
                await run_blocking(partial(read_certificates, url))
                if url.names_files
                else Certificates()
            )
        except InvalidServerUrl as err:
            raise DispatchInvalidUrlError(str(err)) from err
        return cls(
            server_url,
            api_key,
            microgrid_id,
            sign_secret,
            certificates=certificates,
            run_blocking=run_blocking,
        )

    async def __aenter__(self) -> Self:
        """Use as an async context manager that closes the channel."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the channel."""
        await self.close()

    async def close(self) -> None:
        """Close the gRPC channel."""
        await self._channel.close(None)

    async def check_access(self) -> None:
        """Ask for one page of a single dispatch: proves the URL and the key.

        Raises what `list_all` raises (DispatchAuthError for a rejected key,
        DispatchConnectionError when unreachable or over a quota); a dispatch
        too large to receive still proves both.
        """
        request = self._list_request(reverse=False, page_size=1, token="")
        try:
            await self._stub.ListMicrogridDispatches(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as err:
            if not is_size_error(err):
                raise _map_error(err) from err

    @overload
    async def list_all(self) -> list[ParsedDispatch]: ...

    @overload
    async def list_all(
        self, known: Mapping[int, int]
    ) -> list[ParsedDispatch | Unchanged]: ...

    async def list_all(
        self, known: Mapping[int, int] | None = None
    ) -> list[ParsedDispatch] | list[ParsedDispatch | Unchanged]:
        """Fetch every dispatch of the microgrid, following all pages.

        `known` maps dispatch ids to the version (`ValidDispatch.version`)
        the caller holds; a listed dispatch with that same version comes back
        as `Unchanged(id)`, without being parsed.

        Either every page arrives or this raises: a caller may take a
        returned listing as complete (and delete what it lacks). A page over a
        size limit (RESOURCE_EXHAUSTED "... message larger than max ...") is
        asked again at half the size, down to one dispatch; any other
        RESOURCE_EXHAUSTED (a quota, a rate limit) raises
        DispatchConnectionError at once, to be retried later. A dispatch that cannot be
        received even alone blocks paging in that order: the rest is listed
        from the other end, and the known ids still missing are fetched one by
        one; one that is too large comes back as a `MalformedDispatch` with
        `unlistable=True`. Unknown dispatches that stay out of reach are
        counted in `unlisted`.
        """
        listing = _Listing(known or {})
        blocked = await self._list_pass(listing, reverse=False)
        if blocked:
            await self._list_pass(listing, reverse=True)
            await self._fetch_missing(listing)
        if listing.total is not None:
            self.unlisted = max(0, listing.total - len(listing.items))
        else:  # not even one page arrived: at least the blocking one is missing
            self.unlisted = 0 if listing.items else int(blocked)
        items = list(listing.items.values())
        for item in items:
            if not isinstance(item, Unchanged):
                await prepared(item, self._run_blocking)
        return items

    def _list_request(
        self, *, reverse: bool, page_size: int, token: str
    ) -> dispatch_pb2.ListMicrogridDispatchesRequest:
        request = dispatch_pb2.ListMicrogridDispatchesRequest(
            microgrid_id=self.microgrid_id
        )
        if reverse:
            request.sort_options.sort_field = dispatch_pb2.SORT_FIELD_CREATE_TIME
            request.sort_options.sort_order = dispatch_pb2.SORT_ORDER_ASCENDING
        # Set through the fields: the message's module differs between
        # frequenz-api-common versions.
        params = request.pagination_params
        if token:
            params.page_token = token
        if not token or _SIZE_WITH_TOKEN:
            params.page_size = page_size
        return request

    async def _list_pass(self, listing: "_Listing", *, reverse: bool) -> bool:
        """Page through in one order; True if a too large dispatch stopped it."""
        page_size = LIST_PAGE_SIZE
        token = ""
        seen_tokens: set[str] = set()
        while True:
            request = self._list_request(
                reverse=reverse, page_size=page_size, token=token
            )
            try:
                response = await self._stub.ListMicrogridDispatches(
                    request, timeout=self._timeout
                )
            except grpc.aio.AioRpcError as err:
                if not is_size_error(err):
                    raise _map_error(err) from err  # a quota error too
                if page_size == 1:
                    LOGGER.warning(
                        "A dispatch of microgrid %s is too large to receive",
                        self.microgrid_id,
                    )
                    return True
                page_size = max(1, page_size // 2)
                if token and not _SIZE_WITH_TOKEN:
                    # The token fixes the page size: start over at the new
                    # size, keeping what was received.
                    token = ""
                    seen_tokens.clear()
                continue
            listing.total = max(
                listing.total or 0, response.pagination_info.total_items
            )
            if not listing.add(response.dispatches, stop_at_seen=reverse):
                return False  # the reverse pass met the forward one
            token = response.pagination_info.next_page_token
            if not token:
                return False
            if token in seen_tokens:
                raise DispatchConnectionError("the server's page tokens repeat")
            seen_tokens.add(token)

    async def _fetch_missing(self, listing: "_Listing") -> None:
        """Fetch, one by one, the known dispatches a blocked listing missed."""
        for dispatch_id in listing.known.keys() - listing.items.keys():
            request = dispatch_pb2.GetMicrogridDispatchRequest(
                microgrid_id=self.microgrid_id, dispatch_id=dispatch_id
            )
            try:
                response = await self._stub.GetMicrogridDispatch(
                    request, timeout=self._timeout
                )
            except grpc.aio.AioRpcError as err:
                if err.code() is grpc.StatusCode.NOT_FOUND:
                    continue  # deleted
                if not is_size_error(err):
                    raise _map_error(err) from err
                listing.items[dispatch_id] = MalformedDispatch(
                    dispatch_id, UNLISTABLE_REASON, unlistable=True
                )
                continue
            listing.add([response.dispatch], stop_at_seen=False)

    async def _call(self, call: Awaitable[Any], *, write: bool) -> Any:
        try:
            return await call
        except grpc.aio.AioRpcError as err:
            raise _map_error(err, write=write) from err

    @property
    def _timeout(self) -> float:
        return CALL_TIMEOUT_S

    async def create(
        self,
        *,
        dispatch_type: str,
        start_time: datetime,
        duration: timedelta | None,
        target: list[int] | list[str],
        payload: Mapping[str, Any],
        active: bool = True,
        dry_run: bool = False,
        recurrence: RecurrenceRule | None = None,
    ) -> ParsedDispatch:
        """Create a dispatch; return it as the server stored it.

        Raises DispatchInvalidInputError (also for input refused before
        sending), DispatchWriteDeniedError or DispatchConnectionError.
        """
        try:
            request = create_request(
                self.microgrid_id,
                dispatch_type=dispatch_type,
                start_time=start_time,
                duration=duration,
                target=target,
                payload=payload,
                active=active,
                dry_run=dry_run,
                recurrence=recurrence,
            )
        except ValueError as err:
            raise DispatchInvalidInputError(str(err)) from err
        response = await self._call(
            self._stub.CreateMicrogridDispatch(request, timeout=self._timeout),
            write=True,
        )
        return await prepared(parse_dispatch(response.dispatch), self._run_blocking)

    async def update(
        self, dispatch_id: int, changes: Mapping[str, Any]
    ) -> ParsedDispatch:
        """Change the given fields of a dispatch; return the new version.

        Keys: "start_time", "duration" (None = open-ended), "target",
        "payload" (replaced whole), "active", "recurrence" (a RecurrenceRule,
        None removes it). "type" and "dry_run" cannot be changed through the
        API: DispatchInvalidInputError. Raises as `create`, and
        DispatchNotFoundError.
        """
        try:
            request = update_request(self.microgrid_id, dispatch_id, changes)
        except ValueError as err:
            raise DispatchInvalidInputError(str(err)) from err
        response = await self._call(
            self._stub.UpdateMicrogridDispatch(request, timeout=self._timeout),
            write=True,
        )
        return await prepared(parse_dispatch(response.dispatch), self._run_blocking)

    async def delete(self, dispatch_id: int) -> None:
        """Delete a dispatch (DispatchNotFoundError if it does not exist)."""
        request = dispatch_pb2.DeleteMicrogridDispatchRequest(
            microgrid_id=self.microgrid_id, dispatch_id=dispatch_id
        )
        await self._call(
            self._stub.DeleteMicrogridDispatch(request, timeout=self._timeout),
            write=True,
        )

    async def get(self, dispatch_id: int) -> ParsedDispatch:
        """Fetch one dispatch (DispatchNotFoundError if it does not exist)."""
        request = dispatch_pb2.GetMicrogridDispatchRequest(
            microgrid_id=self.microgrid_id, dispatch_id=dispatch_id
        )
        response = await self._call(
            self._stub.GetMicrogridDispatch(request, timeout=self._timeout),
            write=False,
        )
        return await prepared(parse_dispatch(response.dispatch), self._run_blocking)

    def open_stream(self) -> "DispatchStream":
        """Start the change stream call; iterate it to receive the changes.

        Before listing, `await` its `wait_open()`: the server has then
        subscribed the stream, so nothing changed after the listing's pages
        is missed. The call has no deadline; keepalive pings hold it open.
        """
        request = dispatch_pb2.StreamMicrogridDispatchesRequest(
            microgrid_id=self.microgrid_id
        )
        return DispatchStream(
            self._stub.StreamMicrogridDispatches(request), self._run_blocking
        )


class DispatchStream:
    """One open stream call.

    Iteration ends when the server closes the stream cleanly (or a proxy's
    deadline ends it), and raises a DispatchApiError on any other end.
    Always `cancel()` it when done (also when it was never iterated).
    """

    def __init__(self, call: Any, run_blocking: RunBlocking) -> None:
        """Wrap a started grpc.aio stream call."""
        self._call = call
        self._run_blocking = run_blocking

    def cancel(self) -> None:
        """End the call (no-op once it has finished)."""
        self._call.cancel()

    async def wait_open(self) -> None:
        """Wait for the server's headers: it has accepted the stream.

        A server that sends them only once it has subscribed the stream (as
        the simulator does) thereby guarantees that a listing started now
        misses no change. Raises a DispatchApiError (as a listing would) when
        the call fails first. Headers that do not come within
        STREAM_OPEN_TIMEOUT_S are not waited for any longer.
        """
        # Not `asyncio.timeout`: should its deadline pass together with a
        # cancellation of the caller (e.g. the entry unloading), it would turn
        # that cancellation into a TimeoutError and swallow it.
        headers = asyncio.ensure_future(self._call.initial_metadata())
        try:
            done, _ = await asyncio.wait({headers}, timeout=STREAM_OPEN_TIMEOUT_S)
        finally:
            if not headers.done():
                headers.cancel()
        if not done:
            LOGGER.debug("No stream headers within %s s", STREAM_OPEN_TIMEOUT_S)
            return
        error = headers.exception()
        if isinstance(error, grpc.aio.AioRpcError):
            raise _map_error(error) from error
        if error is not None:
            raise DispatchConnectionError(repr(error)) from error
        if self._call.done():
            code = await self._call.code()
            if code is not grpc.StatusCode.OK:
                raise _map_status(code, await self._call.details())

    async def __aiter__(self) -> AsyncIterator[StreamUpdate]:
        """Yield the changes as they arrive."""
        try:
            async for response in self._call:
                try:
                    event = Event(response.event)
                except ValueError:
                    continue  # an event kind newer than this client; nothing to do
                item = await prepared(
                    parse_dispatch(response.dispatch), self._run_blocking
                )
                yield StreamUpdate(event, item)
        except grpc.aio.AioRpcError as err:
            if err.code() in _CLEAN_END_CODES:
                return
            raise _map_error(err) from err
