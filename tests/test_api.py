"""DispatchApi against the real in-memory gRPC server: writes, paging, versions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from frequenz.client.dispatch.recurrence import EndCriteria, Frequency, RecurrenceRule
import pytest

from custom_components.frequenz_dispatch.api import (
    DispatchApi,
    DispatchApiError,
    DispatchAuthError,
    DispatchInvalidInputError,
    DispatchNotFoundError,
    DispatchWriteDeniedError,
    ValidDispatch,
)
from custom_components.frequenz_dispatch.event_data import dispatch_data
from dispatch_sim.server import DispatchSimulator

from .common import API_KEY, MICROGRID_ID


@pytest.fixture
async def api(dispatch_server: DispatchSimulator) -> AsyncIterator[DispatchApi]:
    """Our API object connected to the local server."""
    async with DispatchApi(dispatch_server.url, API_KEY, MICROGRID_ID) as api:
        yield api


def _soon() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)


def _valid(item: object) -> ValidDispatch:
    assert isinstance(item, ValidDispatch), item
    return item


async def test_create_get_update_delete(
    api: DispatchApi, dispatch_server: DispatchSimulator
) -> None:
    start = _soon()
    rule = RecurrenceRule(
        frequency=Frequency.DAILY, interval=2, end_criteria=EndCriteria(count=3)
    )
    created = _valid(
        await api.create(
            dispatch_type="BATTERY_CHARGE",
            start_time=start,
            duration=timedelta(minutes=15),
            target=["BATTERY:LI_ION", "INVERTER"],
            payload={"power_w": 5000},
            dry_run=True,
            recurrence=rule,
        )
    )
    data = dispatch_data(created.dispatch)
    assert data["target"] == ["BATTERY:LI_ION", "INVERTER"]
    assert data["start_time"] == start.isoformat()
    assert data["duration"] == 900
    assert data["dry_run"] is True
    assert data["payload"] == {"power_w": 5000}
    assert data["recurrence"]["frequency"] == "DAILY"
    assert data["recurrence"]["count"] == 3
    stored = dispatch_server.get(MICROGRID_ID, created.id)
    assert stored.type == "BATTERY_CHARGE"

    fetched = _valid(await api.get(created.id))
    assert dispatch_data(fetched.dispatch) == data

    updated = _valid(
        await api.update(
            created.id,
            {
                "duration": None,
                "target": [7, 3],
                "payload": {"power_w": 1000},
                "active": False,
                "recurrence": None,
            },
        )
    )
    new = dispatch_data(updated.dispatch)
    assert new["duration"] is None
    assert new["target"] == [3, 7]
    assert new["payload"] == {"power_w": 1000}
    assert new["active"] is False
    assert new["recurrence"] is None
    # Only the given keys change.
    assert new["start_time"] == data["start_time"]
    assert new["type"] == "BATTERY_CHARGE"
    assert dispatch_server.get(MICROGRID_ID, created.id).duration is None

    await api.delete(created.id)
    assert dispatch_server.dispatches(MICROGRID_ID) == []


async def test_update_sets_recurrence_and_start(api: DispatchApi) -> None:
    created = _valid(
        await api.create(
            dispatch_type="X",
            start_time=_soon(),
            duration=None,
            target=[1],
            payload={},
        )
    )
    later = _soon() + timedelta(days=1)
    rule = RecurrenceRule(frequency=Frequency.HOURLY, interval=1, byminutes=[0, 30])
    updated = _valid(
        await api.update(created.id, {"start_time": later, "recurrence": rule})
    )
    assert updated.dispatch.start_time == later
    assert updated.dispatch.recurrence.frequency is Frequency.HOURLY
    assert updated.dispatch.recurrence.byminutes == [0, 30]


async def test_server_invalid_argument(api: DispatchApi) -> None:
    # In the past beyond the server's tolerance: the server refuses it.
    with pytest.raises(DispatchInvalidInputError, match="past"):
        await api.create(
            dispatch_type="X",
            start_time=_soon() - timedelta(days=1),
            duration=None,
            target=[1],
            payload={},
        )
    rule = RecurrenceRule(frequency=Frequency.DAILY, interval=0)
    with pytest.raises(DispatchInvalidInputError, match="interval"):
        await api.create(
            dispatch_type="X",
            start_time=_soon(),
            duration=None,
            target=[1],
            payload={},
            recurrence=rule,
        )


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ([], "empty"),
        (["BATERY"], "unknown category"),
        (["BATTERY:PV"], "unknown type"),
        (["METER:AC"], "has no types"),
        ([1, "BATTERY"], "all component ids"),
        ([-1], "negative"),
        ([True], "all component ids"),
    ],
)
async def test_bad_target_refused_before_sending(
    api: DispatchApi, dispatch_server: DispatchSimulator, target: list[int], match: str
) -> None:
    with pytest.raises(DispatchInvalidInputError, match=match):
        await api.create(
            dispatch_type="X",
            start_time=_soon(),
            duration=None,
            target=target,
            payload={},
        )
    assert dispatch_server.dispatches(MICROGRID_ID) == []


async def test_other_local_refusals(api: DispatchApi) -> None:
    with pytest.raises(DispatchInvalidInputError, match="time zone"):
        await api.create(
            dispatch_type="X",
            start_time=datetime(2030, 1, 1),  # noqa: DTZ001
            duration=None,
            target=[1],
            payload={},
        )
    with pytest.raises(DispatchInvalidInputError, match="duration"):
        await api.create(
            dispatch_type="X",
            start_time=_soon(),
            duration=timedelta(seconds=-5),
            target=[1],
            payload={},
        )
    with pytest.raises(DispatchInvalidInputError, match="payload"):
        await api.create(
            dispatch_type="X",
            start_time=_soon(),
            duration=None,
            target=[1],
            payload={"when": datetime.now(UTC)},
        )
    for key in ("type", "dry_run"):
        with pytest.raises(DispatchInvalidInputError, match=key):
            await api.update(1, {key: "Y"})


async def test_not_found(api: DispatchApi) -> None:
    with pytest.raises(DispatchNotFoundError):
        await api.get(999)
    with pytest.raises(DispatchNotFoundError):
        await api.update(999, {"active": False})
    with pytest.raises(DispatchNotFoundError):
        await api.delete(999)


async def test_write_with_rejected_key_is_never_an_auth_error(
    dispatch_server: DispatchSimulator,
) -> None:
    async with DispatchApi(dispatch_server.url, "not-the-key", MICROGRID_ID) as api:
        with pytest.raises(DispatchWriteDeniedError) as caught:
            await api.create(
                dispatch_type="X",
                start_time=_soon(),
                duration=None,
                target=[1],
                payload={},
            )
        assert not isinstance(caught.value, DispatchAuthError)
        assert isinstance(caught.value, DispatchApiError)
        with pytest.raises(DispatchWriteDeniedError):
            await api.update(1, {"active": False})
        with pytest.raises(DispatchWriteDeniedError):
            await api.delete(1)
        # A read with the same key is an auth error (reauth may follow).
        with pytest.raises(DispatchAuthError):
            await api.get(1)
