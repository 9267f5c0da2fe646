"""Command line: ``python -m dispatch_sim --api-key KEY [--seed FILE] [--generate N]``.

Serves until SIGINT/SIGTERM. Once listening, prints one line
``dispatch-sim listening on grpc://HOST:PORT?ssl=false`` to stdout.
"""

import argparse
import asyncio
from collections.abc import Sequence
import logging
import os
import signal
import sys

from .convert import now_utc
from .seed import (
    SeedError,
    apply_seed,
    generate_dispatches,
    load_seed,
    sample_seed_path,
)
from .server import DispatchSimulator

_LOGGER = logging.getLogger("dispatch_sim")


def _parser() -> argparse.ArgumentParser:
    """Build the argument parser.

    Returns:
        The parser.

    """
    parser = argparse.ArgumentParser(
        prog="python -m dispatch_sim",
        description="In-memory Frequenz Dispatch API server (gRPC, no TLS).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument(
        "--port", type=int, default=50051, help="port to bind (0: pick a free one)"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("DISPATCH_API_KEY"),
        help="API key clients must send (default: $DISPATCH_API_KEY)",
    )
    parser.add_argument(
        "--read-only-api-key",
        help="a second key that may read but not create, update or delete",
    )
    parser.add_argument(
        "--seed",
        metavar="FILE",
        help='JSON seed file to load at start ("sample": the bundled sample)',
    )
    parser.add_argument(
        "--generate",
        metavar="N",
        type=int,
        default=0,
        help="also create N generated dispatches (a tenth of them current)",
    )
    parser.add_argument(
        "--microgrid-id",
        type=int,
        default=1,
        help="microgrid id for seed entries without one (default: 1)",
    )
    parser.add_argument("--page-size", type=int, default=20, help="default page size")
    parser.add_argument("--sign-secret", help="verify request signatures too")
    parser.add_argument(
        "--delay", type=float, default=0.0, help="seconds every unary RPC waits"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level")
    return parser


async def _serve(args: argparse.Namespace) -> int:
    """Run the server until a termination signal arrives.

    Args:
        args: The parsed arguments.

    Returns:
        The exit code.

    """
    sim = DispatchSimulator(
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        page_size=args.page_size,
        sign_secret=args.sign_secret,
        read_only_api_key=args.read_only_api_key,
    )
    sim.delay = args.delay
    if args.seed:
        path = sample_seed_path() if args.seed == "sample" else args.seed
        try:
            seed = load_seed(path, default_microgrid_id=args.microgrid_id)
            ids = apply_seed(sim, seed)
        except (OSError, SeedError) as err:
            _LOGGER.error("Cannot load seed: %s", err)
            return 2
        _LOGGER.info("Loaded %d dispatches from %s", len(ids), path)
    if args.generate > 0:
        now = now_utc().replace(microsecond=0)
        generated = generate_dispatches(args.generate, now=now)
        sim.create_many(args.microgrid_id, generated)
        _LOGGER.info("Created %d generated dispatches", args.generate)
    try:
        await sim.start()
    except OSError as err:
        _LOGGER.error("%s", err)
        return 1
    print(f"dispatch-sim listening on {sim.url}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        _LOGGER.info("Shutting down")
        await sim.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and serve.

    Args:
        argv: The arguments (default: `sys.argv[1:]`).

    Returns:
        The exit code.

    """
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("--api-key (or $DISPATCH_API_KEY) is required")
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
