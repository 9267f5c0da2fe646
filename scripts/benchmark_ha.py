"""Benchmark the integration inside a real Home Assistant core (not a test).

    python scripts/benchmark_ha.py [--sizes 1000 10000] [--current 0.1]

Runs HA core (`HomeAssistant` in a temporary config dir, set up as
pytest-homeassistant-custom-component does) on a real clock, against the
simulator in a separate process on 127.0.0.1, and prints every figure of
issue 9's table per size, next to HA's own floor measured in the same run:
the lateness of bare `async_track_point_in_utc_time` callbacks, and HA's own
cost of adding one entity.

"Loop time" is the time the event loop spends running callbacks (every
`asyncio.Handle`, timed), so idle waiting is not counted; a "stall" is the
longest single callback.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
import cProfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import gc
import logging
import multiprocessing
from multiprocessing.connection import Connection
import os
from pathlib import Path
import pstats
import statistics
import sys
import tempfile
import time
import tracemalloc
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

API_KEY = "benchmark-key-0123456789"
TYPE = "BATTERY_CHARGE"


# -- the simulator, in its own process ------------------------------------------


def _sim_process(conn: Connection) -> None:
    """Serve the simulator and execute the parent's commands."""
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_sim_serve(conn))


async def _sim_serve(conn: Connection) -> None:
    from dispatch_sim.server import DispatchSimulator  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    async with DispatchSimulator(api_key=API_KEY, host="127.0.0.1", port=0) as sim:
        conn.send(sim.url)
        while True:
            command, args = await loop.run_in_executor(None, conn.recv)
            if command == "quit":
                conn.send(None)
                return
            if command == "create_many":
                conn.send([sim.create(args[0], **fields) for fields in args[1]])
            elif command == "update":
                sim.update(*args[:2], **args[2])
                conn.send(None)
            elif command == "end_streams":
                await sim.end_streams()
                conn.send(None)
            elif command == "list_calls":
                conn.send(sim.list_calls)


class Sim:
    """Commands to the simulator process."""

    def __init__(self) -> None:
        """Start the process and wait until it listens."""
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_sim_process, args=(child,))
        self._process.start()
        self.url: str = self._conn.recv()

    async def call(self, command: str, *args: Any) -> Any:
        """Run one command in the simulator; its answer."""
        self._conn.send((command, args))
        return await asyncio.get_running_loop().run_in_executor(None, self._conn.recv)

    async def close(self) -> None:
        """Stop the process."""
        await self.call("quit")
        self._process.join(5)


def _dispatch(
    start: datetime, duration: timedelta | None, **extra: Any
) -> dict[str, Any]:
    return {
        "type": TYPE,
        "start_time": start,
        "duration": duration,
        "target": [1, 2],
        "payload": {"power_w": 5000},
        **extra,
    }


async def seed(sim: Sim, microgrid_id: int, total: int, current: int) -> None:
    """`current` dispatches with a run to come, the rest finished long ago."""
    now = datetime.now(UTC)
    fields = [
        _dispatch(now + timedelta(days=1, seconds=i), timedelta(hours=1))
        for i in range(current)
    ] + [
        _dispatch(now - timedelta(days=30, seconds=i), timedelta(hours=1))
        for i in range(total - current)
    ]
    for first in range(0, len(fields), 1000):
        await sim.call("create_many", microgrid_id, fields[first : first + 1000])


# -- measuring the loop ------------------------------------------------------------


class GcMonitor:
    """Times every garbage collection (they run inside whatever callback)."""

    def __init__(self) -> None:
        """Register with the garbage collector."""
        self.longest = 0.0
        self.total = 0.0
        self._began = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            spent = time.perf_counter() - self._began
            self.total += spent
            self.longest = max(self.longest, spent)


