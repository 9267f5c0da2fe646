"""Shared fixtures: a real Dispatch API server on 127.0.0.1 and HA test helpers."""

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
import grpc
from homeassistant.util import dt as dt_util
import pytest

# Import our package before HA's test harness looks for custom integrations so
# that pytest-homeassistant-custom-component's own testing_config does not
# shadow it.
from custom_components.frequenz_dispatch.const import DOMAIN
from dispatch_sim.server import DispatchSimulator

from .common import API_KEY, MICROGRID_ID


def pytest_configure(config: pytest.Config) -> None:
    """Start grpc.aio's poller thread before HA's cleanup checks snapshot threads."""
    grpc._cython.cygrpc.init_grpc_aio()  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let HA load integrations from custom_components in every test."""


@pytest.fixture
async def dispatch_server() -> AsyncIterator[DispatchSimulator]:
    """A real in-memory Dispatch API server listening on 127.0.0.1."""
    async with DispatchSimulator(api_key=API_KEY, host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
def t0(freezer: FrozenDateTimeFactory) -> datetime:
    """A round instant just after real now; the clock is frozen there.

    Never freeze in the past: gRPC deadlines are computed from the frozen clock.
    """
    now = dt_util.utcnow()
    start = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    freezer.move_to(start)
    return start


@pytest.fixture
def entry_data(dispatch_server: DispatchSimulator) -> dict[str, Any]:
    """Config entry data pointing at the local server."""
    return {
        "server_url": dispatch_server.url,
        "api_key": API_KEY,
        "microgrid_id": MICROGRID_ID,
    }


__all__ = ["API_KEY", "DOMAIN", "MICROGRID_ID"]
