"""The gRPC side: credentials, the six MicrogridDispatchService RPCs, open streams."""

import asyncio
from base64 import urlsafe_b64encode
from collections.abc import AsyncIterator
import contextlib
from dataclasses import dataclass, field
import hmac
import logging
import time
from typing import Any

from frequenz.api.common.v1alpha8.pagination.pagination_info_pb2 import (
    PaginationInfo,
)
from frequenz.api.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from frequenz.client.common.streaming import Event
import grpc

from .convert import now_utc, round_to_second, to_timestamp
from .errors import DispatchNotFoundError, InvalidDispatchError
from .rules import DEFAULT_MAX_PAYLOAD_BYTES, apply_update, validate_data
from .store import DispatchStore

_LOGGER = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass
class ServiceControls:
    """Settings and counters shared by the servicer and its owner."""

    api_key: str
    """Expected value of the `key` metadata."""

    read_only_api_key: str | None = None
    """A key that may read (list, stream, get) but not write: PERMISSION_DENIED."""

    sign_secret: str | None = None
    """When set, request signatures are verified."""

    page_size: int = 20
    """Default page size of ListMicrogridDispatches."""

    delay: float = 0.0
    """Seconds every unary RPC waits before answering."""

    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    """The largest payload a create or update may carry."""

    list_calls: int = 0
    """Number of authenticated ListMicrogridDispatches calls."""

    list_seconds: float = 0.0
    """Time spent building ListMicrogridDispatches responses."""

    stream_calls: int = 0
    """Number of authenticated StreamMicrogridDispatches calls."""

    subscribe_delay: float = 0.0
    """Seconds a stream call waits (authenticated) before it subscribes.

    Its headers are sent only once it has subscribed.
    """

    traffic: "dict[str, Traffic]" = field(default_factory=dict)
    """Calls and message bytes per RPC name (every call, failed ones too)."""

    max_page_bytes: int | None = None
    """When set, a list response larger than this fails with RESOURCE_EXHAUSTED."""

    fault: "Fault | None" = None
    """Failures to inject into the next calls."""


@dataclass
class Traffic:
    """What one RPC method has received and sent."""

    requests: int = 0
    """Calls received (also those that failed)."""

    request_bytes: int = 0
    """Serialized size of the request messages."""

    response_bytes: int = 0
    """Serialized size of the response messages sent (stream messages too).

    Message bytes only: gRPC adds 5 bytes of framing per message, HTTP/2
    its frame and header bytes.
    """

    responses: int = 0
    """Response messages sent (a stream sends one per event)."""

    def sent(self, message: Any) -> None:
        """Count one response message."""
        self.responses += 1
        self.response_bytes += message.ByteSize()


RPCS = {
    "ListMicrogridDispatches": "list",
    "StreamMicrogridDispatches": "stream",
    "GetMicrogridDispatch": "get",
    "CreateMicrogridDispatch": "create",
    "UpdateMicrogridDispatch": "update",
    "DeleteMicrogridDispatch": "delete",
}
"""RPC name -> the short name `DispatchSimulator.fail_next` takes."""

_WRITES = {"create", "update", "delete"}


@dataclass
class Fault:
    """The next `remaining` calls of the `rpcs` fail with `code`."""

    code: grpc.StatusCode
    """The status code the client sees."""

    remaining: int
    """How many calls still fail."""

    rpcs: frozenset[str]
    """Short names of the RPCs that fail ("list", "stream", "get", ...)."""

    details: str | None = None
    """The status message; None says "<CODE> injected by the simulator"."""

    def take(self, rpc: str) -> bool:
        """Count one call of `rpc`; True if it is to fail."""
        if self.remaining <= 0 or rpc not in self.rpcs:
            return False
        self.remaining -= 1
        return True


# ---- credentials ----------------------------------------------------------------


def _metadata(context: Context) -> dict[str, str]:
    """Read the invocation metadata as text (the first of a repeated key wins)."""
    result: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        result.setdefault(key, text)
    return result


def _signature(secret: str, key: str, ts: str, nonce: str, method: str) -> str:
    """Compute the signature the frequenz client's signing interceptor sends."""
    mac = hmac.new(secret.encode(), digestmod="sha256")
    for part in (key, ts, nonce, method):
        mac.update(part.encode())
    return urlsafe_b64encode(mac.digest()).strip(b"=").decode()


