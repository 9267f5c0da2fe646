"""The one source of truth of a config entry: every dispatch, its run, its changes.

Every change takes one path, whatever brought it (a stream message or a
listing, handed over by `stream.StreamFollower`, or the timer):

    _accept / _on_timer ──► _apply(id, new version, now, lifecycle event)
        ├─► ledger.update(id, run now)        (ledger.py: the one source of
        │                                      started/stopped; saved at once)
        ├─► bus event + event entity          (reporter, once per change)
        ├─► indexes: running, per type, next starts, timeline (O(log N))
        └─► dirty marks ──► _flush(): one dispatcher signal per entity that
                            changed, entities added/removed in a batch

Setup from the cache, reload, HA start and entry removal are the same
comparison of the ledger against what runs now (on removal: nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from frequenz.client.dispatch.types import Event
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryAuthFailed, ConfigEntryNotReady
from homeassistant.helpers import device_registry as dr, issue_registry as ir
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.util import dt as dt_util

from .api import (
    DispatchApi,
    DispatchApiError,
    DispatchAuthError,
    MalformedDispatch,
    ParsedDispatch,
    StreamUpdate,
    Unchanged,
    ValidDispatch,
)
from .const import (
    CONF_DRY_RUN_COUNTS,
    CONF_MICROGRID_ID,
    DOMAIN,
    EVENT_CREATED,
    EVENT_DELETED,
    EVENT_STARTED,
    EVENT_STOPPED,
    EVENT_UPDATED,
    LOGGER,
    device_identifier,
    device_info,
    signal_dispatch,
    signal_runs_changed,
    signal_summary,
    signal_type,
    signal_type_runs,
)
from .event_data import dispatch_data, run_data, unknown_dispatch_data
from .ledger import RunLedger, Transition
from .lookup import entry_device
from .migration import duplicate_issue_id
from .reporter import EventReporter
from .run_store import RunStore, StoredRuns, told_from_runs
from .schedule import Run
from .storage import EntryStore, Snapshot
from .stream import StreamFollower, outage_issue_id
from .timeline import KeyedHeap, Timeline

if TYPE_CHECKING:
    from .data import FrequenzDispatchConfigEntry

CHUNK = 250
"""Dispatches applied between two yields to the loop during a listing."""

MAX_TOMBSTONES = 10_000
"""Deleted ids remembered at most (the oldest are forgotten first)."""

type Ledger = RunLedger[ValidDispatch | None]
"""The told runs; a run's dispatch is None when its stored form was unreadable."""

type EntityListener = Callable[[list[int], list[int], list[str]], None]
"""Called with (dispatch ids that need an entity, ids whose entity goes, new types)."""


@dataclass(slots=True, eq=False)
class DispatchState:
    """What the entry knows about one dispatch now."""

    item: ValidDispatch
    run: Run | None
    next_start: datetime | None
    data: dict[str, Any] | None = None
    """`dispatch_data` of the item, built once per version."""
    attributes: dict[str, Any] | None = None
    """The entity's attributes, built once per version, run and next start."""

    @property
    def current(self) -> bool:
        """Whether it runs now or has a run to come (then it has an entity)."""
        return self.run is not None or self.next_start is not None


@dataclass(frozen=True, slots=True)
class _Malformed:
    reason: str
    version: int | None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def unlistable_issue_id(entry_id: str) -> str:
    """The repair issue naming dispatches too large to be received."""
    return f"dispatch_unlistable_{entry_id}"


