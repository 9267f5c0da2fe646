"""The ledger of told runs on disk: written at once after every `started`/`stopped`.

Unlike the dispatch cache (storage.py, saved 10 s after a change), this file is
small (one record per running dispatch) and written as soon as the events
went out, atomically, so a crash or power loss costs at most the few
milliseconds between an event and its write. Each record keeps the dispatch
as it was last told (its protobuf, as the cache does), so its `stopped` can
be told even when the cache has not caught up with it yet.

It also keeps the versions that *ended* a told run by a change (deleted,
deactivated, shortened, unreadable: `gone`), until the dispatch cache has
saved them: otherwise a crash within the cache's save delay would bring back
the old running version from the cache and start it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
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


@dataclass(slots=True)
class StoredRuns:
    """What the file holds."""

    told: list[Told] = field(default_factory=list)
    gone: dict[int, ValidDispatch | None] = field(default_factory=dict)
    """Versions that ended a told run (None: deleted or unreadable)."""


def _decode(data: Any) -> StoredRuns:
    """The stored form read back; unreadable records are skipped."""
    stored = StoredRuns()
    runs = data.get("runs") if isinstance(data, Mapping) else None
    if not isinstance(runs, Mapping):
        LOGGER.warning("Ignoring stored runs of an unknown form")
        return stored
    for key, record in runs.items():
        try:
            dispatch_id = int(key)
            run = decode_run([record["start"], record["end"]])
            version = int(record.get("version", 0))
        except Exception:  # any unreadable record is skipped
            LOGGER.warning("Skipping an unreadable stored run of dispatch %r", key)
            continue
        item = _item(record.get("dispatch"), dispatch_id)
        stored.told.append(ToldRun(dispatch_id, run.start, run.end, item, version))
    gone = data.get("gone")
    for key, encoded in gone.items() if isinstance(gone, Mapping) else ():
        try:
            dispatch_id = int(key)
        except ValueError:
            continue
        stored.gone[dispatch_id] = _item(encoded, dispatch_id)
    return stored


def _item(encoded: Any, dispatch_id: int) -> ValidDispatch | None:
    item = None if encoded is None else decode_dispatch(encoded)
    return item if item is not None and item.id == dispatch_id else None


def told_from_runs(
    runs: Mapping[int, Run], dispatches: list[ValidDispatch]
) -> list[Told]:
    """Told runs of the cache's older form (it kept them before this store)."""
    by_id = {item.id: item for item in dispatches}
    told: list[Told] = []
    for dispatch_id, run in runs.items():
        item = by_id.get(dispatch_id)
        version = 0 if item is None else item.version
        told.append(ToldRun(dispatch_id, run.start, run.end, item, version))
    return told


class RunStore:
    """The told runs of one config entry, written at once and atomically.

    A save costs O(changed runs) on the loop plus a dict copy: records are
    kept built, and a dispatch is encoded once per version. Writes never
    overlap and the newest is always written last (HA's `Store` keeps only
    the newest pending data under its write lock); they are tasks HA waits
    for when it stops, never cancelled background tasks.
    """

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        """Nothing is read until `async_load`."""
        self._hass = hass
        self._store = shared_store(hass, f"{DOMAIN}.{entry_id}.runs")
        self._records: dict[str, dict[str, Any]] = {}
        self._encoded: dict[int, tuple[ValidDispatch, str]] = {}
        self._writes: set[asyncio.Future[None]] = set()

    async def async_load(self) -> StoredRuns | None:
        """What was last written, None if there is no file."""
        data = await self._store.async_load()
        if data is None:
            return None
        return await self._hass.async_add_executor_job(_decode, data)

    @callback
    def save(
        self,
        told: Mapping[int, Told],
        changed: set[int],
        gone: Mapping[int, ValidDispatch | None],
    ) -> None:
        """Write now: `changed` names the told runs that changed since the last.

        In a task that HA's stop waits for; `async_flush` waits for it too.
        """
        records = self._records
        for dispatch_id in changed:
            run = told.get(dispatch_id)
            if run is None:
                records.pop(str(dispatch_id), None)
                self._encoded.pop(dispatch_id, None)
            else:
                records[str(dispatch_id)] = {
                    "start": run.start.isoformat(),
                    "end": None if run.end is None else run.end.isoformat(),
                    "version": run.version,
                    "dispatch": self._encode(run.subject),
                }
        data = {
            "runs": dict(records),
            "gone": {str(i): self._encode(item) for i, item in gone.items()},
        }
        task = self._hass.async_create_task(
            self._write(data), f"{DOMAIN} save runs", eager_start=True
        )
        if not task.done():
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    def _encode(self, item: ValidDispatch | None) -> str | None:
        """The stored form of a dispatch, encoded once per version."""
        if item is None:
            return None
        cached = self._encoded.get(item.id)
        if cached is None or cached[0] is not item:
            cached = self._encoded[item.id] = (item, encode_dispatch(item))
        return cached[1]

    async def _write(self, data: dict[str, Any]) -> None:
        try:
            await self._store.async_save(data)
        except Exception:
            # Losing a write must not break the entry (or its unload).
            LOGGER.exception("Cannot save the runs of %s", self._store.key)

    async def async_flush(self) -> None:
        """Wait until every write asked for has landed."""
        while self._writes:
            await asyncio.wait(set(self._writes))

    async def async_remove(self) -> None:
        """Delete the file (after any write under way)."""
        await self.async_flush()
        await async_remove_store(self._hass, self._store.key)