def check_call(
    context: Context,
    method: str,
    *,
    api_key: str,
    sign_secret: str | None,
    read_only_api_key: str | None = None,
) -> tuple[str | None, bool]:
    """Check a call's credentials.

    Args:
        context: The call context.
        method: The RPC method name.
        api_key: The key that may read and write (the `key` metadata).
        sign_secret: When set, `ts`, `nonce` and `sig` metadata must carry a
            valid signature; otherwise any signature metadata is ignored.
        read_only_api_key: A key that may only read, or None.

    Returns:
        (None if the call is allowed, else the reason, never containing the
        key; whether the key may write).

    """
    metadata = _metadata(context)
    key = metadata.get("key")
    if key is None:
        return "missing API key", False
    writer = hmac.compare_digest(key.encode(), api_key.encode())
    reader = read_only_api_key is not None and hmac.compare_digest(
        key.encode(), read_only_api_key.encode()
    )
    if not writer and not reader:
        return "invalid API key", False
    if sign_secret is None:
        return None, writer
    ts, nonce, sig = (metadata.get(name) for name in ("ts", "nonce", "sig"))
    if ts is None or nonce is None or sig is None:
        return "missing request signature", writer
    expected = _signature(sign_secret, key, ts, nonce, method)
    if not hmac.compare_digest(expected.encode(), sig.encode()):
        return "invalid request signature", writer
    return None, writer


# ---- open streams ---------------------------------------------------------------


@dataclass(frozen=True)
class EndStream:
    """Sentinel: finish the stream cleanly (status OK)."""


@dataclass(frozen=True)
class AbortStream:
    """Sentinel: finish the stream with an error status."""

    code: grpc.StatusCode
    """The status code the client sees."""

    details: str
    """The status message the client sees."""


StreamItem = dispatch_pb2.StreamMicrogridDispatchesResponse | EndStream | AbortStream
"""What a stream's queue carries."""


@dataclass(eq=False)
class Subscription:
    """One open stream: its microgrid and its queue of items to send."""

    microgrid_id: int
    """The microgrid whose events this stream receives."""

    queue: asyncio.Queue[StreamItem] = field(default_factory=asyncio.Queue)
    """Items to send, in order."""

    closed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the RPC handler has finished."""

    time_remaining: float | None = None
    """Seconds left of the call's deadline when it opened; None: no deadline."""


class StreamHub:
    """Keeps the open streams and pushes events and sentinels to them."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._opened = asyncio.Event()

    def __len__(self) -> int:
        """Return the number of open streams."""
        return len(self._subscriptions)

    def deadlines(self) -> list[float | None]:
        """The `time_remaining` of every open stream."""
        return [sub.time_remaining for sub in self._subscriptions]

    def subscribe(
        self, microgrid_id: int, time_remaining: float | None = None
    ) -> Subscription:
        """Open a stream for a microgrid; `unsubscribe` it when the RPC ends."""
        subscription = Subscription(microgrid_id, time_remaining=time_remaining)
        self._subscriptions.add(subscription)
        self._opened.set()
        self._opened = asyncio.Event()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a stream whose RPC has ended."""
        self._subscriptions.discard(subscription)
        subscription.closed.set()

    def publish(
        self, microgrid_id: int, event: Event, dispatch: dispatch_pb2.Dispatch
    ) -> None:
        """Send an event (with a copy of the dispatch) to the microgrid's streams."""
        message: dispatch_pb2.StreamMicrogridDispatchesResponse | None = None
        for subscription in self._subscriptions:
            if subscription.microgrid_id == microgrid_id:
                if message is None:
                    message = dispatch_pb2.StreamMicrogridDispatchesResponse(
                        dispatch=dispatch, event=event.value
                    )
                subscription.queue.put_nowait(message)

    async def wait_open(self, count: int) -> None:
        """Wait until at least `count` streams are open."""
        while len(self._subscriptions) < count:
            await self._opened.wait()

    async def finish_all(self, item: EndStream | AbortStream, max_wait: float) -> None:
        """Send a sentinel to every open stream and wait (at most `max_wait` s)."""
        subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.queue.put_nowait(item)
        if not subscriptions:
            return
        waits = [asyncio.ensure_future(sub.closed.wait()) for sub in subscriptions]
        _, pending = await asyncio.wait(waits, timeout=max_wait)
        for waiter in pending:
            waiter.cancel()
        if pending:
            await asyncio.wait(pending)


# ---- the servicer ---------------------------------------------------------------


