"""Benchmark the calendar query at 10 000 dispatches (not a test).

    python scripts/benchmark_calendar.py [--daily 5000] [--once 5000] [--repeat 5]

HA core on a real clock and the simulator in its own process, as in
scripts/benchmark_ha.py. Seeds `--daily` DAILY dispatches (an hour a day,
begun 30 days ago, no end) and `--once` one-shots (an hour each, spread over
the 31 days around now: half over, half to come), waits until the entry has
them all, then calls the calendar entity's `async_get_events` for a few
ranges. The query never awaits, so its time is the time the event loop is
blocked; "cpu" is the loop thread's CPU time, which other jobs on the machine
do not inflate. Prints the median and the slowest of `--repeat` queries per
range, the events returned and the schedule steps taken.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta
import logging
from pathlib import Path
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.benchmark_ha import Sim, _dispatch, _entry, wait_until

MICROGRID_ID = 300


async def seed(sim: Sim, daily: int, once: int) -> None:
    """DAILY dispatches begun 30 days ago; one-shots over now ± 15.5 days."""
    from frequenz.client.dispatch.recurrence import (  # noqa: PLC0415
        Frequency,
        RecurrenceRule,
    )

    now = datetime.now(UTC)
    rule = RecurrenceRule(frequency=Frequency.DAILY, interval=1)
    fields = [
        _dispatch(
            now - timedelta(days=30, seconds=i), timedelta(hours=1), recurrence=rule
        )
        for i in range(daily)
    ]
    spread = timedelta(days=31) / max(once, 1)
    fields += [
        _dispatch(now - timedelta(days=15.5) + i * spread, timedelta(hours=1))
        for i in range(once)
    ]
    for first in range(0, len(fields), 1000):
        await sim.call("create_many", MICROGRID_ID, fields[first : first + 1000])


async def measure(daily: int, once: int, repeat: int) -> list[str]:
    """One line per range."""
    from homeassistant.util import dt as dt_util  # noqa: PLC0415
    from pytest_homeassistant_custom_component.common import (  # noqa: PLC0415
        async_test_home_assistant,
    )

    sim = Sim()
    lines: list[str] = []
    try:
        await seed(sim, daily, once)
        with tempfile.TemporaryDirectory() as config_dir:
            async with async_test_home_assistant(config_dir=config_dir) as hass:
                hass.data.pop("custom_components", None)
                entry = _entry(sim, MICROGRID_ID)
                entry.add_to_hass(hass)
                assert await hass.config_entries.async_setup(entry.entry_id)
                await hass.async_block_till_done()
                coordinator = entry.runtime_data
                total = daily + once
                await wait_until(lambda: len(coordinator.dispatches()) == total)
                entity: Any = hass.data["calendar"].get_entity(
                    f"calendar.microgrid_{MICROGRID_ID}_dispatches"
                )
                now = dt_util.utcnow()
                ranges = {
                    "month view, 31 days around now": (
                        now - timedelta(days=15),
                        now + timedelta(days=16),
                    ),
                    "next 31 days": (now, now + timedelta(days=31)),
                    "last 31 days": (now - timedelta(days=31), now),
                    "calendar trigger look-ahead, 15 min": (
                        now,
                        now + timedelta(minutes=15),
                    ),
                }
                for name, (start, end) in ranges.items():
                    times: list[float] = []
                    cpu: list[float] = []
                    count = 0
                    steps_before = getattr(entity, "query_steps", 0)
                    for _ in range(repeat):
                        began = time.perf_counter()
                        began_cpu = time.thread_time()
                        events = await entity.async_get_events(hass, start, end)
                        cpu.append(time.thread_time() - began_cpu)
                        times.append(time.perf_counter() - began)
                        count = len(events)
                    steps = (getattr(entity, "query_steps", 0) - steps_before) // repeat
                    lines.append(
                        f"calendar query at {total} dispatches ({daily} DAILY + "
                        f"{once} one-shot), {name}: median "
                        f"{statistics.median(times) * 1000:.1f} ms, max "
                        f"{max(times) * 1000:.1f} ms (cpu median "
                        f"{statistics.median(cpu) * 1000:.1f} ms; {repeat} queries), "
                        f"{count} events, {steps} steps"
                    )
                assert await hass.config_entries.async_unload(entry.entry_id)
                await hass.async_block_till_done()
                await hass.async_stop(force=True)
    finally:
        await sim.close()
    return lines


async def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daily", type=int, default=5000)
    parser.add_argument("--once", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for line in await measure(args.daily, args.once, args.repeat):
        print(line)


if __name__ == "__main__":
    asyncio.run(main())
