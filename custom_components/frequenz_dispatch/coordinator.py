"""The dispatch actor on HA's machinery: sync with the API and report lifecycle."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING

from frequenz.client.dispatch.types import Event
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util

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
    DOMAIN,
    EVENT_CREATED,
    EVENT_DELETED,
    EVENT_STARTED,
    EVENT_STOPPED,
    EVENT_UPDATED,
    LOGGER,
)
from .event_data import event_data
from .model import Run
from .scheduler import DispatchScheduler

if TYPE_CHECKING:
    from .data import FrequenzDispatchConfigEntry

RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
"""Seconds to wait before reconnecting, by consecutive failure."""

QUICK_END_SECONDS = 1.0
"""A clean stream end sooner than this counts as a failure (avoids a hot loop)."""

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
        self.scheduler = DispatchScheduler(
            hass,
            on_started=self._report_started,
            on_stopped=self._report_stopped,
            on_transition=self.async_update_listeners,
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
        return dict(self._items)

    # -- stream -------------------------------------------------------------

    @callback
    def async_start_stream(self) -> None:
        """Follow the stream in a task that ends with the config entry."""
        self.config_entry.async_create_background_task(
            self.hass, self._follow_stream(), f"{DOMAIN} stream {self.microgrid_id}"
        )

    async def _follow_stream(self) -> None:
        failures = 0
        relist = False
        loop = asyncio.get_running_loop()
        while True:
            opened_at = loop.time()
            updates, self._first_stream = self._first_stream, None
            if updates is None:
                updates = self.api.open_stream()
            try:
                if relist:
                    parsed = await self.api.list_all()
                    self._set_connected(True)
                    failures = 0
                    self._reconcile(parsed, initial=False)
                async for update in updates:
                    self._set_connected(True)
                    self._apply(update)
            except DispatchAuthError:
                LOGGER.warning(
                    "The Dispatch API rejected the API key; please re-authenticate"
                )
                self._set_connected(False)
                self.config_entry.async_start_reauth(self.hass)
                return
            except DispatchApiError as err:
                self._set_connected(False, err)
                failures += 1
            except Exception as err:
                # Never let the stream task die: log it and reconnect later.
                LOGGER.exception("Unexpected error while following the stream")
                self._set_connected(False, err)
                failures += 1
            else:
                # The server ended the stream (clean close or its deadline).
                quick = loop.time() - opened_at < QUICK_END_SECONDS
                failures = failures + 1 if quick else 0
                LOGGER.debug("Dispatch stream ended; reopening")
            finally:
                updates.cancel()
            relist = True
            if failures:
                await asyncio.sleep(RETRY_DELAYS[min(failures, len(RETRY_DELAYS)) - 1])

    @callback
    def _set_connected(self, connected: bool, error: Exception | None = None) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        if connected:
            LOGGER.info("Dispatch API for microgrid %s is back", self.microgrid_id)
        else:
            LOGGER.info(
                "Dispatch API for microgrid %s is unreachable (%s); "
                "known dispatches stay scheduled",
                self.microgrid_id,
                error,
            )
        self.async_update_listeners()

    # -- reconciliation -----------------------------------------------------

    @callback
    def _reconcile(self, parsed: list[ParsedDispatch], *, initial: bool) -> None:
        """Make our set equal to a full listing, reporting the difference."""
        listed = {item.id for item in parsed}
        for item in parsed:
            self._accept(item, announce=not initial)
        for dispatch_id in [i for i in self._items if i not in listed]:
            self._delete(dispatch_id)
        self.async_set_updated_data(dict(self._items))

    @callback
    def _apply(self, update: StreamUpdate) -> None:
        """Apply one stream message."""
        if update.event is Event.DELETED:
            self._delete(update.item.id)
        elif update.event in (Event.CREATED, Event.UPDATED):
            self._accept(update.item, announce=True)
        self.async_set_updated_data(dict(self._items))

    @callback
    def _accept(self, item: ParsedDispatch, *, announce: bool) -> None:
        """Take a dispatch if it is new or newer than the one we hold."""
        if item.id in self._deleted:
            return
        if isinstance(item, MalformedDispatch):
            self._skip_malformed(item)
            return
        self._malformed.pop(item.id, None)
        old = self._items.get(item.id)
        if old is not None and (
            item.dispatch.update_time < old.dispatch.update_time
            or item.dispatch == old.dispatch
        ):
            return  # stale, or the version we hold
        self._items[item.id] = item
        if announce or old is not None:
            self._fire(EVENT_CREATED if old is None else EVENT_UPDATED, item)
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
    def _delete(self, dispatch_id: int) -> None:
        self._deleted.add(dispatch_id)
        self._malformed.pop(dispatch_id, None)
        item = self._items.pop(dispatch_id, None)
        if item is None:
            return
        self.scheduler.untrack(dispatch_id)
        self._fire(EVENT_DELETED, item)

    # -- reporting ----------------------------------------------------------

    @callback
    def _fire(
        self, event_type: str, item: ValidDispatch, run: Run | None = None
    ) -> None:
        self.hass.bus.async_fire(
            event_type,
            event_data(
                self.config_entry.entry_id,
                self.microgrid_id,
                item.dispatch,
                run,
                with_window=event_type in (EVENT_STARTED, EVENT_STOPPED),
            ),
        )

    @callback
    def _report_started(self, item: ValidDispatch, run: Run) -> None:
        LOGGER.debug("Dispatch %s started (%s)", item.id, run)
        self._fire(EVENT_STARTED, item, run)

    @callback
    def _report_stopped(self, item: ValidDispatch, run: Run) -> None:
        LOGGER.debug("Dispatch %s stopped (%s)", item.id, run)
        self._fire(EVENT_STOPPED, item, run)

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
        """Cancel every timer, then close the connection."""
        self.scheduler.shutdown()
        if self._first_stream is not None:
            self._first_stream.cancel()
        await super().async_shutdown()
        await self.api.close()
