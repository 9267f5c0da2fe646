"""The ledger of told runs on disk: written at once after every `started`/`stopped`.

Unlike the dispatch cache (storage.py, saved 10 s after a change), this file is
small (one record per running dispatch) and written as soon as the events
went out, atomically, so a crash or power loss costs at most the few
milliseconds between an event and its write. Each record keeps the dispatch
as it was last told (its protobuf, as the cache does), so its `stopped` can
be told even when the cache has not caught up with it yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from contextlib import suppress
from typing import Any

from homeassistant.core import HomeAssistant, callback

from .api import ValidDispatch
from .const import DOMAIN, LOGGER
from .ledger import ToldRun
from .schedule import Run
from .storage import (
    async_remove_store,
    decode_dispatch,
    decode_run,
    encode_dispatch,
    shared_store,
)

type Told = ToldRun[ValidDispatch | None]
"""A told run; its dispatch is None when its stored form cannot be read."""


def _decode(data: Any) -> list[Told]:
    """The told runs of the stored form; unreadable records are skipped."""
    runs = data.get("runs") if isinstance(data, Mapping) else None
    if not isinstance(runs, Mapping):
        LOGGER.warning("Ignoring stored runs of an unknown form")
        return []
    told: list[Told] = []
    for key, record in runs.items():
        try:
            dispatch_id = int(key)
            run = decode_run([record["start"], record["end"]])
        except Exception:  # any unreadable record is skipped
            LOGGER.warning("Skipping an unreadable stored run of dispatch %r", key)
            continue
        encoded = record.get("dispatch")
        item = None if encoded is None else decode_dispatch(encoded)
        if item is not None and item.id != dispatch_id:
            item = None
        told.append(ToldRun(dispatch_id, run.start, run.end, item))
    return told


def told_from_runs(
    runs: Mapping[int, Run], dispatches: Iterable[ValidDispatch]
) -> list[Told]:
    """Told runs of the cache's older form (it kept them before this store)."""
    by_id = {item.id: item for item in dispatches}
    return [
        ToldRun(dispatch_id, run.start, run.end, by_id.get(dispatch_id))
        for dispatch_id, run in runs.items()
    ]


def _record(run: Told) -> dict[str, Any]:
    """The stored form of one told run."""
    return {
        "start": run.start.isoformat(),
        "end": None if run.end is None else run.end.isoformat(),
        "dispatch": None if run.subject is None else encode_dispatch(run.subject),
    }


class RunStore:
    """The told runs of one config entry, written at once and atomically.

    Writes never overlap and the newest is always written last (HA's `Store`
    keeps only the newest pending data under its write lock).
    """

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        """Nothing is read until `async_load`."""
        self._hass = hass
        self._store = shared_store(hass, f"{DOMAIN}.{entry_id}.runs")
        self._records: dict[int, tuple[Told, dict[str, Any]]] = {}
        self._writes: set[asyncio.Task[None]] = set()
        self.saves = 0
        """Writes so far (work counter for tests)."""

    async def async_load(self) -> list[Told] | None:
        """The told runs last written, None if there is no file."""
        data = await self._store.async_load()
        if data is None:
            return None
        return await self._hass.async_add_executor_job(_decode, data)

    @callback
    def save(self, told: Mapping[int, Told]) -> None:
        """Write `told` now (in a task; `async_flush` waits for it).

        Records are built again only for runs that changed (by identity: told
        runs are immutable), so a save costs little more than a dict copy.
        """
        self.saves += 1
        records = self._records
        for dispatch_id in [i for i in records if i not in told]:
            del records[dispatch_id]
        for dispatch_id, run in told.items():
            cached = records.get(dispatch_id)
            if cached is None or cached[0] is not run:
                records[dispatch_id] = (run, _record(run))
        data = {"runs": {str(i): record for i, (_, record) in records.items()}}
        task = self._hass.async_create_background_task(
            self._write(data), f"{DOMAIN} save runs", eager_start=True
        )
        if not task.done():
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _write(self, data: dict[str, Any]) -> None:
        try:
            await self._store.async_save(data)
        except Exception:
            # Losing a write must not break the entry (or its unload).
            LOGGER.exception("Cannot save the runs of %s", self._store.key)

    async def async_flush(self) -> None:
        """Wait until every write asked for has landed."""
        while self._writes:
            with suppress(asyncio.CancelledError):
                await asyncio.gather(*self._writes)

    async def async_remove(self) -> None:
        """Delete the file (after any write under way)."""
        await self.async_flush()
        await async_remove_store(self._hass, self._store.key)