class FrequenzDispatchCoordinator:
    """Holds the dispatches of one microgrid and follows their changes.

    `async_setup` lists everything; then `StreamFollower` (stream.py) keeps
    the stream open and hands each message (`apply_stream`) and, every time
    the stream has to be reopened, a new listing (`async_reconcile`:
    created/updated/deleted for the difference) to it. A dispatch is
    never replaced by an older version; deleted ids are kept (bounded) so a
    late listing cannot bring them back.
    """

    config_entry: FrequenzDispatchConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        config_entry: FrequenzDispatchConfigEntry,
        api: DispatchApi,
    ) -> None:
        """Initialize; nothing is fetched until `async_setup`."""
        self.hass = hass
        self.config_entry = config_entry
        self.api = api
        self.options = dict(config_entry.options)
        """The options this coordinator's entities were set up with."""
        self.microgrid_id = api.microgrid_id
        self.device_id: str | None = None
        entry_id = config_entry.entry_id
        self._entry_id = entry_id
        self._dry_run_counts = bool(self.options.get(CONF_DRY_RUN_COUNTS, False))
        self._states: dict[int, DispatchState] = {}
        self._items: dict[int, ValidDispatch] = {}
        self._items_view = MappingProxyType(self._items)
        self._deleted: dict[int, None] = {}
        self._malformed: dict[int, _Malformed] = {}
        self._running: set[int] = set()
        self._type_running: dict[str, set[int]] = {}
        self._type_count: dict[str, int] = {}
        self._seen_types: set[str] = set()
        self._next_starts = KeyedHeap()
        self.timeline = Timeline(hass, self._on_timer)
        self.reporter = EventReporter(hass, entry_id)
        self.store = EntryStore(hass, entry_id)
        self.run_store = RunStore(hass, entry_id)
        self.ledger: Ledger = RunLedger(holding=True)
        """The runs told (replaced by the stored ones in `async_setup`)."""
        self._gone: dict[int, ValidDispatch | None] = {}
        """Versions that ended a told run by a change, until the cache has them."""
        self._gone_saving: dict[int, ValidDispatch | None] = {}
        self._gone_changed = False
        self._cache_dirty = False
        self.store.on_written = self._cache_written
        self._loaded = False
        # What changed since the last flush.
        self._dirty_ids: set[int] = set()
        self._dirty_types: set[str] = set()
        self._dirty_type_runs: set[str] = set()
        self._dirty_summary = False
        self._runs_changed = False
        self._presence: dict[int, bool] = {}
        self._new_types: list[str] = []
        self._flush_handle: asyncio.Handle | None = None
        self._entity_listener: EntityListener | None = None
        self.stream = StreamFollower(hass, config_entry, api, self)
        self._stopped = False
        self._stop_task: asyncio.Task[None] | None = None
        self.evaluations = 0
        """Schedule evaluations so far (work counter for tests and benchmarks)."""

    # -- read API (entities, calendar, triggers, services, diagnostics) -----

    @property
    def connected(self) -> bool:
        """Whether the API answers (the stream follower's view)."""
        return self.stream.connected

    def dispatches(self) -> Mapping[int, ValidDispatch]:
        """Every valid dispatch known now (a read-only live view)."""
        return self._items_view

    def state_of(self, dispatch_id: int) -> DispatchState | None:
        """The state of one dispatch, None if unknown."""
        return self._states.get(dispatch_id)

    def run_of(self, dispatch_id: int) -> Run | None:
        """The current run of a dispatch, None if it is not running."""
        state = self._states.get(dispatch_id)
        return None if state is None else state.run

    def run_of_item(self, item: ValidDispatch) -> Run | None:
        """The run of a version of a dispatch now (e.g. one just written).

        The run held for it if this version (or a newer one) is known, else
        the run its schedule has now, with the start first told if it goes on.
        """
        state = self._states.get(item.id)
        if state is not None and state.item.version >= item.version:
            return state.run
        try:
            run = item.schedule.run_at(dt_util.utcnow())
        except Exception:
            return None
        told = self.ledger.current(item.id)
        if run is not None and told is not None and told.continues_as(run):
            return Run(told.start, run.end)
        return run

    def is_type_running(self, dispatch_type: str) -> bool:
        """Whether a dispatch of the type runs (dry runs only with the option)."""
        return bool(self._type_running.get(dispatch_type))

    def running_of_type(self, dispatch_type: str) -> list[int]:
        """Ids of the runs that turn the type's sensor on, sorted."""
        return sorted(self._type_running.get(dispatch_type, ()))

    def known_types(self) -> set[str]:
        """Types of the known dispatches."""
        return set(self._type_count)

    @property
    def running_count(self) -> int:
        """Number of running dispatches (dry runs included)."""
        return len(self._running)

    def next_start(self) -> datetime | None:
        """The earliest upcoming start of any dispatch."""
        return self._next_starts.peek()

    def next_starting(self) -> tuple[datetime, int] | None:
        """(start, dispatch id) of the earliest upcoming start, O(1) amortized."""
        return self._next_starts.peek_item()

    def running(self) -> dict[int, Run]:
        """The runs going on now, by dispatch id (O(running))."""
        return {
            dispatch_id: run
            for dispatch_id in self._running
            if (run := self._states[dispatch_id].run) is not None
        }

    def attributes(self, dispatch_id: int) -> dict[str, Any] | None:
        """The attributes of a dispatch's entity (built once per change)."""
        state = self._states.get(dispatch_id)
        if state is None:
            return None
        if state.attributes is None:
            state.attributes = {
                **self._data(state),
                **run_data(state.run),
                "next_start": _iso(state.next_start),
            }
        return state.attributes

    @property
    def malformed(self) -> dict[int, str]:
        """Ids of dispatches we skipped, with the reason."""
        return {dispatch_id: bad.reason for dispatch_id, bad in self._malformed.items()}

    @property
    def tombstones(self) -> int:
        """How many deleted ids are remembered."""
        return len(self._deleted)

    @callback
    def async_set_entity_listener(
        self, listener: EntityListener
    ) -> tuple[list[int], list[str]]:
        """Register the platform that adds/removes entities; return what exists.

        Returns the ids that need an entity now and every type seen so far.
        """
        self._entity_listener = listener
        self._presence.clear()
        self._new_types.clear()
        current = [i for i, state in self._states.items() if state.current]
        return current, sorted(self._seen_types)

    @callback
    def async_add_known_types(self, types: list[str]) -> None:
        """Types whose sensor exists already (restored from the registry).

        No second sensor is created for them when a dispatch of the type comes.
        """
        self._seen_types.update(types)

    # -- setup and shutdown ---------------------------------------------------

    async def async_setup(self) -> None:
        """List every dispatch once; afterwards the stream keeps us current."""
        device = dr.async_get(self.hass).async_get_or_create(
            config_entry_id=self._entry_id, **device_info(self.microgrid_id)
        )
        self.device_id = device.id
        snapshot = await self.store.async_load()
        stored = await self.run_store.async_load()
        if stored is None and snapshot is not None and snapshot.runs:
            # Saved by an older version, with the cache: move them over now.
            stored = StoredRuns(told_from_runs(snapshot.runs, snapshot.dispatches))
            told = {run.dispatch_id: run for run in stored.told}
            self.run_store.save(told, set(told), {})
        stored = stored or StoredRuns()
        self.ledger = RunLedger(stored.told, holding=True)
        if snapshot is not None or stored.told or stored.gone:
            await self._load_cache(snapshot, stored)
        # Open the stream before listing so that no change falls in between.
        stream = self.api.open_stream()
        try:
            await stream.wait_open()
            parsed = await self.api.list_all(self.known_versions())
        except DispatchAuthError as err:
            stream.cancel()
            if snapshot is None:
                raise ConfigEntryAuthFailed(
                    translation_domain=DOMAIN, translation_key="invalid_auth"
                ) from err
            self.stream.setup_failed(err)
            self._loaded = True
            self.store.schedule_save(self._save_source)
            return
        except DispatchApiError as err:
            stream.cancel()
            if snapshot is None:
                raise ConfigEntryNotReady(
                    translation_domain=DOMAIN,
                    translation_key="cannot_connect",
                    translation_placeholders={"error": str(err)},
                ) from err
            self.stream.setup_failed(err)
            self._loaded = True
            self.store.schedule_save(self._save_source)
            return
        self.stream.setup_listed(stream)
        # Against a cache, every difference is news: announce it.
        await self.async_reconcile(parsed, announce=snapshot is not None)
        self._loaded = True
        self.store.schedule_save(self._save_source)

    async def _load_cache(self, snapshot: Snapshot | None, stored: StoredRuns) -> None:
        """Start from what was known before the last unload or restart.

        The dispatches of the cache, updated by the run store (written at
        once, so it may be newer than the cache): the dispatches of told
        runs, and the versions that ended a told run (deleted: dropped). Then
        the told runs whose dispatch is not known at all end now, before any
        listing.
        """
        deleted = [] if snapshot is None else snapshot.deleted
        items = {} if snapshot is None else {i.id: i for i in snapshot.dispatches}
        newer = [run.subject for run in stored.told]
        for dispatch_id, gone in stored.gone.items():
            if gone is None:
                items.pop(dispatch_id, None)
            newer.append(gone)
        for item in newer:
            if item is not None and (
                item.id not in items or item.version > items[item.id].version
            ):
                items[item.id] = item
        # Until the cache has them, they stay in the run store.
        self._gone = dict(stored.gone)
        self._cache_dirty = bool(self._gone)
        for dispatch_id in deleted:
            items.pop(dispatch_id, None)
        await self.async_reconcile(list(items.values()), announce=False)
        for dispatch_id in deleted:
            self._tombstone(dispatch_id)
        self._tell(self.ledger.sync(self._states))
        self._commit()

    def _save_source(self) -> tuple[list[ValidDispatch], list[int]]:
        """What to save in the cache: references only (encoded in the executor)."""
        self._gone_saving = dict(self._gone)
        return [state.item for state in self._states.values()], list(self._deleted)

    @callback
    def _cache_written(self) -> None:
        """The cache now holds what ended told runs: the run store may drop it."""
        for dispatch_id, item in self._gone_saving.items():
            if dispatch_id in self._gone and self._gone[dispatch_id] is item:
                del self._gone[dispatch_id]
                self._gone_changed = True
        self._gone_saving = {}
        if not self._stopped:
            self._commit()

    @callback
    def async_start_stream(self) -> None:
        """Follow the stream in a task that ends with the config entry."""
        self.stream.start()

    @callback
    def async_release_events(self, _hass: HomeAssistant | None = None) -> None:
        """Send the events held since setup (call once HA has started)."""
        if self._stopped:
            return  # unloaded before HA started: the next load tells them
        self.reporter.release()
        self.ledger.release()
        # The held runs are told now: save at once, or a crash repeats them.
        self._commit()

    async def async_stop(self, _event: Any = None) -> None:
        """Stop following the stream and the timer, keeping running runs.

        Also called when HA stops (entries are not unloaded then). However
        many callers, there is one stop; each returns once it has finished.

        Called before the platforms unload, so no change can reach entities
        that are going away. The runs that are still going on are kept for a
        reload of the same entry, which then does not start them again.
        """
        if self._stop_task is None:
            self._stopped = True
            self._stop_task = self.hass.async_create_task(
                self._async_stop(), f"{DOMAIN} stop {self.microgrid_id}"
            )
        await asyncio.shield(self._stop_task)

    async def _async_stop(self) -> None:
        await self.stream.async_stop()
        self.timeline.cancel()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        # A reload or restart continues from here: no run starts twice. The
        # stream and the timer are stopped first, so no start or stop can be
        # told after these last saves (HA writes them at its final write when
        # it is stopping).
        await self.store.async_close(self._save_source if self._loaded else None)
        # The newest told state is handed to the store once more: while HA
        # stops, it lands at HA's final write.
        if self._loaded:
            self._commit(force=True)
        await self.run_store.async_flush()

    async def async_shutdown(self) -> None:
        """Stop everything (if `async_stop` has not yet), close the connection."""
        await self.async_stop()
        self.stream.close()
        await self.api.close()

    # -- the three sources of change ------------------------------------------

    @callback
    def apply_stream(self, update: StreamUpdate) -> None:
        """Apply one stream message; entity writes of a burst are coalesced."""
        now = dt_util.utcnow()
        if update.event is Event.DELETED:
            self._tombstone(update.item.id)
            self._malformed.pop(update.item.id, None)
            if update.item.id in self._states:
                self._apply(update.item.id, None, now, EVENT_DELETED)
        elif update.event in (Event.CREATED, Event.UPDATED):
            self._accept(update.item, now, announce=True)
        self.timeline.arm()
        if self._flush_handle is None:
            self._flush_handle = self.hass.loop.call_soon(self._flush)

    def known_versions(self) -> dict[int, int]:
        """The version we hold of every dispatch: the listing skips those."""
        known = {i: state.item.version for i, state in self._states.items()}
        for dispatch_id, bad in self._malformed.items():
            if bad.version is not None:
                known[dispatch_id] = bad.version
        return known

    async def async_reconcile(
        self, parsed: list[ParsedDispatch | Unchanged], *, announce: bool
    ) -> None:
        """Make our set equal to a full listing, reporting the difference.

        Unchanged dispatches come as bare ids and cost nothing. Yields to the
        loop every `CHUNK` dispatches, so a large listing never stalls it.
        """
        listed: set[int] = set()
        unlistable: list[int] = []
        now = dt_util.utcnow()
        for index, item in enumerate(parsed, 1):
            listed.add(item.id)
            if isinstance(item, Unchanged):
                continue
            if isinstance(item, MalformedDispatch) and item.unlistable:
                unlistable.append(item.id)
            self._accept(item, now, announce=announce)
            if index % CHUNK == 0:
                self.timeline.arm()
                self._flush()
                await asyncio.sleep(0)
                now = dt_util.utcnow()
        for dispatch_id in [i for i in self._states if i not in listed]:
            # Not a tombstone: only the stream says for sure that an id is
            # gone, and a listing may lag behind.
            self._apply(dispatch_id, None, now, EVENT_DELETED)
        for dispatch_id in [i for i in self._malformed if i not in listed]:
            del self._malformed[dispatch_id]
        # An id the listing no longer has is gone for good: forget its tombstone.
        for dispatch_id in [i for i in self._deleted if i not in listed]:
            del self._deleted[dispatch_id]
            self._cache_dirty = True
        self.timeline.arm()
        self._flush()
        self._report_unlistable(sorted(unlistable), self.api.unlisted)

    @callback
    def _report_unlistable(self, ids: list[int], unnamed: int) -> None:
        """A repair issue names the dispatches too large to be received."""
        issue_id = unlistable_issue_id(self._entry_id)
        if not ids and not unnamed:
            ir.async_delete_issue(self.hass, DOMAIN, issue_id)
            return
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key="dispatch_unlistable",
            translation_placeholders={
                "microgrid_id": str(self.microgrid_id),
                "ids": ", ".join(str(i) for i in ids) or "-",
                "unnamed": str(unnamed),
            },
        )

    @callback
    def _on_timer(self, now: datetime) -> None:
        """Every transition due at `now`, in one pass."""
        for dispatch_id in self.timeline.pop_due(now):
            state = self._states.get(dispatch_id)
            if state is not None:
                self._apply(dispatch_id, state.item, now, None)
        self.timeline.arm()
        self._flush()

    # -- versions ---------------------------------------------------------------

    @callback
    def _accept(self, item: ParsedDispatch, now: datetime, *, announce: bool) -> None:
        """Take a version if it is new or newer than the one we hold."""
        dispatch_id = item.id
        if dispatch_id in self._deleted:
            return
        old = self._states.get(dispatch_id)
        version = item.version
        if isinstance(item, MalformedDispatch):
            if old is not None and version is not None and version < old.item.version:
                return  # a stale version; the one we hold is newer
            # A version we cannot read replaces whatever we knew.
            self._note_malformed(dispatch_id, item.reason, version)
            if old is not None:
                self._apply(dispatch_id, None, now, None)
            return
        version = item.version
        bad = self._malformed.get(dispatch_id)
        if bad is not None:
            if bad.version is not None and version <= bad.version:
                return  # older than the unreadable version that replaced it
            del self._malformed[dispatch_id]
        if old is not None and (
            version < old.item.version or item.dispatch == old.item.dispatch
        ):
            return  # stale, or the version we hold
        if old is not None:
            lifecycle: str | None = EVENT_UPDATED
        else:
            lifecycle = EVENT_CREATED if announce else None
        self._apply(dispatch_id, item, now, lifecycle)

    @callback
    def _note_malformed(
        self, dispatch_id: int, reason: str, version: int | None
    ) -> None:
        old = self._malformed.get(dispatch_id)
        if old is None or old.reason != reason:
            LOGGER.warning("Skipping dispatch %s: %s", dispatch_id, reason)
        self._malformed[dispatch_id] = _Malformed(reason, version)

    @callback
    def _tombstone(self, dispatch_id: int) -> None:
        self._cache_dirty = True
        self._deleted.pop(dispatch_id, None)
        self._deleted[dispatch_id] = None
        if len(self._deleted) > MAX_TOMBSTONES:
            del self._deleted[next(iter(self._deleted))]

    # -- the one apply path ------------------------------------------------------

    @callback
    def _apply(
        self,
        dispatch_id: int,
        new: ValidDispatch | None,
        now: datetime,
        lifecycle: str | None,
    ) -> None:
        """Move one dispatch to `new` (None: gone) at `now`; publish the change.

        `lifecycle` is the created/updated/deleted event to announce, if any.
        """
        old = self._states.get(dispatch_id)
        run: Run | None = None
        next_start: datetime | None = None
        if new is not None:
            try:
                self.evaluations += 1
                run = new.schedule.run_at(now)
                next_start = new.schedule.next_start(now)
            except Exception as err:  # one dispatch never breaks the others
                self._note_malformed(
                    dispatch_id, f"cannot be evaluated: {err!r}", new.version
                )
                if old is None:
                    return
                new, lifecycle, run, next_start = None, None, None, None
        subject = new if new is not None or old is None else old.item
        # The ledger decides what is told; `run` becomes the run as told (a
        # run going on keeps the start first told).
        run, transitions = self.ledger.update(
            dispatch_id, run, subject, 0 if subject is None else subject.version
        )
        if old is None or new is not old.item:
            self._cache_dirty = True  # a new version or a removal, not a run
        if transitions and old is not None and new is not old.item:
            # A change ended (or restarted) a told run: keep the version that
            # did it beside the ledger until the cache has it.
            self._gone[dispatch_id] = new
            self._gone_changed = True
        if lifecycle in (EVENT_CREATED, EVENT_UPDATED) and new is not None:
            self._fire(lifecycle, new, run, window=lifecycle == EVENT_UPDATED)
        self._tell(transitions)
        if lifecycle == EVENT_DELETED and old is not None and new is None:
            self._fire(EVENT_DELETED, old.item, None, window=False)
        self._index(dispatch_id, old, new, run, next_start)
        self._runs_changed = True

    @callback
    def _tell(self, transitions: list[Transition[ValidDispatch | None]]) -> None:
        """Send the ledger's `started`/`stopped`: the only place that does."""
        for transition in transitions:
            told = transition.run
            item = told.subject
            state = None if item is None else self._states.get(item.id)
            if item is None:
                LOGGER.warning(
                    "Dispatch %s of microgrid %s cannot be read from the cache; "
                    "its run is told as stopped",
                    told.dispatch_id,
                    self.microgrid_id,
                )
            LOGGER.debug(
                "Dispatch %s %s (%s)",
                told.dispatch_id,
                "started" if transition.started else "stopped",
                told.run,
            )
            self.reporter.fire(
                EVENT_STARTED if transition.started else EVENT_STOPPED,
                transition_data(
                    self._entry_id,
                    self.microgrid_id,
                    self.device_id,
                    transition,
                    self._data(state)
                    if state is not None and state.item is item
                    else None,
                ),
            )

    @callback
    def _commit(self, *, force: bool = False) -> None:
        """Write the told runs at once if they changed (after their events)."""
        changed = self.ledger.changed
        if changed or self._gone_changed or force:
            self.run_store.save(self.ledger.told, changed, self._gone)
            self.ledger.changed = set()
            self._gone_changed = False

    @callback
    def _index(
        self,
        dispatch_id: int,
        old: DispatchState | None,
        new: ValidDispatch | None,
        run: Run | None,
        next_start: datetime | None,
    ) -> None:
        """Store the new state; update indexes and dirty marks in O(log N)."""
        old_run = None if old is None else old.run
        old_type = None if old is None else old.item.dispatch.type
        old_item = None if old is None else old.item
        old_counts = old is not None and old_run is not None and self._counts(old.item)
        was_current = old is not None and old.current
        next_before = self._next_starts.peek()
        state: DispatchState | None
        if new is None:
            del self._states[dispatch_id]
            del self._items[dispatch_id]
            state = None
        elif old is None:
            state = self._states[dispatch_id] = DispatchState(new, run, next_start)
            self._items[dispatch_id] = new
        else:
            self._items[dispatch_id] = new
            state = old
            if old.item is not new:
                state.item, state.data, state.attributes = new, None, None
            if old_run != run or state.next_start != next_start:
                state.run, state.next_start, state.attributes = run, next_start, None
        self.timeline.set(
            dispatch_id, None if state is None else (run.end if run else next_start)
        )
        self._next_starts.set(dispatch_id, next_start)
        if (run is None) != (old_run is None):
            if run is None:
                self._running.discard(dispatch_id)
            else:
                self._running.add(dispatch_id)
            self._dirty_summary = True
        if self._next_starts.peek() != next_before:
            self._dirty_summary = True
        new_type = None if new is None else new.dispatch.type
        new_counts = new is not None and run is not None and self._counts(new)
        if old_type != new_type:
            if old_type is not None:
                self._count_type(old_type, -1)
            if new_type is not None:
                self._count_type(new_type, 1)
        if (old_type, old_counts) != (new_type, new_counts):
            if old_counts and old_type is not None:
                self._type_running[old_type].discard(dispatch_id)
                self._dirty_types.add(old_type)
            if new_counts and new_type is not None:
                self._type_running.setdefault(new_type, set()).add(dispatch_id)
                self._dirty_types.add(new_type)
        if old_item is not new or old_run != run:
            self._mark_type_runs(
                None if old_run is None else old_type,
                None if run is None else new_type,
            )
        self._mark_entity(dispatch_id, state, was_current=was_current)

    def _mark_type_runs(self, *types: str | None) -> None:
        """The running dispatches of these types changed (setpoint sensors)."""
        self._dirty_type_runs.update(t for t in types if t is not None)

    @callback
    def _mark_entity(
        self, dispatch_id: int, state: DispatchState | None, *, was_current: bool
    ) -> None:
        """Whether the dispatch's sensor comes, goes, or writes a new state."""
        is_current = state is not None and state.current
        if is_current != was_current:
            self._presence[dispatch_id] = is_current
        # A sensor about to go writes `off` first (automations see it).
        going = was_current and not is_current
        if going or (is_current and state is not None and state.attributes is None):
            self._dirty_ids.add(dispatch_id)

    def _counts(self, item: ValidDispatch) -> bool:
        """Whether a run of it turns its type's sensor on."""
        return self._dry_run_counts or not item.dispatch.dry_run

    def _count_type(self, dispatch_type: str, delta: int) -> None:
        count = self._type_count.get(dispatch_type, 0) + delta
        if count:
            self._type_count[dispatch_type] = count
        else:
            del self._type_count[dispatch_type]
        if dispatch_type not in self._seen_types:
            self._seen_types.add(dispatch_type)
            self._new_types.append(dispatch_type)

    def _data(self, state: DispatchState) -> dict[str, Any]:
        if state.data is None:
            state.data = dispatch_data(state.item.dispatch)
        return state.data

    @callback
    def _fire(
        self, event_type: str, item: ValidDispatch, run: Run | None, *, window: bool
    ) -> None:
        state = self._states.get(item.id)
        if state is not None and state.item is item:
            data = self._data(state)
        else:
            data = dispatch_data(item.dispatch)
        event = {
            "config_entry_id": self._entry_id,
            "microgrid_id": self.microgrid_id,
            "device_id": self.device_id,
            **data,
        }
        if window:
            event.update(run_data(run))
        self.reporter.fire(event_type, event)

    # -- publishing ----------------------------------------------------------------

    @callback
    def _flush(self) -> None:
        """Tell the entities that changed, once each; add/remove entities."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        hass, entry_id = self.hass, self._entry_id
        # Signals first: a sensor about to go writes its last state (`off`).
        dirty_ids, self._dirty_ids = self._dirty_ids, set()
        for dispatch_id in dirty_ids:
            async_dispatcher_send(hass, signal_dispatch(entry_id, dispatch_id))
        if self._entity_listener is not None and (self._presence or self._new_types):
            presence, self._presence = self._presence, {}
            new_types, self._new_types = self._new_types, []
            self._entity_listener(
                [i for i, present in presence.items() if present],
                [i for i, present in presence.items() if not present],
                new_types,
            )
        self._commit()
        dirty_types, self._dirty_types = self._dirty_types, set()
        for dispatch_type in dirty_types:
            async_dispatcher_send(hass, signal_type(entry_id, dispatch_type))
        type_runs, self._dirty_type_runs = self._dirty_type_runs, set()
        for dispatch_type in type_runs:
            async_dispatcher_send(hass, signal_type_runs(entry_id, dispatch_type))
        if self._dirty_summary:
            self._dirty_summary = False
            async_dispatcher_send(hass, signal_summary(entry_id))
        if self._runs_changed:
            self._runs_changed = False
            async_dispatcher_send(hass, signal_runs_changed(entry_id))
        if self._cache_dirty and self._loaded and not self._stopped:
            self._cache_dirty = False
            self.store.schedule_save(self._save_source)


def transition_data(
    entry_id: str,
    microgrid_id: int,
    device_id: str | None,
    transition: Transition[ValidDispatch | None],
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The data of a `started`/`stopped` event: the dispatch, its run, `run_id`.

    `data` is the dispatch's `dispatch_data` if already built. A dispatch that
    can no longer be read is told by its id alone.
    """
    told = transition.run
    item = told.subject
    if data is None:
        data = (
            unknown_dispatch_data(told.dispatch_id)
            if item is None
            else dispatch_data(item.dispatch)
        )
    return {
        "config_entry_id": entry_id,
        "microgrid_id": microgrid_id,
        "device_id": device_id,
        **data,
        **run_data(told.run),
        "run_id": told.run_id,
    }


