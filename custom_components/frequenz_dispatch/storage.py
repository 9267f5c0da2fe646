"""The dispatch cache of one config entry: the dispatches last known, the deleted ids.

Saved with HA's `Store` (versioned JSON in `.storage/`), at most once per
`SAVE_DELAY` after a change and once more when the entry unloads; removed with
the entry. Each dispatch is kept as its protobuf message, base64-encoded: the
exact form the API sent, parsed again by `api.parse_dispatch` on load. Encoding
and decoding run in the executor, so saving 10 000 dispatches never stalls the
event loop. The runs told to the outside world are not kept here but in
`run_store.py`, written at once; older versions kept them here (`runs`), which
is still read once, when that store does not exist yet.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from frequenz.api.dispatch.v1 import dispatch_pb2
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.event import async_call_later
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util

from .api import MalformedDispatch, ValidDispatch, parse_dispatch
from .const import DOMAIN, LOGGER
from .schedule import Run

STORAGE_VERSION = 1
SAVE_DELAY = 10.0
"""Seconds between a change and its save: what a crash (not a restart) can lose."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What an entry knew when it was last saved."""

    dispatches: list[ValidDispatch]
    runs: dict[int, Run]
    """Runs told as started and not yet as stopped (only in older files)."""
    saved_at: datetime | None = None
    deleted: list[int] = field(default_factory=list)
    """Ids the stream reported deleted (a lagging listing must not revive them)."""


type SnapshotSource = Callable[[], tuple[list[ValidDispatch], list[int]]]


_STORES = f"{DOMAIN}_stores"


def shared_store(hass: HomeAssistant, key: str) -> Store[dict[str, Any]]:
    """The one `Store` of a file: every user of `key` writes through it.

    An entry removed while HA stops must not have its file written again by
    the `Store` of its last coordinator (HA defers writes made while stopping
    to its final write): removing through the same `Store` cancels that.
    """
    stores: dict[str, Store[dict[str, Any]]] = hass.data.setdefault(_STORES, {})
    store = stores.get(key)
    if store is None:
        store = stores[key] = Store(hass, STORAGE_VERSION, key, atomic_writes=True)
    return store


async def async_remove_store(hass: HomeAssistant, key: str) -> None:
    """Delete the file of `key` and forget its `Store`."""
    await shared_store(hass, key).async_remove()
    hass.data.get(_STORES, {}).pop(key, None)


def _encode(dispatches: list[ValidDispatch], deleted: list[int]) -> dict[str, Any]:
    """The JSON form (runs in the executor: dispatches are immutable)."""
    return {
        "saved_at": dt_util.utcnow().isoformat(),
        "dispatches": [encode_dispatch(item) for item in dispatches],
        "deleted": deleted,
    }


def encode_dispatch(item: ValidDispatch) -> str:
    """The stored form of a dispatch: its protobuf, base64-encoded."""
    return base64.b64encode(
        _with_version(item).SerializeToString(deterministic=True)
    ).decode("ascii")


def decode_dispatch(encoded: Any) -> ValidDispatch | None:
    """A dispatch from its stored form; None (logged) if it cannot be read.

    Runs in the executor: a far count rule is prepared here, off the loop.
    """
    try:
        message = dispatch_pb2.Dispatch.FromString(base64.b64decode(encoded))
        parsed = parse_dispatch(message)
    except Exception:  # any unreadable item is skipped
        LOGGER.warning("Skipping an unreadable stored dispatch")
        return None
    if isinstance(parsed, MalformedDispatch):
        LOGGER.warning("Skipping stored dispatch %s: %s", parsed.id, parsed.reason)
        return None
    parsed.schedule.prepare()  # no-op unless a far count rule: off the loop
    return parsed


def _with_version(item: ValidDispatch) -> dispatch_pb2.Dispatch:
    """The protobuf of a dispatch, with the exact update time it came with."""
    message = item.dispatch.to_protobuf()
    seconds, nanos = divmod(item.version, 1_000_000_000)
    message.metadata.update_time.seconds = seconds
    message.metadata.update_time.nanos = nanos
    return message


