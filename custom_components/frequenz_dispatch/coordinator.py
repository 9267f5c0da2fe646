"""The one source of truth of a config entry: every dispatch, its run, its changes.

Every change takes one path, whatever brought it (a stream message or a
listing, handed over by `stream.StreamFollower`, or the timer):

    _accept / _on_timer ──► _apply(id, new version, now, lifecycle event)
        ├─► bus event + event entity          (reporter, once per change)
        ├─► indexes: running, per type, next starts, timeline (O(log N))
        └─► dirty marks ──► _flush(): one dispatcher signal per entity that
                            changed, entities added/removed in a batch
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
    signal_dispatch,
    signal_runs_changed,
    signal_summary,
    signal_type,
)
from .event_data import dispatch_data, event_data, run_data, unknown_dispatch_data
from .migration import duplicate_issue_id
from .reporter import EventReporter
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

type RunningState = dict[int, tuple[ValidDispatch, Run]]
"""Reported runs that have not stopped yet, by dispatch id."""

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
        self._carried: RunningState = {}
        """Runs reported before the last unload/restart, not yet seen again."""
        self._held_starts: set[int] = set()
        """Runs whose `started` is held until HA has started (not yet reported)."""
        self._held_stops: dict[int, Run] = {}
        """Runs whose `stopped` is held (still reported as going on)."""
        self._loaded = False
        # What changed since the last flush.
        self._dirty_ids: set[int] = set()
        self._dirty_types: set[str] = set()
        self._dirty_summary = False
        self._runs_changed = False
        self._presence: dict[int, bool] = {}
        self._new_types: list[str] = []
        self._flush_handle: asyncio.Handle | None = None
        self._entity_listener: EntityListener | None = None
        self.stream = StreamFollower(hass, config_entry, api, self)
        self._stopped = False
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
            config_entry_id=self._entry_id,
            identifiers={(DOMAIN, self._entry_id)},
            name=f"Microgrid {self.microgrid_id}",
            manufacturer="Frequenz",
            model="Dispatch API",
            entry_type=dr.DeviceEntryType.SERVICE,
        )
        self.device_id = device.id
        snapshot = await self.store.async_load()
        if snapshot is not None:
            await self._load_snapshot(snapshot)
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

    async def _load_snapshot(self, snapshot: Snapshot) -> None:
        """Start from what was known before the last unload or restart."""
        by_id = {item.id: item for item in snapshot.dispatches}
        self._carried = {
            dispatch_id: (by_id[dispatch_id], run)
            for dispatch_id, run in snapshot.runs.items()
            if dispatch_id in by_id
        }
        for dispatch_id, run in snapshot.runs.items():
            if dispatch_id not in by_id:
                # Its stored form is unreadable: its run cannot go on.
                self._note_held(EVENT_STOPPED, dispatch_id, run)
                self.reporter.fire(
                    EVENT_STOPPED,
                    _unknown_stopped(
                        self._entry_id,
                        self.microgrid_id,
                        dispatch_id,
                        run,
                        self.device_id,
                    ),
                )
        await self.async_reconcile(list(snapshot.dispatches), announce=False)
        for dispatch_id in snapshot.deleted:
            self._tombstone(dispatch_id)
        # Runs that ended while we were away end now: before any listing.
        self._stop_carried()

    def _save_source(self) -> tuple[list[ValidDispatch], dict[int, Run], list[int]]:
        """What to save: references only (encoded in the executor).

        The runs are those reported: a run whose `started` is still held is
        not (the next load reports it), one whose `stopped` is held still is.
        """
        runs = {dispatch_id: run for dispatch_id, (_, run) in self._carried.items()}
        for dispatch_id in self._running:
            run = self._states[dispatch_id].run
            if run is not None and dispatch_id not in self._held_starts:
                runs[dispatch_id] = run
        runs.update(self._held_stops)
        return (
            [state.item for state in self._states.values()],
            runs,
            list(self._deleted),
        )

    @callback
    def async_start_stream(self) -> None:
        """Follow the stream in a task that ends with the config entry."""
        self.stream.start()

    @callback
    def async_release_events(self, _hass: HomeAssistant | None = None) -> None:
        """Send the events held since setup (call once HA has started)."""
        self.reporter.release()
        held = bool(self._held_starts or self._held_stops)
        self._held_starts.clear()
        self._held_stops.clear()
        if held and self._loaded and not self._stopped:
            # The runs now count as reported: save it, or a crash repeats them.
            self.store.schedule_save(self._save_source)

    async def async_stop(self, _event: Any = None) -> None:
        """Stop following the stream and the timer, keeping running runs.

        Also called when HA stops (entries are not unloaded then).

        Called before the platforms unload, so no change can reach entities
        that are going away. The runs that are still going on are kept for a
        reload of the same entry, which then does not start them again.
        """
        if self._stopped:
            return
        self._stopped = True
        await self.stream.async_stop()
        self.timeline.cancel()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        # A reload or restart continues from here: no run starts twice. The
        # stream and the timer are stopped first, so no start or stop can be
        # reported after this last save (HA writes it at its final write).
        await self.store.async_close(self._save_source if self._loaded else None)

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
        self._announce(old, new, run, lifecycle)
        self._index(dispatch_id, old, new, run, next_start)
        self._runs_changed = True

    @callback
    def _announce(
        self,
        old: DispatchState | None,
        new: ValidDispatch | None,
        run: Run | None,
        lifecycle: str | None,
    ) -> None:
        """The events of a change: created/updated, started/stopped, deleted."""
        old_run = None if old is None else old.run
        if lifecycle in (EVENT_CREATED, EVENT_UPDATED) and new is not None:
            self._fire(lifecycle, new, run, window=lifecycle == EVENT_UPDATED)
        if old_run is None and run is not None and new is not None:
            if not self._resume_carried(new.id, new, run):
                LOGGER.debug("Dispatch %s started (%s)", new.id, run)
                self._fire(EVENT_STARTED, new, run, window=True)
        elif old_run is not None and run is None and old is not None:
            LOGGER.debug("Dispatch %s stopped (%s)", old.item.id, old_run)
            self._fire(EVENT_STOPPED, new or old.item, old_run, window=True)
        if lifecycle == EVENT_DELETED and old is not None and new is None:
            self._fire(EVENT_DELETED, old.item, None, window=False)

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
        self._mark_entity(dispatch_id, state, was_current=was_current)

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
        self._note_held(event_type, item.id, run)
        self.reporter.fire(event_type, event)

    @callback
    def _note_held(self, event_type: str, dispatch_id: int, run: Run | None) -> None:
        """Track runs whose `started`/`stopped` waits for HA to start."""
        if not self.reporter.holding or run is None:
            return
        if event_type == EVENT_STARTED:
            self._held_starts.add(dispatch_id)
        elif event_type == EVENT_STOPPED:
            if dispatch_id in self._held_starts:
                self._held_starts.discard(dispatch_id)  # neither is reported
            else:
                self._held_stops[dispatch_id] = run

    # -- runs carried across a reload -------------------------------------------

    def _resume_carried(self, dispatch_id: int, item: ValidDispatch, run: Run) -> bool:
        """Whether this run was reported as started before a reload."""
        carried = self._carried.pop(dispatch_id, None)
        if carried is None:
            return False
        old_item, old_run = carried
        if old_run.start == run.start:
            return True
        self._fire(EVENT_STOPPED, old_item, old_run, window=True)
        return False

    @callback
    def _stop_carried(self) -> None:
        """Report the end of carried runs that did not go on after the reload."""
        carried, self._carried = self._carried, {}
        for item, run in carried.values():
            self._fire(EVENT_STOPPED, item, run, window=True)

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
        dirty_types, self._dirty_types = self._dirty_types, set()
        for dispatch_type in dirty_types:
            async_dispatcher_send(hass, signal_type(entry_id, dispatch_type))
        if self._dirty_summary:
            self._dirty_summary = False
            async_dispatcher_send(hass, signal_summary(entry_id))
        if self._runs_changed:
            self._runs_changed = False
            async_dispatcher_send(hass, signal_runs_changed(entry_id))
            if self._loaded and not self._stopped:
                self.store.schedule_save(self._save_source)


def _unknown_stopped(
    entry_id: str,
    microgrid_id: int,
    dispatch_id: int,
    run: Run,
    device_id: str | None,
) -> dict[str, Any]:
    """The `stopped` of a reported run whose dispatch can no longer be read."""
    LOGGER.warning(
        "Dispatch %s of microgrid %s cannot be read from the cache; its run "
        "is reported as stopped",
        dispatch_id,
        microgrid_id,
    )
    return {
        "config_entry_id": entry_id,
        "microgrid_id": microgrid_id,
        "device_id": device_id,
        **unknown_dispatch_data(dispatch_id),
        **run_data(run),
    }


async def async_forget_entry(
    hass: HomeAssistant, entry: FrequenzDispatchConfigEntry
) -> None:
    """A removed entry: `stopped` for every run it reported, then no trace.

    Its stored state and its repair issues go with it.
    """
    store = EntryStore(hass, entry.entry_id)
    snapshot = await store.async_load()
    if snapshot is not None:
        by_id = {item.id: item for item in snapshot.dispatches}
        device = dr.async_get(hass).async_get_device(
            identifiers={(DOMAIN, entry.entry_id)}
        )
        device_id = None if device is None else device.id
        microgrid_id = int(entry.data[CONF_MICROGRID_ID])
        for dispatch_id, run in snapshot.runs.items():
            item = by_id.get(dispatch_id)
            hass.bus.async_fire(
                EVENT_STOPPED,
                _unknown_stopped(
                    entry.entry_id, microgrid_id, dispatch_id, run, device_id
                )
                if item is None
                else event_data(
                    entry.entry_id,
                    microgrid_id,
                    item.dispatch,
                    run,
                    with_window=True,
                    device_id=device_id,
                ),
            )
    await store.async_remove()
    for issue_id in (
        outage_issue_id(entry.entry_id),
        unlistable_issue_id(entry.entry_id),
        duplicate_issue_id(entry.entry_id),
    ):
        ir.async_delete_issue(hass, DOMAIN, issue_id)