async def async_forget_entry(
    hass: HomeAssistant, entry: FrequenzDispatchConfigEntry
) -> None:
    """A removed entry: `stopped` for every run it told, then no trace.

    The same comparison as a startup, against nothing. Its stored state and
    its repair issues go with it.
    """
    store = EntryStore(hass, entry.entry_id)
    run_store = RunStore(hass, entry.entry_id)
    stored = await run_store.async_load()
    if stored is None:
        snapshot = await store.async_load()
        told = (
            []
            if snapshot is None
            else told_from_runs(snapshot.runs, snapshot.dispatches)
        )
    else:
        told = stored.told
    if told:
        microgrid_id = int(entry.data[CONF_MICROGRID_ID])
        # The entry's own device (an unmigrated duplicate entry's microgrid
        # has another entry's device, which is not named then).
        device = entry_device(hass, entry.entry_id, device_identifier(microgrid_id))
        device_id = None if device is None else device.id
        ledger: Ledger = RunLedger(told)
        for transition in ledger.sync({}):
            hass.bus.async_fire(
                EVENT_STOPPED,
                transition_data(entry.entry_id, microgrid_id, device_id, transition),
            )
    await run_store.async_remove()
    await store.async_remove()
    for issue_id in (
        outage_issue_id(entry.entry_id),
        unlistable_issue_id(entry.entry_id),
        duplicate_issue_id(entry.entry_id),
    ):
        ir.async_delete_issue(hass, DOMAIN, issue_id)