class LoopMonitor:
    """Times every callback the event loop runs (wall clock and CPU time).

    Wall time includes waiting for a CPU on a busy machine; CPU time (of the
    loop's thread) is what the callback itself cost.
    """

    def __init__(self, collections: GcMonitor) -> None:
        """Install the timing wrapper on asyncio's Handle."""
        self.collections = collections
        self.gc_in_window = 0.0
        self.longest_without_gc = 0.0
        self.busy = 0.0
        self.busy_cpu = 0.0
        self.longest = 0.0
        self.longest_cpu = 0.0
        self.longest_what = ""
        original = asyncio.events.Handle._run
        monitor = self

        def timed(handle: asyncio.Handle) -> None:
            began, began_cpu = time.perf_counter(), time.thread_time()
            gc_before = collections.total
            try:
                original(handle)
            finally:
                spent = time.perf_counter() - began
                in_gc = collections.total - gc_before
                monitor.gc_in_window += in_gc
                monitor.longest_without_gc = max(
                    monitor.longest_without_gc, spent - in_gc
                )
                spent_cpu = time.thread_time() - began_cpu
                monitor.busy += spent
                monitor.busy_cpu += spent_cpu
                monitor.longest_cpu = max(monitor.longest_cpu, spent_cpu)
                if spent > monitor.longest:
                    monitor.longest = spent
                    monitor.longest_what = repr(handle)[:160]

        asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]

    def reset(self) -> None:
        """Start a new window."""
        self.busy = self.busy_cpu = 0.0
        self.longest = self.longest_cpu = 0.0
        self.gc_in_window = self.longest_without_gc = 0.0
        self.longest_what = ""

    def stall(self) -> str:
        """The longest callback of the window, wall (CPU)."""
        return (
            f"{ms(self.longest)} (cpu {ms(self.longest_cpu)}, "
            f"without GC {ms(self.longest_without_gc)})"
        )

    def loop_time(self, factor: float = 1.0) -> str:
        """Loop time of the window, wall (CPU)."""
        return (
            f"{ms(self.busy * factor)} (cpu {ms(self.busy_cpu * factor)}, "
            f"GC {ms(self.gc_in_window * factor)})"
        )


def ms(seconds: float) -> str:
    """Seconds as milliseconds, for the table."""
    return f"{seconds * 1000:.1f} ms"


def p99(values: list[float]) -> float:
    """The 99th percentile (the maximum below 100 values)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


@dataclass
class Figures:
    """One column of the result table."""

    values: dict[str, str]


# -- Home Assistant -----------------------------------------------------------------


async def wait_until(predicate: Callable[[], bool], limit: float = 120.0) -> None:
    """Poll on a real clock."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step timed out")
        await asyncio.sleep(0.01)


