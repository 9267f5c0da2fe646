"""The dispatch actor on HA's machinery: sync with the API and report lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import suppress
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING

from frequenz.client.dispatch.types import Event
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.helpers.event import async_call_later
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util
from homeassistant.util.hass_dict import HassKey

from .api import (
    DispatchApi,
    DispatchApiError,
    DispatchAuthError,
    DispatchStream,
    MalformedDispatch,
    ParsedDispatch,
    StreamUpdate,
    ValidDispatch,
)
from .const import (
    CONF_DRY_RUN_COUNTS,
    DOMAIN,
    EVENT_CREATED,
    EVENT_DELETED,
    EVENT_STARTED,
    EVENT_STOPPED,
    EVENT_UPDATED,
    LOGGER,
    signal_runs_changed,
)
from .reporter import EventReporter
from .schedule import Run
from .scheduler import DispatchScheduler, RunningState

if TYPE_CHECKING:
    from .data import FrequenzDispatchConfigEntry

RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
"""Seconds to wait before reconnecting, by consecutive failure."""

HEALTHY_SECONDS = 30.0
"""A stream open this long (or that delivered a change) resets the back-off.

A shorter one counts as a failure even when it ended cleanly, so a server or
proxy that keeps closing streams cannot cause a hot reconnect loop.
"""

CARRIED_RUNS: HassKey[dict[str, RunningState]] = HassKey(f"{DOMAIN}_carried_runs")
"""Runs reported as started, kept across reloads of an entry."""

type Dispatches = dict[int, ValidDispatch]


class FrequenzDispatchCoordinator(DataUpdateCoordinator[Dispatches]):
    """Holds the dispatches of one microgrid and follows their changes.

    The first refresh lists everything; then a background task follows the
    stream and, every time the stream has to be reopened, lists again and
    reconciles (created/updated/deleted for the difference). A dispatch is
    never replaced by one with an older `update_time`, deleted ids are kept so
    a late list can never bring them back. Start and stop times are kept by
    the scheduler with HA time trackers.
    """

    config_entry: FrequenzDispatchConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        config_entry: FrequenzDispatchConfigEntry,
        api: DispatchApi,
    ) -> None:
        """Initialize; nothing is fetched until the first refresh."""
        super().__init__(
            hass,
            LOGGER,
            config_entry=config_entry,
            name=f"{DOMAIN} microgrid {api.microgrid_id}",
            always_update=False,
        )
        self.api = api
        self.options = dict(config_entry.options)
        """The options this coordinator's entities were set up with."""
        self.microgrid_id = api.microgrid_id
        self.connected = False
        self._items: Dispatches = {}
        self._deleted: set[int] = set()
        self._malformed: dict[int, str] = {}
        self._loaded = False
        self._first_stream: DispatchStream | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._stopped = False
        self._outage = False
        self.reporter = EventReporter(hass, config_entry.entry_id, self.microgrid_id)
        self.scheduler = DispatchScheduler(
            hass,
            on_started=self._report_started,
            on_stopped=self._report_stopped,
            on_transition=self.async_update_listeners,
            carried=hass.data.get(CARRIED_RUNS, {}).pop(config_entry.entry_id, None),
        )

    # -- first fetch ------------------------------------------------------

    async def _async_update_data(self) -> Dispatches:
        """List every dispatch once; afterwards the stream keeps us current."""
        if self._loaded:
            return dict(self._items)
        # Open the stream before listing so that no change falls in between.
        stream = self.api.open_stream()
        try:
            parsed = await self.api.list_all()
        except DispatchAuthError as err:
            stream.cancel()
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN, translation_key="invalid_auth"
            ) from err
        except DispatchApiError as err:
            stream.cancel()
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="cannot_connect",
                translation_placeholders={"error": str(err)},
            ) from err
        self._first_stream = stream
        self._loaded = True
        self.connected = True
        self._reconcile(parsed, initial=True)
        self.scheduler.stop_carried()
        return dict(self._items)

    # -- stream -------------------------------------------------------------

    @callback
    def async_start_stream(self) -> None:
        """Follow the stream in a task that ends with the config entry."""
        self._stream_task = self.config_entry.async_create_background_task(
            self.hass, self._follow_stream(), f"{DOMAIN} stream {self.microgrid_id}"
        )

    @callback
    def async_release_events(self, _hass: HomeAssistant | None = None) -> None:
        """Fire the events held since setup (call once HA has started)."""
        self.reporter.release()

    async def async_stop(self) -> None:
        """Stop following the stream and every timer, keeping running runs.

        Called before the platforms unload, so no change can reach entities
        that are going away. The runs that are still going on are kept for a
        reload of the same entry, which then does not start them again.
        """
        if self._stopped:
            return
        self._stopped = True
        if self._stream_task is not None:
            self._stream_task.cancel()
            with suppress(asyncio.CancelledError):
                await self._stream_task
        self.hass.data.setdefault(CARRIED_RUNS, {})[self.config_entry.entry_id] = (
            self.scheduler.shutdown()
        )

    async def _follow_stream(self) -> None:
        failures = 0
        relist = False
        loop = asyncio.get_running_loop()
        while True:
            opened_at = loop.time()
            updates, self._first_stream = self._first_stream, None
            received = False
            failed = True
            healthy_timer: CALLBACK_TYPE | None = None
            try:
                if updates is None:
                    updates = self.api.open_stream()
                if relist:
                    parsed = await self.api.list_all()
                    self._set_connected(True)
                    self._reconcile(parsed, initial=False)
                # A stream that stays open this long counts as healthy even
                # when no change arrives.
                healthy_timer = async_call_later(
                    self.hass, HEALTHY_SECONDS, self._stream_healthy
                )
                async for update in updates:
                    received = True
                    self._set_connected(True)
                    self._stream_healthy()
                    self._apply(update)
                failed = False
                LOGGER.debug("The server ended the dispatch stream; reopening")
            except DispatchAuthError:
                LOGGER.warning(
                    "The Dispatch API rejected the API key; please re-authenticate"
                )
                self._set_connected(False)
                self.config_entry.async_start_reauth(self.hass)
                return
            except DispatchApiError as err:
                self._set_connected(False, err)
            except Exception as err:
                # Never let the task die: log it and start over after a delay.
                LOGGER.exception("Unexpected error while following the stream")
                self._set_connected(False, err)
            finally:
                if updates is not None:
                    updates.cancel()
                if healthy_timer is not None:
                    healthy_timer()
            healthy = received or loop.time() - opened_at >= HEALTHY_SECONDS
            if healthy:
                failures = 0
            if failed or not healthy:
                failures += 1
            relist = True
            if failures:
                await asyncio.sleep(RETRY_DELAYS[min(failures, len(RETRY_DELAYS)) - 1])

    @callback
    def _set_connected(self, connected: bool, error: Exception | None = None) -> None:
        """Track the connection; log an outage once, when it begins."""
        if not connected and not self._outage:
            self._outage = True
            LOGGER.info(
                "Dispatch API for microgrid %s is unreachable (%s); "
                "known dispatches stay scheduled",
                self.microgrid_id,
                error,
            )
        if connected == self.connected:
            return
        self.connected = connected
        try:
            self.async_update_listeners()
        except Exception:
            # An entity's bug must not stop the stream task.
            LOGGER.exception("Error while updating entities")

    @callback
    def _stream_healthy(self, _now: datetime | None = None) -> None:
        """The stream works again: the outage (if any) is over; log it once."""
        if self._outage:
            self._outage = False
            LOGGER.info("Dispatch API for microgrid %s is back", self.microgrid_id)

    # -- reconciliation -----------------------------------------------------

    @callback
    def _reconcile(self, parsed: list[ParsedDispatch], *, initial: bool) -> None:
        """Make our set equal to a full listing, reporting the difference."""
        listed = {item.id for item in parsed}
        for item in parsed:
            self._accept(item, announce=not initial)
        for dispatch_id in [i for i in self._items if i not in listed]:
            # Not a tombstone: only the stream says for sure that an id is
            # gone, and a listing may lag behind.
            self._delete(dispatch_id, tombstone=False)
        for dispatch_id in [i for i in self._malformed if i not in listed]:
            del self._malformed[dispatch_id]
        self.async_set_updated_data(dict(self._items))

    @callback
    def _apply(self, update: StreamUpdate) -> None:
        """Apply one stream message."""
        if update.event is Event.DELETED:
            self._delete(update.item.id, tombstone=True)
        elif update.event in (Event.CREATED, Event.UPDATED):
            self._accept(update.item, announce=True)
        self.async_set_updated_data(dict(self._items))

    @callback
    def _accept(self, item: ParsedDispatch, *, announce: bool) -> None:
        """Take a dispatch if it is new or newer than the one we hold."""
        if item.id in self._deleted:
            return
        old = self._items.get(item.id)
        if isinstance(item, MalformedDispatch):
            if (
                old is not None
                and item.update_time is not None
                and item.update_time < old.dispatch.update_time
            ):
                return  # a stale version; the one we hold is newer
            self._skip_malformed(item)
            return
        self._malformed.pop(item.id, None)
        if old is not None and (
            item.dispatch.update_time < old.dispatch.update_time
            or item.dispatch == old.dispatch
        ):
            return  # stale, or the version we hold
        self._items[item.id] = item
        if old is None and announce:
            self.reporter.fire(EVENT_CREATED, item)
        elif old is not None:
            run = item.schedule.run_at(dt_util.utcnow())
            self.reporter.fire(EVENT_UPDATED, item, run)
        self.scheduler.track(item)

    @callback
    def _skip_malformed(self, item: MalformedDispatch) -> None:
        if self._malformed.get(item.id) != item.reason:
            self._malformed[item.id] = item.reason
            LOGGER.warning("Skipping dispatch %s: %s", item.id, item.reason)
        # A version we cannot read replaces whatever we knew: stop using it.
        if item.id in self._items:
            del self._items[item.id]
            self.scheduler.untrack(item.id)

    @callback
    def _delete(self, dispatch_id: int, *, tombstone: bool) -> None:
        if tombstone:
            self._deleted.add(dispatch_id)
        self._malformed.pop(dispatch_id, None)
        item = self._items.pop(dispatch_id, None)
        if item is None:
            return
        self.scheduler.untrack(dispatch_id)
        self.reporter.fire(EVENT_DELETED, item)

    # -- reporting ----------------------------------------------------------

    @callback
    def _report_started(self, item: ValidDispatch, run: Run) -> None:
        LOGGER.debug("Dispatch %s started (%s)", item.id, run)
        self.reporter.fire(EVENT_STARTED, item, run)

    @callback
    def _report_stopped(self, item: ValidDispatch, run: Run) -> None:
        LOGGER.debug("Dispatch %s stopped (%s)", item.id, run)
        self.reporter.fire(EVENT_STOPPED, item, run)

    def next_start(self, dispatch_id: int | None = None) -> datetime | None:
        """Next run start of one dispatch, or of any dispatch when id is None."""
        now = dt_util.utcnow()
        items = (
            self._items.values()
            if dispatch_id is None
            else [item for item in [self._items.get(dispatch_id)] if item]
        )
        starts = [s for item in items if (s := item.schedule.next_start(now))]
        return min(starts, default=None)

    @property
    def malformed(self) -> dict[int, str]:
        """Ids of dispatches we skipped, with the reason."""
        return dict(self._malformed)

    async def async_shutdown(self) -> None:
        """Stop everything (if `async_stop` has not yet), close the connection."""
        await self.async_stop()
        if self._first_stream is not None:
            self._first_stream.cancel()
        await super().async_shutdown()
        await self.api.close()

    # -- read API (contract) -------------------------------------------------

    def dispatches(self) -> Mapping[int, ValidDispatch]:
        """Every valid dispatch known now, by id."""
        return MappingProxyType(self._items)

    def run_of(self, dispatch_id: int) -> Run | None:
        """The current run of a dispatch, None if it is not running."""
        return self.scheduler.run_of(dispatch_id)

    def is_type_running(self, dispatch_type: str) -> bool:
        """Whether a dispatch of the type runs (the per-type sensor's rule)."""
        dry_run_counts = bool(self.options.get(CONF_DRY_RUN_COUNTS, False))
        return any(
            (item := self._items.get(dispatch_id)) is not None
            and item.dispatch.type == dispatch_type
            and (dry_run_counts or not item.dispatch.dry_run)
            for dispatch_id in self.scheduler.running
        )

    def known_types(self) -> set[str]:
        """The types of the known dispatches."""
        return {item.dispatch.type for item in self._items.values()}

    @callback
    def async_update_listeners(self) -> None:
        """Update the entities, then tell the signal's subscribers."""
        super().async_update_listeners()
        async_dispatcher_send(
            self.hass, signal_runs_changed(self.config_entry.entry_id)
        )
