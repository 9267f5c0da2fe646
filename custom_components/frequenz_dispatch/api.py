"""The only module that talks gRPC: list and stream dispatches of one microgrid.

We build on `DispatchApiClient` for the connection (URL parsing, TLS, API key
and signing interceptors) and its types, but drive the two RPCs ourselves:
the client converts a whole page at once (one malformed dispatch would lose the
page) and its stream helper retries on its own without telling us, while we
must re-list after every stream restart.
"""

from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from frequenz.api.dispatch.v1 import dispatch_pb2
from frequenz.client.base.conversion import to_timestamp
from frequenz.client.dispatch import DispatchApiClient
from frequenz.client.dispatch.recurrence import RecurrenceRule
from frequenz.client.dispatch.types import Dispatch, Event
from google.protobuf.struct_pb2 import Struct
import grpc

from .event_data import dispatch_data
from .schedule import InvalidDispatchError, Schedule
from .targets import target_to_protobuf

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


class DispatchInvalidInputError(DispatchApiError):
    """The server (or this module, before sending) refused the input of a write."""


class DispatchNotFoundError(DispatchApiError):
    """The dispatch does not exist (any more)."""


class DispatchWriteDeniedError(DispatchApiError):
    """The server refused a write with this key (e.g. a read-only key).

    Not a reason to re-authenticate: the same key may still read.
    """


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


def _map_error(err: grpc.aio.AioRpcError, *, write: bool = False) -> DispatchApiError:
    """Map a gRPC failure to our exception hierarchy."""
    code = err.code()
    if code in _AUTH_CODES:
        if write:
            return DispatchWriteDeniedError(err.details() or "write refused")
        return DispatchAuthError(err.details() or "authentication failed")
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return DispatchInvalidInputError(err.details() or "invalid input")
    if code is grpc.StatusCode.NOT_FOUND:
        return DispatchNotFoundError(err.details() or "dispatch not found")
    return DispatchConnectionError(f"{code.name}: {err.details()}")


def _payload(payload: Mapping[str, Any]) -> Struct:
    """A JSON-like mapping as a protobuf Struct."""
    struct = Struct()
    try:
        struct.update(payload)
    except (ValueError, TypeError) as err:
        raise DispatchInvalidInputError(f"payload: {err}") from err
    return struct


def _target(target: list[int] | list[str]) -> dispatch_pb2.TargetComponents:
    try:
        return target_to_protobuf(target)
    except ValueError as err:
        raise DispatchInvalidInputError(f"target: {err}") from err


def _timestamp(name: str, value: datetime) -> Any:
    if value.tzinfo is None or value.utcoffset() is None:
        raise DispatchInvalidInputError(f"{name} must carry a time zone")
    return to_timestamp(value)


def _seconds(duration: timedelta) -> int:
    seconds = duration.total_seconds()
    if not 0 <= seconds < 2**32:
        raise DispatchInvalidInputError("duration must be positive")
    return round(seconds)


def _recurrence(rule: RecurrenceRule | None) -> dispatch_pb2.RecurrenceRule:
    if rule is None:
        return dispatch_pb2.RecurrenceRule()
    try:
        return rule.to_protobuf()
    except (ValueError, TypeError) as err:
        raise DispatchInvalidInputError(f"recurrence: {err}") from err


_RECURRENCE_PATHS = (
    "recurrence.freq",
    "recurrence.interval",
    "recurrence.end_criteria",
    "recurrence.byminutes",
    "recurrence.byhours",
    "recurrence.byweekdays",
    "recurrence.bymonthdays",
    "recurrence.bymonths",
)
"""All sub-paths, as the official client sends them: the whole rule is replaced."""


def _update_request(
    microgrid_id: int, dispatch_id: int, changes: Mapping[str, Any]
) -> dispatch_pb2.UpdateMicrogridDispatchRequest:
    """Build the request and field mask of `DispatchApi.update`."""
    request = dispatch_pb2.UpdateMicrogridDispatchRequest(
        microgrid_id=microgrid_id, dispatch_id=dispatch_id
    )
    update = request.update
    paths = request.update_mask.paths
    for key, value in changes.items():
        match key:
            case "type" | "dry_run":
                raise DispatchInvalidInputError(
                    f"the Dispatch API cannot change the {key} of a dispatch"
                )
            case "start_time":
                update.start_time.CopyFrom(_timestamp(key, value))
                paths.append(key)
            case "duration":
                if value is not None:
                    update.duration = _seconds(value)
                paths.append(key)
            case "target":
                update.target.CopyFrom(_target(value))
                paths.append(key)
            case "payload":
                update.payload.CopyFrom(_payload(value))
                paths.append(key)
            case "active":
                update.is_active = bool(value)
                paths.append("is_active")
            case "recurrence":
                # Same fields and numbers, another message type.
                update.recurrence.ParseFromString(
                    _recurrence(value).SerializeToString()
                )
                paths.extend(_RECURRENCE_PATHS)
            case _:
                raise DispatchInvalidInputError(f"unknown field: {key}")
    return request


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

    async def _call(self, call: Awaitable[Any], *, write: bool) -> Any:
        try:
            return await call
        except grpc.aio.AioRpcError as err:
            raise _map_error(err, write=write) from err

    @property
    def _timeout(self) -> float:
        return self._client.call_timeout.total_seconds()

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
        data = dispatch_pb2.DispatchData(
            type=dispatch_type,
            start_time=_timestamp("start_time", start_time),
            duration=None if duration is None else _seconds(duration),
            target=_target(target),
            is_active=active,
            is_dry_run=dry_run,
            payload=_payload(payload),
            recurrence=_recurrence(recurrence),
        )
        request = dispatch_pb2.CreateMicrogridDispatchRequest(
            microgrid_id=self.microgrid_id, dispatch_data=data
        )
        response = await self._call(
            self._stub.CreateMicrogridDispatch(request, timeout=self._timeout),
            write=True,
        )
        return parse_dispatch(response.dispatch)

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
        request = _update_request(self.microgrid_id, dispatch_id, changes)
        response = await self._call(
            self._stub.UpdateMicrogridDispatch(request, timeout=self._timeout),
            write=True,
        )
        return parse_dispatch(response.dispatch)

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
        return parse_dispatch(response.dispatch)

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