class Bench:
    """One HA instance with one entry: the measuring steps, in order."""

    def __init__(
        self, hass: Any, sim: Sim, microgrid_id: int, monitor: LoopMonitor
    ) -> None:
        """Record events and state writes from now on."""
        from homeassistant.const import EVENT_STATE_CHANGED  # noqa: PLC0415
        from homeassistant.util import dt as dt_util  # noqa: PLC0415

        from custom_components.frequenz_dispatch.const import DOMAIN  # noqa: PLC0415

        self.hass = hass
        self.sim = sim
        self.microgrid_id = microgrid_id
        self.utcnow = dt_util.utcnow
        self.figures: dict[str, str] = {}
        self.monitor = monitor
        self.events: list[tuple[str, dict[str, Any], datetime]] = []
        self.writes: list[str] = []
        self.on_at: dict[int, datetime] = {}
        self.floor: list[float] = []
        self.coordinator: Any = None
        for kind in ("created", "updated", "started", "stopped", "deleted"):
            hass.bus.async_listen(f"{DOMAIN}_{kind}", self._record)
        hass.bus.async_listen(EVENT_STATE_CHANGED, self._state_written)

    def _record(self, event: Any) -> None:
        self.events.append((event.event_type, dict(event.data), self.utcnow()))

    def _state_written(self, event: Any) -> None:
        self.writes.append(event.data["entity_id"])
        new = event.data.get("new_state")
        if (
            new is not None
            and new.state == "on"
            and "dispatch_id" in new.attributes
            and new.entity_id.startswith("binary_sensor.")
        ):
            self.on_at.setdefault(new.attributes["dispatch_id"], self.utcnow())

    def _fired(self, point: datetime) -> None:
        self.floor.append((self.utcnow() - point).total_seconds())

    def _count(self, kind: str) -> int:
        return sum(event[0].endswith(kind) for event in self.events)

    async def sync(self, entry: Any) -> None:
        """Set up the entry: time, longest stall, HA's own add cost."""
        from homeassistant.helpers import entity_platform  # noqa: PLC0415

        add_cost = [0.0, 0]
        original = entity_platform.EntityPlatform._async_add_entity

        async def timed_add(platform: Any, *args: Any, **kwargs: Any) -> None:
            began = time.perf_counter()
            await original(platform, *args, **kwargs)
            add_cost[0] += time.perf_counter() - began
            add_cost[1] += 1

        entity_platform.EntityPlatform._async_add_entity = timed_add  # type: ignore[method-assign,assignment]
        try:
            self.monitor.reset()
            began = time.perf_counter()
            assert await self.hass.config_entries.async_setup(entry.entry_id)
            await self.hass.async_block_till_done()
            sync = time.perf_counter() - began
        finally:
            entity_platform.EntityPlatform._async_add_entity = original  # type: ignore[method-assign]
        self.coordinator = entry.runtime_data
        entities = len(self.hass.states.async_entity_ids())
        self.figures["initial sync"] = f"{sync:.2f} s ({entities} entities)"
        self.figures["longest stall in sync"] = self.monitor.stall()
        print("longest callback in sync:", self.monitor.longest_what, file=sys.stderr)
        self.figures["  HA's own add cost per entity"] = (
            ms(add_cost[0] / add_cost[1]) if add_cost[1] else "-"
        )
        await wait_until(lambda: self.coordinator.connected)
        await asyncio.sleep(1)
        began = time.perf_counter()
        gc.collect()
        self.figures["a full garbage collection"] = ms(time.perf_counter() - began)
        await asyncio.sleep(0.1)  # end this callback before the next window

    async def idle_and_relist(self) -> None:
        """Loop time while nothing changes; then a re-list of unchanged ones."""
        self.monitor.reset()
        await asyncio.sleep(10)
        self.figures["idle loop time per 30 s"] = self.monitor.loop_time(3)
        self.writes.clear()
        lists = await self.sim.call("list_calls")
        self.monitor.reset()
        profiler = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
        if profiler is not None:
            profiler.enable()
        await self.sim.call("end_streams")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if await self.sim.call("list_calls") > lists:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(2)
        if profiler is not None:
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stderr).sort_stats(
                "cumulative"
            ).print_stats(30)
        self.figures["re-list of unchanged: loop time"] = self.monitor.loop_time()
        self.figures["re-list: longest stall"] = self.monitor.stall()
        self.figures["re-list: entity writes"] = str(len(self.writes))

    async def save(self) -> None:
        """Save every dispatch (encoded in the executor)."""
        self.monitor.reset()
        began = time.perf_counter()
        coordinator = self.coordinator
        await coordinator.store.async_save_now(coordinator._save_source)
        took = time.perf_counter() - began
        await asyncio.sleep(0.2)
        self.figures["save of all dispatches: longest stall"] = (
            f"{self.monitor.stall()}, {ms(took)} in all"
        )

    async def stream_updates(self) -> None:
        """Loop time of one stream update (payload of a current dispatch)."""
        coordinator = self.coordinator
        ids = sorted(
            dispatch_id
            for dispatch_id in coordinator.dispatches()
            if coordinator.state_of(dispatch_id).current
        )
        busy: list[float] = []
        cpu: list[float] = []
        slowest = ""
        for n in range(20):
            self.events.clear()
            self.monitor.reset()
            await self.sim.call(
                "update", self.microgrid_id, ids[n], {"payload": {"n": n}}
            )
            await wait_until(lambda: self._count("updated") > 0)
            await asyncio.sleep(0.05)
            busy.append(self.monitor.busy)
            cpu.append(self.monitor.busy_cpu)
            if self.monitor.busy == max(busy):
                slowest = self.monitor.longest_what
        self.figures["loop time of one stream update"] = (
            f"median {ms(statistics.median(busy))} (cpu "
            f"{ms(statistics.median(cpu))}), max {ms(max(busy))}"
        )
        print("slowest stream update's longest callback:", slowest, file=sys.stderr)

    async def creates(self) -> None:
        """200 creates back to back: time until the last `created`."""
        self.events.clear()
        far = datetime.now(UTC) + timedelta(days=2)
        began = time.perf_counter()
        await self.sim.call(
            "create_many",
            self.microgrid_id,
            [_dispatch(far, timedelta(minutes=1)) for _ in range(200)],
        )
        await wait_until(lambda: self._count("created") >= 200)
        self.figures["200 creates: time to drain"] = ms(time.perf_counter() - began)

    async def start_burst(self) -> None:
        """HA's floor, then 200 starts 95 ms apart."""
        from homeassistant.helpers.event import (  # noqa: PLC0415
            async_track_point_in_utc_time,
        )

        self.floor.clear()
        first = self.utcnow() + timedelta(seconds=1)
        for n in range(200):
            async_track_point_in_utc_time(
                self.hass, self._fired, first + timedelta(milliseconds=95 * n)
            )
        await wait_until(lambda: len(self.floor) == 200)
        self.figures["HA timer floor p99 (95 ms apart)"] = ms(p99(self.floor))

        self.events.clear()
        self.on_at.clear()
        self.monitor.reset()
        first = datetime.now(UTC) + timedelta(seconds=4)
        starts = [first + timedelta(milliseconds=95 * n) for n in range(200)]
        new_ids = await self.sim.call(
            "create_many",
            self.microgrid_id,
            [_dispatch(start, timedelta(minutes=5)) for start in starts],
        )
        await wait_until(lambda: self._count("started") >= 200, 60)
        await asyncio.sleep(0.5)
        start_of = dict(zip(new_ids, starts, strict=True))
        started = [
            (at - start_of[data["dispatch_id"]]).total_seconds()
            for kind, data, at in self.events
            if kind.endswith("started")
        ]
        sensor = [
            (at - start_of[i]).total_seconds()
            for i, at in self.on_at.items()
            if i in start_of
        ]
        self.figures["started lateness p99 (200, 95 ms apart)"] = (
            f"{ms(p99(started))} (max {ms(max(started))}, GC in window "
            f"{ms(self.monitor.gc_in_window)})"
        )
        self.figures["binary sensor lateness p99 (same)"] = ms(p99(sensor))

    async def isolated_starts(self) -> None:
        """10 starts a second apart; bare timers half a second after each."""
        from homeassistant.helpers.event import (  # noqa: PLC0415
            async_track_point_in_utc_time,
        )

        self.on_at.clear()
        self.floor.clear()
        first = datetime.now(UTC) + timedelta(seconds=3)
        starts = [first + timedelta(seconds=n) for n in range(10)]
        for start in starts:
            async_track_point_in_utc_time(
                self.hass, self._fired, start + timedelta(milliseconds=500)
            )
        new_ids = await self.sim.call(
            "create_many",
            self.microgrid_id,
            [_dispatch(start, timedelta(minutes=5)) for start in starts],
        )
        start_of = dict(zip(new_ids, starts, strict=True))
        await wait_until(lambda: len(self.floor) == 10 and len(self.on_at) >= 10, 60)
        sensor = [(at - start_of[i]).total_seconds() for i, at in self.on_at.items()]
        self.figures["binary sensor lateness p99 (isolated)"] = ms(p99(sensor))
        self.figures["HA timer floor p99 (isolated)"] = ms(p99(self.floor))


