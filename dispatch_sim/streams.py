"""Fan-out of dispatch change events to open StreamMicrogridDispatches calls."""

import asyncio
from dataclasses import dataclass, field

from frequenz.api.dispatch.v1 import dispatch_pb2
from frequenz.client.common.streaming import Event
import grpc


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


class StreamHub:
    """Keeps the open streams and pushes events and sentinels to them."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._opened = asyncio.Event()

    def __len__(self) -> int:
        """Return the number of open streams."""
        return len(self._subscriptions)

    def subscribe(self, microgrid_id: int) -> Subscription:
        """Open a stream for a microgrid.

        Args:
            microgrid_id: The microgrid.

        Returns:
            The subscription; pass it to `unsubscribe` when the RPC ends.

        """
        subscription = Subscription(microgrid_id)
        self._subscriptions.add(subscription)
        self._opened.set()
        self._opened = asyncio.Event()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a stream whose RPC has ended.

        Args:
            subscription: The subscription.

        """
        self._subscriptions.discard(subscription)
        subscription.closed.set()

    def publish(
        self, microgrid_id: int, event: Event, dispatch: dispatch_pb2.Dispatch
    ) -> None:
        """Send an event to every stream of the microgrid.

        Args:
            microgrid_id: The microgrid.
            event: The event kind.
            dispatch: The dispatch state to send.

        """
        message = dispatch_pb2.StreamMicrogridDispatchesResponse(
            dispatch=dispatch, event=event.value
        )
        for subscription in self._subscriptions:
            if subscription.microgrid_id == microgrid_id:
                subscription.queue.put_nowait(message)

    async def wait_open(self, count: int) -> None:
        """Wait until at least `count` streams are open.

        Args:
            count: The number of streams.

        """
        while len(self._subscriptions) < count:
            await self._opened.wait()

    async def finish_all(self, item: EndStream | AbortStream, max_wait: float) -> None:
        """Send a sentinel to every open stream and wait for them to finish.

        Args:
            item: The sentinel.
            max_wait: Seconds to wait at most for the handlers to finish.

        """
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
