"""Shared fixtures: a real Dispatch API server on 127.0.0.1 and HA test helpers."""

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

# Import our package before HA's test harness looks for custom integrations so
# that pytest-homeassistant-custom-component's own testing_config does not
# shadow it.
from custom_components.frequenz_dispatch.const import DOMAIN
from dispatch_sim.server import DispatchSimulator

API_KEY = "test-api-key-0123456789"
MICROGRID_ID = 42


def pytest_configure(config: pytest.Config) -> None:
    """Start grpc.aio's poller thread before HA's cleanup checks snapshot threads."""
    grpc._cython.cygrpc.init_grpc_aio()  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let HA load integrations from custom_components in every test."""


@pytest.fixture
async def dispatch_server() -> AsyncIterator[DispatchSimulator]:
    """A real in-memory Dispatch API server listening on 127.0.0.1."""
    server = DispatchSimulator(api_key=API_KEY, host="127.0.0.1", port=0)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def entry_data(dispatch_server: DispatchSimulator) -> dict[str, Any]:
    """Config entry data pointing at the local server."""
    return {
        "server_url": dispatch_server.url,
        "api_key": API_KEY,
        "microgrid_id": MICROGRID_ID,
    }


__all__ = ["API_KEY", "DOMAIN", "MICROGRID_ID"]