def _entry(sim: Sim, microgrid_id: int) -> Any:
    from pytest_homeassistant_custom_component.common import (  # noqa: PLC0415
        MockConfigEntry,
    )

    from custom_components.frequenz_dispatch.const import DOMAIN  # noqa: PLC0415

    return MockConfigEntry(
        domain=DOMAIN,
        data={"server_url": sim.url, "api_key": API_KEY, "microgrid_id": microgrid_id},
        unique_id=str(microgrid_id),
    )


async def run_size(
    sim: Sim,
    monitor: LoopMonitor,
    total: int,
    current: int,
    microgrid_id: int,
    *,
    quick: bool = False,
) -> Figures:
    """Every figure at one size, in a fresh HA instance."""
    from pytest_homeassistant_custom_component.common import (  # noqa: PLC0415
        async_test_home_assistant,
    )

    await seed(sim, microgrid_id, total, current)
    with tempfile.TemporaryDirectory() as config_dir:
        async with async_test_home_assistant(config_dir=config_dir) as hass:
            hass.data.pop("custom_components", None)
            bench = Bench(hass, sim, microgrid_id, monitor)
            entry = _entry(sim, microgrid_id)
            entry.add_to_hass(hass)
            await bench.sync(entry)
            if quick:
                assert await hass.config_entries.async_unload(entry.entry_id)
                await hass.async_stop(force=True)
                return Figures(bench.figures)
            await bench.idle_and_relist()
            await bench.save()
            await bench.stream_updates()
            await bench.creates()
            await bench.start_burst()
            await bench.isolated_starts()
            assert await hass.config_entries.async_unload(entry.entry_id)
            await hass.async_block_till_done()
            await hass.async_stop(force=True)
    return Figures(bench.figures)


