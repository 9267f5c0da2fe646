"""The actions under random input: only translated validation errors, no partial write.

Hypothesis draws the calls (huge and far dates, durations, numbers, NaN and
infinity anywhere in the payload, malformed types); each is sent through HA's
service registry to the real simulator.
"""

from __future__ import annotations

from datetime import datetime, timedelta
import math
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from custom_components.frequenz_dispatch.const import DOMAIN
from dispatch_sim.server import DispatchSimulator

from .common import MICROGRID_ID, create_dispatch, setup_and_follow

_NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 59, 2**32, 2**64, 10**30, 1e308, -1e308]),
)
_TEXT = st.text(max_size=12)
_DATES = st.one_of(
    st.datetimes(),
    st.sampled_from(
        [
            "9999-12-31 23:59:59",
            "9999-12-31T23:59:59-12:00",
            "0001-01-01 00:00:00",
            "0001-01-01T00:00:00+14:00",
            "2030-01-01T00:00:00Z",
        ]
    ),
    _TEXT,
    _NUMBERS,
).map(lambda value: value.isoformat() if isinstance(value, datetime) else value)
_DURATIONS = st.one_of(
    st.dictionaries(
        st.sampled_from(["days", "hours", "minutes", "seconds"]), _NUMBERS, max_size=2
    ),
    st.sampled_from(["0:15", "99999999:00", "-1:00", "1 day, 0:00"]),
    _NUMBERS,
    _TEXT,
)
_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), _NUMBERS, _TEXT),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_TEXT, inner, max_size=3)
    ),
    max_leaves=8,
)
_FIELDS = {
    "type": st.one_of(st.just("BATTERY_CHARGE"), _TEXT, _NUMBERS),
    "start_time": _DATES,
    "duration": _DURATIONS,
    "target": st.one_of(
        st.lists(st.one_of(_NUMBERS, st.sampled_from(["BATTERY", "1"])), max_size=3),
        _NUMBERS,
    ),
    "payload": st.one_of(st.dictionaries(_TEXT, _JSON, max_size=3), _JSON),
    "active": st.one_of(st.booleans(), _NUMBERS),
    "frequency": st.one_of(st.sampled_from(["DAILY", "MINUTELY"]), _NUMBERS),
    "interval": _NUMBERS,
    "count": _NUMBERS,
    "until": _DATES,
    "byhours": st.lists(_NUMBERS, max_size=2),
    "dispatch_id": _NUMBERS,
    "open_ended": st.booleans(),
    "start": _DATES,
    "end": _DATES,
}
_BASE = {
    "type": "BATTERY_CHARGE",
    "start_time": "2030-01-01T00:00:00+00:00",
    "target": [1],
}


def _draw_calls(count: int) -> list[tuple[str, dict[str, Any]]]:
    """`count` random calls (service, data), drawn by Hypothesis."""
    calls: list[tuple[str, dict[str, Any]]] = []
    fields = st.fixed_dictionaries(
        {}, optional={key: strategy for key, strategy in _FIELDS.items()}
    )

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        service=st.sampled_from(
            ["create_dispatch", "update_dispatch", "list_dispatches"]
        ),
        fields=fields,
        keep_base=st.booleans(),
    )
    def draw(service: str, fields: dict[str, Any], keep_base: bool) -> None:
        base = _BASE if service == "create_dispatch" and keep_base else {}
        calls.append((service, {**base, **fields}))

    draw()
    return calls


def _contains_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_contains_non_finite(item) for item in value.values())
    if isinstance(value, list):
        return any(_contains_non_finite(item) for item in value)
    return False


@pytest.mark.parametrize("time_zone", ["Pacific/Kiritimati", "Etc/GMT+12"])
async def test_random_calls_raise_only_validation_errors(
    hass: HomeAssistant,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
    time_zone: str,
) -> None:
    await hass.config.async_set_time_zone(time_zone)
    existing = create_dispatch(
        dispatch_server, start_time=t0 + timedelta(hours=1), duration=None
    )
    coordinator, _ = await setup_and_follow(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    refused = 0
    for service, fields in _draw_calls(150):
        data = {"config_entry_id": entry_id, **fields}
        if service == "update_dispatch" and "dispatch_id" not in fields:
            data["dispatch_id"] = existing
        before = dispatch_server.dispatches(MICROGRID_ID)
        error: ServiceValidationError | None = None
        try:
            await hass.services.async_call(
                DOMAIN,
                service,
                data,
                blocking=True,
                return_response=service == "list_dispatches",
            )
        except ServiceValidationError as err:
            error = err
        if error is None:
            # Accepted input never holds NaN or infinity.
            assert not _contains_non_finite(fields), (service, data)
            continue
        refused += 1
        assert error.translation_domain == DOMAIN, (service, data)
        assert error.translation_key, (service, data)
        # Nothing was written for refused input.
        assert dispatch_server.dispatches(MICROGRID_ID) == before, data
    assert refused > 0
    # The entry keeps working.
    result = await hass.services.async_call(
        DOMAIN,
        "list_dispatches",
        {"config_entry_id": entry_id},
        blocking=True,
        return_response=True,
    )
    assert result is not None
