"""The only module that talks gRPC: list and stream dispatches of one microgrid.

We build on `DispatchApiClient` for the connection (URL parsing, TLS, API key
and signing interceptors) and its types, but drive the two RPCs ourselves:
the client converts a whole page at once (one malformed dispatch would lose the
page) and its stream helper retries on its own without telling us, while we
must re-list after every stream restart.
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

from frequenz.api.dispatch.v1 import dispatch_pb2
from frequenz.client.dispatch import DispatchApiClient
from frequenz.client.dispatch.types import Dispatch, Event
import grpc

from .event_data import dispatch_data
from .schedule import InvalidDispatchError, Schedule

_AUTH_CODES = frozenset(
    {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
)
_CLEAN_END_CODES = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED})
LIST_PAGE_SIZE = 100


class DispatchApiError(Exception):
    """Base class of the errors this module raises."""


class DispatchAuthError(DispatchApiError):
    """The server rejected the API key."""


class DispatchConnectionError(DispatchApiError):
    """The server could not be reached or failed to answer."""


class DispatchInvalidUrlError(DispatchApiError):
    """The server URL cannot be used."""


@dataclass(frozen=True, slots=True)
class ValidDispatch:
    """A dispatch we understood, with its compiled schedule."""

    dispatch: Dispatch
    schedule: Schedule

    @property
    def id(self) -> int:
        """The dispatch id."""
        return int(self.dispatch.id)


@dataclass(frozen=True, slots=True)
class MalformedDispatch:
    """A dispatch the server sent that we cannot interpret."""

    id: int
    reason: str
    update_time: datetime | None = None
    """When the server last changed it, if even that could be read."""


type ParsedDispatch = ValidDispatch | MalformedDispatch


@dataclass(frozen=True, slots=True)
class StreamUpdate:
    """One change pushed by the stream."""

    event: Event
    item: ParsedDispatch


def parse_dispatch(message: Any) -> ParsedDispatch:
    """Convert one protobuf dispatch, never raising for bad content."""
    dispatch_id = int(message.metadata.dispatch_id)
    try:
        if not message.data.HasField("start_time"):
            raise InvalidDispatchError("start_time is missing")
        dispatch = Dispatch.from_protobuf(message)
        schedule = Schedule(dispatch)
        dispatch_data(dispatch)  # what cannot be shown in events is malformed too
        return ValidDispatch(dispatch, schedule)
    except Exception as err:  # any bad content skips just this dispatch
        return MalformedDispatch(
            dispatch_id, str(err) or type(err).__name__, _update_time(message)
        )


def _update_time(message: Any) -> datetime | None:
    """The update time of a malformed dispatch, None if unreadable too."""
    try:
        return datetime.fromtimestamp(
            message.metadata.update_time.ToNanoseconds() / 1e9, UTC
        )
    except (ValueError, OverflowError, OSError):
        return None


def _map_error(err: grpc.aio.AioRpcError) -> DispatchApiError:
    """Map a gRPC failure to our exception hierarchy."""
    if err.code() in _AUTH_CODES:
        return DispatchAuthError(err.details() or "authentication failed")
    return DispatchConnectionError(f"{err.code().name}: {err.details()}")


class DispatchApi:
    """Access to the dispatches of one microgrid."""

    def __init__(
        self,
        server_url: str,
        api_key: str,
        microgrid_id: int,
        sign_secret: str | None = None,
    ) -> None:
        """Build the client; raises DispatchInvalidUrlError for a bad URL."""
        try:
            self._client = DispatchApiClient(
                server_url=server_url,
                auth_key=api_key,
                sign_secret=sign_secret or None,
            )
        except ValueError as err:
            raise DispatchInvalidUrlError(str(err)) from err
        self.microgrid_id = microgrid_id

    async def __aenter__(self) -> Self:
        """Use as an async context manager that closes the channel."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the channel."""
        await self.close()

    async def close(self) -> None:
        """Close the gRPC channel."""
        await self._client.disconnect()

    @property
    def _stub(self) -> Any:
        return self._client.stub

    async def list_all(self) -> list[ParsedDispatch]:
        """Fetch every dispatch of the microgrid, following all pages."""
        request = dispatch_pb2.ListMicrogridDispatchesRequest(
            microgrid_id=self.microgrid_id
        )
        # Set through the field: the message's module differs between
        # frequenz-api-common versions.
        request.pagination_params.page_size = LIST_PAGE_SIZE
        timeout = self._client.call_timeout.total_seconds()
        result: list[ParsedDispatch] = []
        try:
            while True:
                response = await self._stub.ListMicrogridDispatches(
                    request, timeout=timeout
                )
                result.extend(parse_dispatch(d) for d in response.dispatches)
                token = response.pagination_info.next_page_token
                if not token:
                    return result
                if token == request.pagination_params.page_token:
                    raise DispatchConnectionError("the server repeated a page token")
                request.pagination_params.Clear()
                request.pagination_params.page_token = token
        except grpc.aio.AioRpcError as err:
            raise _map_error(err) from err

    def open_stream(self) -> "DispatchStream":
        """Open the change stream now; iterate it to receive the changes.

        The call starts before the caller's next listing, so nothing changed
        in between is missed.
        """
        request = dispatch_pb2.StreamMicrogridDispatchesRequest(
            microgrid_id=self.microgrid_id
        )
        return DispatchStream(
            self._stub.StreamMicrogridDispatches(
                request, timeout=self._client.stream_timeout.total_seconds()
            )
        )


class DispatchStream:
    """One open stream call.

    Iteration ends when the server closes the stream cleanly or its deadline
    passes, and raises a DispatchApiError on any other failure. Always
    `cancel()` it when done (also when it was never iterated).
    """

    def __init__(self, call: Any) -> None:
        """Wrap a started grpc.aio stream call."""
        self._call = call

    def cancel(self) -> None:
        """End the call (no-op once it has finished)."""
        self._call.cancel()

    async def __aiter__(self) -> AsyncIterator[StreamUpdate]:
        """Yield the changes as they arrive."""
        try:
            async for response in self._call:
                try:
                    event = Event(response.event)
                except ValueError:
                    continue  # an event kind newer than this client; nothing to do
                yield StreamUpdate(event, parse_dispatch(response.dispatch))
        except grpc.aio.AioRpcError as err:
            if err.code() in _CLEAN_END_CODES:
                return
            raise _map_error(err) from err