async def memory_per_finished(sim: Sim, sizes: list[int], first_id: int) -> str:
    """Bytes held per dispatch without an entity: slope between two sizes."""
    from pytest_homeassistant_custom_component.common import (  # noqa: PLC0415
        async_test_home_assistant,
    )

    if len(set(sizes)) < 2:
        return "- (needs two sizes)"
    held: dict[int, int] = {}
    for n, total in enumerate(sizes):
        microgrid_id = first_id + n
        await seed(sim, microgrid_id, total, 100)
        with tempfile.TemporaryDirectory() as config_dir:
            async with async_test_home_assistant(config_dir=config_dir) as hass:
                hass.data.pop("custom_components", None)
                entry = _entry(sim, microgrid_id)
                entry.add_to_hass(hass)
                gc.collect()
                tracemalloc.start()
                before = tracemalloc.get_traced_memory()[0]
                assert await hass.config_entries.async_setup(entry.entry_id)
                await hass.async_block_till_done()
                gc.collect()
                held[total] = tracemalloc.get_traced_memory()[0] - before
                tracemalloc.stop()
                assert await hass.config_entries.async_unload(entry.entry_id)
                await hass.async_stop(force=True)
    small, large = sizes[0], sizes[-1]
    per = (held[large] - held[small]) / (large - small)
    return f"{per / 1024:.2f} KB"


async def main() -> None:
    """Measure every size; print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--current", type=float, default=0.1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sim = Sim()
    collections = GcMonitor()
    monitor = LoopMonitor(collections)
    try:
        # Warm up: the first instance pays one-time imports and caches.
        await run_size(sim, monitor, 10, 1, 99, quick=True)
        collections.longest = 0.0
        columns: dict[int, Figures] = {}
        for n, total in enumerate(args.sizes):
            columns[total] = await run_size(
                sim, monitor, total, int(total * args.current), 100 + n
            )
            print(f"measured {total}", file=sys.stderr, flush=True)
        longest_gc = collections.longest
        memory = await memory_per_finished(sim, args.sizes, 200)
    finally:
        await sim.close()
    names = list(next(iter(columns.values())).values)
    width = max(len(name) for name in names) + 2
    header = "figure".ljust(width) + "".join(
        f"{total} dispatches".ljust(56) for total in columns
    )
    print(header)
    print("-" * len(header))
    for name in names:
        print(
            name.ljust(width)
            + "".join(column.values[name].ljust(56) for column in columns.values())
        )
    print("memory per dispatch without entity".ljust(width) + memory)
    print("longest garbage collection".ljust(width) + ms(longest_gc))


if __name__ == "__main__":
    asyncio.run(main())
