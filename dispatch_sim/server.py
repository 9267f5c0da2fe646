"""`DispatchSimulator`: a real gRPC Dispatch API server with a Python control API."""

import asyncio
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
import logging
from typing import Any

from frequenz.api.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from frequenz.client.dispatch.recurrence import RecurrenceRule
from frequenz.client.dispatch.types import Dispatch
import grpc

from .convert import TargetItem, build_data, set_field
from .rules import validate_data
from .service import (
    RPCS,
    AbortStream,
    DispatchServicer,
    EndStream,
    Fault,
    ServiceControls,
    StreamHub,
    Traffic,
)
from .store import DispatchStore

_LOGGER = logging.getLogger(__name__)

STOP_GRACE = 0.2
"""Seconds in-flight calls get to finish when the server stops."""

_STREAM_FINISH_TIMEOUT = 1.0

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""The server's own send and receive limit (grpc's receive default is 4 MiB).

Clients keep their own receive limit (4 MiB by default): a larger page or
stream message fails there, not here.
"""

MIN_PING_INTERVAL = timedelta(milliseconds=500)
"""The ping policy: the shortest interval between a client's keepalive pings.

The client pings every 60 s by default (`keep_alive_interval_s` in its URL);
grpc's server default (one ping per 5 minutes) answers them with GOAWAY "too
many pings" after about 3 minutes, which drops every idle stream. Pings are
accepted also when no call is open; a client pinging more often than this
still gets GOAWAY, as from a real server.
"""


def ping_policy_options(min_interval: timedelta) -> list[tuple[str, int]]:
    """Return the grpc server options that accept pings `min_interval` apart.

    The interval's option is GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS
    in grpc's C headers; its string lacks the "recv".
    """
    return [
        ("grpc.keepalive_permit_without_calls", 1),
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            int(min_interval.total_seconds() * 1000),
        ),
    ]


class DispatchSimulator:  # pylint: disable=too-many-instance-attributes
    """An in-memory Frequenz Dispatch API server for tests and demos.

    The server speaks the real gRPC protocol, so the real client can talk to
    it. Data lives in memory, per microgrid, and survives `restart()`. The
    control API (`create`, `update`, `delete`, `insert_raw`) changes the data
    directly (also while the server is stopped) and emits the same stream
    events as the RPCs. Everything must run in the event loop's thread.
    """

    def __init__(
        self,
        *,
        api_key: str,
        host: str = "127.0.0.1",
        port: int = 0,
        page_size: int = 20,
        sign_secret: str | None = None,
        min_ping_interval: timedelta = MIN_PING_INTERVAL,
        read_only_api_key: str | None = None,
    ) -> None:
        """Create a (not yet started) simulator.

        Args:
            api_key: The API key clients must send (metadata `key`).
            host: The address to bind.
            port: The port to bind; 0 picks a free one on the first start.
            page_size: Default page size of ListMicrogridDispatches.
            sign_secret: When set, request signatures are verified too.
            min_ping_interval: The ping policy, see `MIN_PING_INTERVAL`.
            read_only_api_key: A key that may list, stream and get, but whose
                creates, updates and deletes fail with PERMISSION_DENIED.

        """
        self._host = host
        self._port = port
        self._controls = ServiceControls(
            api_key=api_key,
            sign_secret=sign_secret,
            page_size=page_size,
            read_only_api_key=read_only_api_key,
        )
        self._store = DispatchStore()
        self._hub = StreamHub()
        self._store.add_listener(self._hub.publish)
        self._server: grpc.aio.Server | None = None
        self._min_ping_interval = min_ping_interval

    # ---- lifecycle -------------------------------------------------------

    @property
    def host(self) -> str:
        """The bound (or to be bound) address."""
        return self._host

    @property
    def port(self) -> int:
        """The port; the actual one once started with port 0."""
        return self._port

    @property
    def url(self) -> str:
        """The URL to give `DispatchApiClient(server_url=...)`."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"grpc://{host}:{self._port}?ssl=false"

    @property
    def is_running(self) -> bool:
        """Whether the server is serving."""
        return self._server is not None

    async def __aenter__(self) -> "DispatchSimulator":
        """Start the server; `async with` stops it at the end."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop the server."""
        await self.stop()

    async def start(self) -> None:
        """Bind and start serving (no-op if running).

        Raises:
            OSError: If the address cannot be bound.

        """
        if self._server is not None:
            return
        options = [
            ("grpc.so_reuseport", 0),
            *ping_policy_options(self._min_ping_interval),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        server = grpc.aio.server(options=options)
        dispatch_pb2_grpc.add_MicrogridDispatchServiceServicer_to_server(
            DispatchServicer(self._store, self._hub, self._controls), server
        )
        address = f"{self._host}:{self._port}"
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as err:
            raise OSError(f"cannot bind {address}: {err}") from err
        if port == 0:
            raise OSError(f"cannot bind {address}")
        await server.start()
        self._port = port
        self._server = server
        _LOGGER.info("Dispatch simulator listening on %s", self.url)

    async def stop(self) -> None:
        """Stop serving (no-op if stopped); open streams fail with UNAVAILABLE."""
        server, self._server = self._server, None
        if server is None:
            return
        await self._hub.finish_all(
            AbortStream(grpc.StatusCode.UNAVAILABLE, "server shutting down"),
            _STREAM_FINISH_TIMEOUT,
        )
        await server.stop(STOP_GRACE)
        _LOGGER.info("Dispatch simulator on port %s stopped", self._port)

    async def restart(self) -> None:
        """Stop, then start again on the same port, keeping the data."""
        await self.stop()
        await self.start()

    # ---- fault controls and counters ---------------------------------------

    async def end_streams(self) -> None:
        """Finish every open stream cleanly (status OK)."""
        await self._hub.finish_all(EndStream(), _STREAM_FINISH_TIMEOUT)

    async def break_streams(
        self, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    ) -> None:
        """Abort every open stream with an error status.

        Args:
            code: The status code the clients see.

        """
        await self._hub.finish_all(
            AbortStream(code, "stream broken by simulator"), _STREAM_FINISH_TIMEOUT
        )

    @property
    def open_streams(self) -> int:
        """The number of open StreamMicrogridDispatches calls."""
        return len(self._hub)

    async def wait_for_streams(self, count: int = 1, max_wait: float = 5.0) -> None:
        """Wait until at least `count` streams are open.

        Client streams open in the background, so tests wait for this before
        changing data they expect to see as stream events.

        Args:
            count: The number of open streams to wait for.
            max_wait: Seconds to wait at most.

        Raises:
            TimeoutError: If fewer streams are open after `max_wait` seconds.

        """
        async with asyncio.timeout(max_wait):
            await self._hub.wait_open(count)

    @property
    def api_key(self) -> str:
        """The key clients must send; assign to rotate it (a revoked key)."""
        return self._controls.api_key

    @api_key.setter
    def api_key(self, value: str) -> None:
        self._controls.api_key = value

    @property
    def read_only_api_key(self) -> str | None:
        """A key that may only read (writes: PERMISSION_DENIED); assignable."""
        return self._controls.read_only_api_key

    @read_only_api_key.setter
    def read_only_api_key(self, value: str | None) -> None:
        self._controls.read_only_api_key = value

    @property
    def max_payload_bytes(self) -> int:
        """The largest payload a create or update accepts (default 50 KiB)."""
        return self._controls.max_payload_bytes

    @max_payload_bytes.setter
    def max_payload_bytes(self, value: int) -> None:
        self._controls.max_payload_bytes = value

    @property
    def max_page_bytes(self) -> int | None:
        """Fail list responses larger than this with RESOURCE_EXHAUSTED.

        None (the default) sends pages of any size. The call still counts in
        `list_calls`; the client sees what its own receive limit would raise.
        """
        return self._controls.max_page_bytes

    @max_page_bytes.setter
    def max_page_bytes(self, value: int | None) -> None:
        self._controls.max_page_bytes = value

    def fail_next(
        self,
        code: grpc.StatusCode,
        times: int = 1,
        *,
        rpcs: Iterable[str] = ("list", "stream"),
        details: str | None = None,
    ) -> None:
        """Make the next `times` calls of `rpcs` fail with `code`.

        The calls fail before their key is checked and are not counted in
        `list_calls` / `stream_calls`. A new call replaces an unfinished one.

        Args:
            code: The status code, e.g. UNAUTHENTICATED, PERMISSION_DENIED or
                UNAVAILABLE.
            times: How many calls fail (shared by the RPCs).
            rpcs: Which RPCs: "list", "stream", "get", "create", "update",
                "delete".
            details: The status message (default: "<CODE> injected by the
                simulator").

        Raises:
            ValueError: If an RPC name is unknown.

        """
        chosen = frozenset(rpcs)
        unknown = chosen - set(RPCS.values())
        if unknown:
            raise ValueError(f"unknown RPC names: {sorted(unknown)}")
        self._controls.fault = Fault(code, times, chosen, details)

    def exceed_quota(self, times: int) -> None:
        """Answer the next `times` listing calls with a quota error.

        RESOURCE_EXHAUSTED "quota exceeded", as a rate-limiting server or
        proxy does; it counts ListMicrogridDispatches and GetMicrogridDispatch
        calls (what a listing sends). A new fault replaces an unfinished one.

        Args:
            times: How many calls fail.

        """
        self.fail_next(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            times,
            rpcs=("list", "get"),
            details="quota exceeded",
        )

    @property
    def pending_failures(self) -> int:
        """How many calls `fail_next` still fails."""
        fault = self._controls.fault
        return 0 if fault is None else fault.remaining

    @property
    def delay(self) -> float:
        """Seconds every unary RPC waits before answering (default 0)."""
        return self._controls.delay

    @delay.setter
    def delay(self, value: float) -> None:
        self._controls.delay = value

    @property
    def subscribe_delay(self) -> float:
        """Seconds a stream call waits before it subscribes (default 0).

        The stream's headers are sent once it has subscribed: a client that
        lists before they arrive can miss a change made in between.
        """
        return self._controls.subscribe_delay

    @subscribe_delay.setter
    def subscribe_delay(self, value: float) -> None:
        self._controls.subscribe_delay = value

    @property
    def open_stream_deadlines(self) -> list[float | None]:
        """Seconds each open stream had left of its deadline when it opened.

        None for a stream without a deadline (one that stays open).
        """
        return self._hub.deadlines()

    def traffic(self) -> dict[str, Traffic]:
        """Requests and message bytes per RPC method since start or reset.

        Keys are RPC names ("ListMicrogridDispatches", ...); every call
        counts, failed and injected ones too.
        """
        return {
            method: Traffic(**vars(counts))
            for method, counts in self._controls.traffic.items()
        }

    def reset_traffic(self) -> None:
        """Start the `traffic` counters over."""
        self._controls.traffic.clear()

    @property
    def list_calls(self) -> int:
        """Number of authenticated ListMicrogridDispatches calls (assignable)."""
        return self._controls.list_calls

    @list_calls.setter
    def list_calls(self, value: int) -> None:
        self._controls.list_calls = value

    @property
    def list_seconds(self) -> float:
        """Seconds spent building list responses, delay excluded (assignable)."""
        return self._controls.list_seconds

    @list_seconds.setter
    def list_seconds(self, value: float) -> None:
        self._controls.list_seconds = value

    @property
    def stream_calls(self) -> int:
        """Number of authenticated stream opens (assignable)."""
        return self._controls.stream_calls

    @stream_calls.setter
    def stream_calls(self, value: int) -> None:
        self._controls.stream_calls = value

    # ---- control API -------------------------------------------------------

    def create(
        self,
        microgrid_id: int,
        *,
        type: str,  # pylint: disable=redefined-builtin
        start_time: datetime,
        duration: timedelta | None,
        target: Iterable[TargetItem],
        active: bool = True,
        dry_run: bool = False,
        payload: Mapping[str, Any] | None = None,
        recurrence: RecurrenceRule | None = None,
    ) -> int:
        """Create a dispatch (start times in the past are allowed).

        Args:
            microgrid_id: The microgrid.
            type: The dispatch type.
            start_time: The aware start time.
            duration: The duration, or None for open-ended.
            target: Component ids, or category names such as "BATTERY" or
                "INVERTER:PV".
            active: Whether the dispatch is active.
            dry_run: Whether it is a dry run.
            payload: JSON-like payload.
            recurrence: The recurrence rule, or None.

        Returns:
            The new dispatch id.

        """
        data = build_data(
            type=type,
            start_time=start_time,
            duration=duration,
            target=target,
            active=active,
            dry_run=dry_run,
            payload=payload,
            recurrence=recurrence,
        )
        validate_data(data, max_payload_bytes=self._controls.max_payload_bytes)
        return int(self._store.create(microgrid_id, data).metadata.dispatch_id)

    def create_many(
        self, microgrid_id: int, dispatches: Iterable[Mapping[str, Any]]
    ) -> list[int]:
        """Create many dispatches quickly (e.g. 10 000 for a benchmark).

        Args:
            microgrid_id: The microgrid.
            dispatches: One mapping per dispatch, with the keyword arguments of
                `create` (`type`, `start_time`, `duration`, `target`, ...).

        Returns:
            The new dispatch ids, in order.

        Raises:
            InvalidDispatchError: If an item is invalid; the ones before it
                have been created.

        """
        return [self.create(microgrid_id, **fields) for fields in dispatches]

    def update(self, microgrid_id: int, dispatch_id: int, **fields: Any) -> None:
        """Change fields of a dispatch and bump its update time.

        Args:
            microgrid_id: The microgrid.
            dispatch_id: The dispatch id.
            **fields: Same names and types as `create` (including `type` and
                `dry_run`, which the RPC cannot change).

        """
        data = self._store.get(microgrid_id, dispatch_id).data
        for name, value in fields.items():
            set_field(data, name, value)
        validate_data(data, max_payload_bytes=self._controls.max_payload_bytes)
        self._store.replace_data(microgrid_id, dispatch_id, data)

    def delete(self, microgrid_id: int, dispatch_id: int) -> None:
        """Delete a dispatch.

        Args:
            microgrid_id: The microgrid.
            dispatch_id: The dispatch id.

        """
        self._store.delete(microgrid_id, dispatch_id)

    def insert_raw(
        self,
        microgrid_id: int,
        dispatch: dispatch_pb2.Dispatch,
        *,
        notify: bool = True,
    ) -> int:
        """Store a protobuf dispatch as-is, without validation.

        Args:
            microgrid_id: The microgrid.
            dispatch: The dispatch (may be malformed); a zero id and unset
                create/update times are filled in.
            notify: Whether to emit CREATED (UPDATED if the id existed).

        Returns:
            The dispatch id.

        """
        return self._store.insert_raw(microgrid_id, dispatch, notify=notify)

    def dispatches(self, microgrid_id: int) -> list[Dispatch]:
        """Return the dispatches of a microgrid as client objects, by id.

        Malformed dispatches the client cannot convert are left out; see
        `raw_dispatches`.

        Args:
            microgrid_id: The microgrid.

        Returns:
            The dispatches.

        """
        result = []
        for raw in self._store.all(microgrid_id):
            try:
                result.append(Dispatch.from_protobuf(raw))
            except ValueError:
                continue
        return result

    def raw_dispatches(self, microgrid_id: int) -> list[dispatch_pb2.Dispatch]:
        """Return copies of the stored protobufs of a microgrid, by id.

        Args:
            microgrid_id: The microgrid.

        Returns:
            The dispatches.

        """
        return self._store.all(microgrid_id)

    def get(self, microgrid_id: int, dispatch_id: int) -> Dispatch:
        """Return one dispatch as a client object.

        Args:
            microgrid_id: The microgrid.
            dispatch_id: The dispatch id.

        Returns:
            The dispatch.

        """
        return Dispatch.from_protobuf(self._store.get(microgrid_id, dispatch_id))