def _decode(data: Any) -> Snapshot:
    """The snapshot of the JSON form; unreadable items are logged and skipped.

    A file of the wrong shape (edited by hand, or by another version) never
    stops the entry from loading.
    """
    if not isinstance(data, Mapping):
        LOGGER.warning("Ignoring stored dispatches of an unknown form")
        return Snapshot([], {})
    dispatches: list[ValidDispatch] = []
    encoded_list = data.get("dispatches")
    for encoded in encoded_list if isinstance(encoded_list, list) else []:
        parsed = decode_dispatch(encoded)
        if parsed is not None:
            dispatches.append(parsed)
    runs: dict[int, Run] = {}
    stored_runs = data.get("runs")
    for key, value in stored_runs.items() if isinstance(stored_runs, Mapping) else ():
        try:
            runs[int(key)] = decode_run(value)
        except Exception:  # any unreadable item is skipped
            LOGGER.warning("Skipping an unreadable stored run of dispatch %r", key)
    stored_deleted = data.get("deleted")
    deleted = [
        dispatch_id
        for dispatch_id in (stored_deleted if isinstance(stored_deleted, list) else [])
        if isinstance(dispatch_id, int) and not isinstance(dispatch_id, bool)
    ]
    return Snapshot(dispatches, runs, _parse_instant(data.get("saved_at")), deleted)


def _parse_instant(value: Any) -> datetime | None:
    """An aware datetime from its ISO form, None if it is not one."""
    if not isinstance(value, str):
        return None
    parsed = dt_util.parse_datetime(value)
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def decode_run(value: Any) -> Run:
    """A run from its [start, end] form; ValueError if it is not one."""
    start, end = value
    begin = _parse_instant(start)
    finish = None if end is None else _parse_instant(end)
    if begin is None or (end is not None and finish is None):
        raise ValueError(value)
    return Run(begin, finish)


class EntryStore:
    """The persisted state of one config entry.

    Saves never overlap: each takes its snapshot inside one lock, so the
    newest state is always the one written last, whatever the executor's
    timing. The delayed save runs as a tracked task that `async_close`
    awaits, so nothing is written after the entry has stopped.
    """

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        """Nothing is read until `async_load`."""
        self._hass = hass
        self._store = shared_store(hass, f"{DOMAIN}.{entry_id}")
        self._source: SnapshotSource | None = None
        self._unsub_timer: CALLBACK_TYPE | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self.on_written: Callable[[], None] | None = None
        """Called after each write that landed (or that HA defers to its end)."""
        self.saves = 0
        """Saves so far (work counter for tests)."""

    async def async_load(self) -> Snapshot | None:
        """The last saved snapshot, None if there is none."""
        data = await self._store.async_load()
        if not data:
            return None
        return await self._hass.async_add_executor_job(_decode, data)

    @callback
    def schedule_save(self, source: SnapshotSource) -> None:
        """Save `SAVE_DELAY` seconds from now (once, however many changes come)."""
        if self._closed:
            return
        self._source = source
        if self._unsub_timer is None:
            self._unsub_timer = async_call_later(
                self._hass, SAVE_DELAY, self._save_later
            )

    @callback
    def _save_later(self, _now: datetime) -> None:
        self._unsub_timer = None
        if self._task is None or self._task.done():
            self._task = self._hass.async_create_background_task(
                self._async_save_pending(), f"{DOMAIN} save", eager_start=True
            )
        # A save under way writes again if its snapshot is no longer the newest.

    async def _async_save_pending(self) -> None:
        async with self._lock:
            # Changes made while writing were not in this snapshot: write again.
            while self._source is not None and self._unsub_timer is None:
                await self._async_write()

    async def async_save_now(self, source: SnapshotSource | None = None) -> None:
        """Save now (cancelling a delayed save); after any save under way."""
        self._cancel_timer()
        if source is not None:
            self._source = source
        async with self._lock:
            await self._async_write()

    async def _async_write(self) -> None:
        """Snapshot and write (the lock is held: saves never overlap)."""
        source, self._source = self._source, None
        if source is None:
            return  # nothing changed since the last save
        dispatches, deleted = source()  # references only: cheap
        self.saves += 1
        try:
            data = await self._hass.async_add_executor_job(_encode, dispatches, deleted)
            await self._store.async_save(data)
        except Exception:
            # Losing a save must not break the entry (or its unload).
            LOGGER.exception("Cannot save the dispatches of %s", self._store.key)
            return
        if self.on_written is not None:
            self.on_written()

    async def async_close(self, source: SnapshotSource | None) -> None:
        """Write the final state (if `source`), then never again."""
        if source is not None:
            await self.async_save_now(source)
        self.cancel()
        if self._task is not None:
            # Ended already (the save above waited for it), or nothing to write.
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @callback
    def cancel(self) -> None:
        """Drop a pending delayed save; later saves are ignored."""
        self._closed = True
        self._cancel_timer()
        self._source = None
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def _cancel_timer(self) -> None:
        if self._unsub_timer is not None:
            self._unsub_timer()
            self._unsub_timer = None

    async def async_remove(self) -> None:
        """Delete the stored file (after any save under way)."""
        self.cancel()
        async with self._lock:
            await async_remove_store(self._hass, self._store.key)
