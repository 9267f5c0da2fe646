#!/usr/bin/env python3
"""Measure listing N dispatches through the real client against dispatch_sim.

    python scripts/benchmark_sim.py [--count 10000]

Seeds the simulator (in this process) with generated dispatches, then lists
them all with `frequenz.client.dispatch.DispatchApiClient` at several page
sizes, with and without a filter. Prints per run: the wall time of the whole
listing (client parsing and gRPC included) and the server time (building the
responses, `DispatchSimulator.list_seconds`).
"""

import argparse
import asyncio
from datetime import UTC, datetime
from pathlib import Path
import sys
import time
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from frequenz.client.common.microgrid import MicrogridId
from frequenz.client.dispatch import DispatchApiClient

from dispatch_sim.seed import generate_dispatches
from dispatch_sim.server import DispatchSimulator

API_KEY = "benchmark-key"
MICROGRID = 1


async def _list_all(client: DispatchApiClient, **kwargs: Any) -> int:
    """List every page; return the number of dispatches seen."""
    seen = 0
    async for page in client.list(MicrogridId(MICROGRID), **kwargs):
        seen += sum(1 for _ in page)
    return seen


async def main(count: int) -> None:
    """Seed, list and print the figures."""
    async with DispatchSimulator(api_key=API_KEY) as sim:
        now = datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        sim.create_many(MICROGRID, generate_dispatches(count, now=now))
        seconds = time.perf_counter() - started
        print(f"seed {count} dispatches (create_many): {seconds:.2f} s")
        client = DispatchApiClient(server_url=sim.url, auth_key=API_KEY)
        try:
            runs: list[tuple[str, dict[str, Any]]] = [
                ("default page size (20)", {}),
                ("page_size=100 (the integration's)", {"page_size": 100}),
                ("page_size=1000", {"page_size": 1000}),
                (
                    "page_size=100, filter active=True",
                    {"page_size": 100, "active": True},
                ),
            ]
            for label, kwargs in runs:
                sim.list_seconds = 0.0
                sim.list_calls = 0
                started = time.perf_counter()
                seen = await _list_all(client, **kwargs)
                wall = time.perf_counter() - started
                print(
                    f"list {seen:>6} dispatches, {label}: wall {wall:.2f} s, "
                    f"server {sim.list_seconds:.3f} s over {sim.list_calls} pages"
                )
        finally:
            await client.disconnect()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    asyncio.run(main(parser.parse_args().count))
