#!/usr/bin/env python3
"""Requests and bytes an idle entry costs the Dispatch API per day.

Runs the real connection layer (`DispatchApi`: open the stream, wait until it
is subscribed, list) against the simulator holding N dispatches, then stays
idle for a measured window (real time; keepalive pings hold the stream).
The simulator counts every request and every response message byte.

A day is extrapolated as: the measured opening (stream + first listing),
the idle window's requests scaled to 24 h, plus one safety re-list (the same
cost as the first listing). Bytes are protobuf message bytes (no gRPC/HTTP/2
framing, no keepalive pings). For comparison it prints what the old 5-minute
stream deadline cost: a re-list and a new stream 288 times a day.

Usage: scripts/benchmark_idle.py [--dispatches 100 1000] [--idle 20]
"""

import argparse
import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from custom_components.frequenz_dispatch.api import DispatchApi
from dispatch_sim.server import DispatchSimulator

KEY = "benchmark-key"
MICROGRID = 1
DAY = 86_400.0


def _totals(sim: DispatchSimulator) -> tuple[int, int]:
    traffic = sim.traffic().values()
    return sum(t.requests for t in traffic), sum(t.response_bytes for t in traffic)


async def measure(count: int, idle: float) -> None:
    """Print one row: N dispatches, idle for `idle` seconds."""
    async with DispatchSimulator(api_key=KEY) as sim:
        start = datetime.now(UTC) + timedelta(days=1)
        sim.create_many(
            MICROGRID,
            (
                {
                    "type": "BATTERY_CHARGE",
                    "start_time": start + timedelta(minutes=i),
                    "duration": timedelta(minutes=15),
                    "target": [1, 2],
                    "payload": {"power_w": 1000 + i},
                }
                for i in range(count)
            ),
        )
        async with DispatchApi(sim.url, KEY, MICROGRID) as api:
            stream = api.open_stream()
            try:
                await stream.wait_open()
                await api.list_all()
                open_requests, open_bytes = _totals(sim)
                list_traffic = sim.traffic()["ListMicrogridDispatches"]
                sim.reset_traffic()
                await asyncio.sleep(idle)
                idle_requests, idle_bytes = _totals(sim)
                assert sim.open_streams == 1, "the stream did not stay open"
            finally:
                stream.cancel()
    scale = DAY / idle
    requests = open_requests + idle_requests * scale + list_traffic.requests
    bytes_ = open_bytes + idle_bytes * scale + list_traffic.response_bytes
    old_requests = 288 * (list_traffic.requests + 1)
    old_bytes = 288 * list_traffic.response_bytes
    print(
        f"{count:>6} dispatches: listing {list_traffic.requests} pages "
        f"{list_traffic.response_bytes / 1024:,.0f} KiB; idle {idle:.0f} s: "
        f"{idle_requests} requests, {idle_bytes} B; per idle day: "
        f"{requests:,.0f} requests, {bytes_ / 1024:,.0f} KiB "
        f"(5-minute deadline: {old_requests:,} requests, "
        f"{old_bytes / 1024 / 1024:,.1f} MiB)"
    )


async def main() -> None:
    """Parse the arguments and measure each size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dispatches", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--idle", type=float, default=20.0)
    args = parser.parse_args()
    for count in args.dispatches:
        await measure(count, args.idle)


if __name__ == "__main__":
    asyncio.run(main())