@contextlib.asynccontextmanager
async def _status_errors(context: Context, method: str) -> AsyncIterator[None]:
    """Turn the simulator's errors into their gRPC status codes."""
    try:
        yield
    except InvalidDispatchError as err:
        _LOGGER.info("%s -> INVALID_ARGUMENT: %s", method, err)
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
    except DispatchNotFoundError as err:
        _LOGGER.info("%s -> NOT_FOUND: %s", method, err)
        await context.abort(grpc.StatusCode.NOT_FOUND, str(err))


class DispatchServicer(dispatch_pb2_grpc.MicrogridDispatchServiceServicer):
    """In-memory implementation of the Dispatch API."""

    def __init__(
        self, store: DispatchStore, hub: StreamHub, controls: ServiceControls
    ) -> None:
        """Serve `store`, streaming through `hub`, as `controls` say."""
        self._store = store
        self._hub = hub
        self._controls = controls

    def _traffic(self, method: str) -> Traffic:
        """The counters of one RPC method."""
        return self._controls.traffic.setdefault(method, Traffic())

    def _sent[M](self, method: str, response: M) -> M:
        """Count a unary response and return it."""
        self._traffic(method).sent(response)
        return response

    async def _admit(
        self, context: Context, method: str, detail: str, request: Any
    ) -> None:
        """Count, log (`detail` holds no secrets), inject faults, check the key."""
        _LOGGER.info("%s(%s) from %s", method, detail, context.peer())
        traffic = self._traffic(method)
        traffic.requests += 1
        traffic.request_bytes += request.ByteSize()
        controls = self._controls
        rpc = RPCS[method]
        if controls.fault is not None and controls.fault.take(rpc):
            code = controls.fault.code
            details = controls.fault.details or f"{code.name} injected by the simulator"
            _LOGGER.info("%s -> %s (injected): %s", method, code.name, details)
            await context.abort(code, details)
        reason, may_write = check_call(
            context,
            method,
            api_key=controls.api_key,
            sign_secret=controls.sign_secret,
            read_only_api_key=controls.read_only_api_key,
        )
        if reason is not None:
            _LOGGER.info("%s -> UNAUTHENTICATED: %s", method, reason)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)
        if rpc in _WRITES and not may_write:
            _LOGGER.info("%s -> PERMISSION_DENIED: read-only API key", method)
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, "this API key may only read"
            )

    async def _admit_unary(
        self, context: Context, method: str, detail: str, request: Any
    ) -> None:
        """Admit a unary call and apply the configured delay."""
        await self._admit(context, method, detail, request)
        if self._controls.delay > 0:
            await asyncio.sleep(self._controls.delay)

    async def ListMicrogridDispatches(
        self, request: dispatch_pb2.ListMicrogridDispatchesRequest, context: Context
    ) -> dispatch_pb2.ListMicrogridDispatchesResponse:
        """Return one page of dispatches, filtered and sorted."""
        await self._admit(
            context, "ListMicrogridDispatches", f"{request.microgrid_id}", request
        )
        self._controls.list_calls += 1
        if self._controls.delay > 0:
            await asyncio.sleep(self._controls.delay)
        started = time.perf_counter()
        async with _status_errors(context, "ListMicrogridDispatches"):
            page = self._store.page(
                request.microgrid_id, request, self._controls.page_size
            )
        response = dispatch_pb2.ListMicrogridDispatchesResponse(
            dispatches=page.dispatches,
            pagination_info=PaginationInfo(
                total_items=page.total_items,
                next_page_token=page.next_page_token or None,
            ),
        )
        self._controls.list_seconds += time.perf_counter() - started
        limit = self._controls.max_page_bytes
        if limit is not None and (size := response.ByteSize()) > limit:
            # What a client with this receive limit reports.
            details = f"Received message larger than max ({size} vs. {limit})"
            _LOGGER.info("ListMicrogridDispatches -> RESOURCE_EXHAUSTED: %s", details)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, details)
        self._traffic("ListMicrogridDispatches").sent(response)
        return response

    async def StreamMicrogridDispatches(
        self, request: dispatch_pb2.StreamMicrogridDispatchesRequest, context: Context
    ) -> AsyncIterator[dispatch_pb2.StreamMicrogridDispatchesResponse]:
        """Stream change events of one microgrid until ended or aborted."""
        method = "StreamMicrogridDispatches"
        await self._admit(context, method, f"{request.microgrid_id}", request)
        self._controls.stream_calls += 1
        if self._controls.subscribe_delay > 0:
            await asyncio.sleep(self._controls.subscribe_delay)
        traffic = self._traffic(method)
        subscription = self._hub.subscribe(
            request.microgrid_id, context.time_remaining()
        )
        try:
            # Headers only now: a client that waits for them before listing
            # misses no change.
            await context.send_initial_metadata(())
            while True:
                item = await subscription.queue.get()
                if isinstance(item, EndStream):
                    _LOGGER.info("%s(%s) ended", method, request.microgrid_id)
                    return
                if isinstance(item, AbortStream):
                    _LOGGER.info("%s(%s) -> %s", method, request.microgrid_id, item)
                    await context.abort(item.code, item.details)
                traffic.sent(item)
                yield item
        finally:
            self._hub.unsubscribe(subscription)

    async def CreateMicrogridDispatch(
        self, request: dispatch_pb2.CreateMicrogridDispatchRequest, context: Context
    ) -> dispatch_pb2.CreateMicrogridDispatchResponse:
        """Create a dispatch (start times rounded to seconds, as the service does)."""
        detail = f"{request.microgrid_id}, type={request.dispatch_data.type!r}"
        await self._admit_unary(context, "CreateMicrogridDispatch", detail, request)
        async with _status_errors(context, "CreateMicrogridDispatch"):
            data = dispatch_pb2.DispatchData()
            data.CopyFrom(request.dispatch_data)
            now = now_utc()
            if request.start_immediately:
                # Whole seconds, but never in the future: it starts right away.
                data.start_time.CopyFrom(to_timestamp(now.replace(microsecond=0)))
            elif data.HasField("start_time"):
                round_to_second(data.start_time)
            validate_data(
                data, now=now, max_payload_bytes=self._controls.max_payload_bytes
            )
            dispatch = self._store.create(request.microgrid_id, data)
        _LOGGER.info("CreateMicrogridDispatch -> id %s", dispatch.metadata.dispatch_id)
        return self._sent(
            "CreateMicrogridDispatch",
            dispatch_pb2.CreateMicrogridDispatchResponse(dispatch=dispatch),
        )

    async def UpdateMicrogridDispatch(
        self, request: dispatch_pb2.UpdateMicrogridDispatchRequest, context: Context
    ) -> dispatch_pb2.UpdateMicrogridDispatchResponse:
        """Update the fields of a dispatch that the field mask names."""
        paths = ",".join(request.update_mask.paths)
        detail = f"{request.microgrid_id}, {request.dispatch_id}, [{paths}]"
        await self._admit_unary(context, "UpdateMicrogridDispatch", detail, request)
        async with _status_errors(context, "UpdateMicrogridDispatch"):
            current = self._store.get(request.microgrid_id, request.dispatch_id)
            data = apply_update(current.data, request)
            start_changed = "start_time" in request.update_mask.paths
            if start_changed:
                round_to_second(data.start_time)
            validate_data(
                data,
                now=now_utc() if start_changed else None,
                max_payload_bytes=self._controls.max_payload_bytes,
            )
            dispatch = self._store.replace_data(
                request.microgrid_id, request.dispatch_id, data
            )
        return self._sent(
            "UpdateMicrogridDispatch",
            dispatch_pb2.UpdateMicrogridDispatchResponse(dispatch=dispatch),
        )

    async def GetMicrogridDispatch(
        self, request: dispatch_pb2.GetMicrogridDispatchRequest, context: Context
    ) -> dispatch_pb2.GetMicrogridDispatchResponse:
        """Return one dispatch."""
        detail = f"{request.microgrid_id}, {request.dispatch_id}"
        await self._admit_unary(context, "GetMicrogridDispatch", detail, request)
        async with _status_errors(context, "GetMicrogridDispatch"):
            dispatch = self._store.get(request.microgrid_id, request.dispatch_id)
        return self._sent(
            "GetMicrogridDispatch",
            dispatch_pb2.GetMicrogridDispatchResponse(
                microgrid_id=request.microgrid_id, dispatch=dispatch
            ),
        )

    async def DeleteMicrogridDispatch(
        self, request: dispatch_pb2.DeleteMicrogridDispatchRequest, context: Context
    ) -> dispatch_pb2.DeleteMicrogridDispatchResponse:
        """Delete one dispatch."""
        detail = f"{request.microgrid_id}, {request.dispatch_id}"
        await self._admit_unary(context, "DeleteMicrogridDispatch", detail, request)
        async with _status_errors(context, "DeleteMicrogridDispatch"):
            self._store.delete(request.microgrid_id, request.dispatch_id)
        return self._sent(
            "DeleteMicrogridDispatch",
            dispatch_pb2.DeleteMicrogridDispatchResponse(
                microgrid_id=request.microgrid_id, dispatch_id=request.dispatch_id
            ),
        )
