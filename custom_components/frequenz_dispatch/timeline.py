"""One HA timer per config entry: a heap of (instant, dispatch id)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
import heapq

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.event import async_track_point_in_utc_time
from homeassistant.util import dt as dt_util


class KeyedHeap:
    """A min-heap with at most one live instant per key, O(log N) per change.

    Replaced and discarded entries stay in the heap and are skipped when they
    reach the top (lazy deletion); the heap is rebuilt when they outnumber the
    live ones, so memory stays O(live keys).
    """

    __slots__ = ("_heap", "_live")

    def __init__(self) -> None:
        """Start empty."""
        self._heap: list[tuple[datetime, int]] = []
        self._live: dict[int, datetime] = {}

    def __len__(self) -> int:
        """Number of live keys."""
        return len(self._live)

    def set(self, key: int, when: datetime | None) -> None:
        """Give `key` the instant `when` (None removes it)."""
        old = self._live.get(key)
        if old == when:
            return
        if when is None:
            del self._live[key]
        else:
            self._live[key] = when
            heapq.heappush(self._heap, (when, key))
        if len(self._heap) > 64 + 2 * len(self._live):
            self._heap = [(when, key) for key, when in self._live.items()]
            heapq.heapify(self._heap)

    def peek(self) -> datetime | None:
        """The earliest live instant, None when empty."""
        top = self.peek_item()
        return None if top is None else top[0]

    def peek_item(self) -> tuple[datetime, int] | None:
        """The earliest live (instant, key), None when empty."""
        heap, live = self._heap, self._live
        while heap:
            when, key = heap[0]
            if live.get(key) == when:
                return when, key
            heapq.heappop(heap)
        return None

    def pop_due(self, now: datetime) -> list[int]:
        """Remove and return the keys due at or before `now`, earliest first."""
        due: list[int] = []
        heap, live = self._heap, self._live
        while heap and heap[0][0] <= now:
            when, key = heapq.heappop(heap)
            if live.get(key) == when:
                del live[key]
                due.append(key)
        return due

    def clear(self) -> None:
        """Forget every key."""
        self._heap.clear()
        self._live.clear()


class Timeline:
    """The transitions of every dispatch of an entry, with one HA timer.

    The coordinator sets the next transition of each dispatch; the timer is
    armed for the earliest. When it fires, `wake(now)` is called; the
    coordinator then takes what is due with `pop_due(now)` in one pass, sets
    the next instants, and calls `arm()`. Nothing here knows about dispatches.
    """

    def __init__(self, hass: HomeAssistant, wake: Callable[[datetime], None]) -> None:
        """Nothing is armed until `arm()`."""
        self._hass = hass
        self._wake = wake
        self._heap = KeyedHeap()
        self._armed_at: datetime | None = None
        self._unsub: CALLBACK_TYPE | None = None

    def set(self, dispatch_id: int, when: datetime | None) -> None:
        """Set (or clear, with None) the next transition of a dispatch."""
        self._heap.set(dispatch_id, when)

    def pop_due(self, now: datetime) -> list[int]:
        """The dispatches whose transition is due at `now`; they are removed."""
        return self._heap.pop_due(now)

    @callback
    def arm(self) -> None:
        """Arm the HA timer for the earliest transition (if not armed already)."""
        earliest = self._heap.peek()
        if earliest == self._armed_at:
            return
        self._cancel_timer()
        if earliest is not None:
            self._armed_at = earliest
            self._unsub = async_track_point_in_utc_time(
                self._hass, self._fire, earliest
            )

    @callback
    def cancel(self) -> None:
        """Disarm and forget every transition."""
        self._cancel_timer()
        self._heap.clear()

    def _cancel_timer(self) -> None:
        if self._unsub is not None:
            self._unsub()
        self._unsub = None
        self._armed_at = None

    @callback
    def _fire(self, point: datetime) -> None:
        self._unsub = None
        self._armed_at = None
        # HA passes the planned point; after a stall the clock may be later.
        self._wake(max(point, dt_util.utcnow()))
