"""KeyedHeap: the coordinator's heap of next instants per dispatch (no HA needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
import random

from custom_components.frequenz_dispatch.timeline import KeyedHeap

T0 = datetime(2026, 12, 6, tzinfo=UTC)


def test_the_earliest_live_instant_wins_and_replaced_ones_never_come_back() -> None:
    heap = KeyedHeap()
    heap.set(1, T0 + timedelta(minutes=5))
    heap.set(2, T0 + timedelta(minutes=3))
    heap.set(2, T0 + timedelta(minutes=9))  # moved later: its old instant is gone
    heap.set(3, T0 + timedelta(minutes=1))
    heap.set(3, None)  # removed
    heap.set(3, None)  # removing again changes nothing
    assert len(heap) == 2
    assert heap.peek_item() == (T0 + timedelta(minutes=5), 1)
    assert heap.pop_due(T0 + timedelta(minutes=4)) == []
    assert heap.pop_due(T0 + timedelta(minutes=9)) == [1, 2]
    assert len(heap) == 0
    assert heap.peek() is None


def test_many_changes_keep_the_heap_small_and_the_order_right() -> None:
    """Lazy deletion leaves stale entries; they never outgrow the live ones."""
    rng = random.Random(7)
    heap = KeyedHeap()
    live: dict[int, datetime] = {}
    for _ in range(20_000):
        key = rng.randrange(50)
        when = (
            None if rng.random() < 0.2 else T0 + timedelta(seconds=rng.randrange(10**6))
        )
        heap.set(key, when)
        if when is None:
            live.pop(key, None)
        else:
            live[key] = when
        # The memory bound the docstring promises: O(live keys).
        assert len(heap._heap) <= 64 + 2 * len(live) + 1
    assert len(heap) == len(live)
    expected = sorted(live, key=lambda k: (live[k], k))
    assert heap.pop_due(T0 + timedelta(days=30)) == expected
