"""Following the Dispatch API stream of one entry: back-off, auth grace, outages.

The follower only keeps the connection: it hands every stream message and
every re-listing to the coordinator (`StreamSink`), which applies them.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.helpers.event import async_call_later
from homeassistant.util import dt as dt_util

from .api import (
    DispatchApi,
    DispatchApiError,
    DispatchAuthError,
    DispatchStream,
    ParsedDispatch,
    StreamUpdate,
    Unchanged,
)
from .const import DOMAIN, LOGGER, signal_connection

if TYPE_CHECKING:
    from .data import FrequenzDispatchConfigEntry

RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
"""Seconds to wait before reconnecting, by consecutive failure."""

HEALTHY_SECONDS = 30.0
"""A stream open this long (or that delivered a change) resets the back-off.

A shorter one counts as a failure even when it ended cleanly, so a server or
proxy that keeps closing streams cannot cause a hot reconnect loop.
"""

MIN_RELIST_SECONDS = 5.0
"""Listings never come closer than this, however often streams end."""

AUTH_GRACE = timedelta(minutes=10)
"""Auth errors persisting this long start a reauth flow (retries go on)."""

OUTAGE_ISSUE_AFTER = timedelta(hours=6)
"""Unreachable this long raises a repair issue (the cache may be stale)."""


def outage_issue_id(entry_id: str) -> str:
    """The repair issue of a long outage of the API."""
    return f"api_unreachable_{entry_id}"


class StreamSink(Protocol):
    """What the follower hands its changes to (the coordinator)."""

    def known_versions(self) -> dict[int, int]:
        """The version held of every dispatch (the listing skips those)."""

    async def async_reconcile(
        self, parsed: list[ParsedDispatch | Unchanged], *, announce: bool
    ) -> None:
        """Make the known set equal to a full listing."""

    def apply_stream(self, update: StreamUpdate) -> None:
        """Apply one stream message."""


class StreamFollower:
    """Keeps the stream of one entry open; re-lists every time it reopens."""

    def __init__(
        self,
        hass: HomeAssistant,
        config_entry: FrequenzDispatchConfigEntry,
        api: DispatchApi,
        sink: StreamSink,
    ) -> None:
        """Nothing runs until `start`."""
        self.hass = hass
        self.config_entry = config_entry
        self.api = api
        self._sink = sink
        self._entry_id = config_entry.entry_id
        self.microgrid_id = api.microgrid_id
        self.connected = False
        self._first_stream: DispatchStream | None = None
        self._task: asyncio.Task[None] | None = None
        self._outage = False
        self._auth_error_since: datetime | None = None
        self._unsub_outage: CALLBACK_TYPE | None = None
        self._issue_raised = False
        self._last_list = 0.0
        self.retry_at: datetime | None = None
        """When the task, waiting to reconnect or re-list, goes on."""

    # -- driven by the coordinator's setup and shutdown -------------------------

    @callback
    def setup_listed(self, stream: DispatchStream) -> None:
        """The first listing worked; `stream` was opened just before it."""
        self._first_stream = stream
        self.connected = True
        # An outage issue raised before a reload or restart is over now.
        ir.async_delete_issue(self.hass, DOMAIN, self._issue_id)

    @callback
    def setup_failed(self, err: DispatchApiError) -> None:
        """The first listing failed; the entry runs from its cache."""
        if isinstance(err, DispatchAuthError):
            LOGGER.warning(
                "The Dispatch API rejected the API key; running from the cache "
                "and asking to re-authenticate"
            )
            self._auth_error_since = dt_util.utcnow()
            self._set_connected(False, err)
            self.config_entry.async_start_reauth(self.hass)
        else:
            self._set_connected(False, err)

    @callback
    def start(self) -> None:
        """Follow the stream in a task that ends with the config entry."""
        self._task = self.config_entry.async_create_background_task(
            self.hass, self._follow(), f"{DOMAIN} stream {self.microgrid_id}"
        )

    async def async_stop(self) -> None:
        """Stop following (nothing more reaches the coordinator)."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        self._cancel_outage_issue()

    @callback
    def close(self) -> None:
        """Drop the first stream if it was never followed."""
        if self._first_stream is not None:
            self._first_stream.cancel()
            self._first_stream = None

    # -- the loop -----------------------------------------------------------------

    async def _follow(self) -> None:
        failures = 0
        # Set up from the cache: nothing was listed yet.
        relist = self._first_stream is None
        loop = asyncio.get_running_loop()
        self._last_list = loop.time()
        while True:
            updates, self._first_stream = self._first_stream, None
            received = False
            failed = True
            healthy_timer: CALLBACK_TYPE | None = None
            try:
                if relist:
                    await self._relist_spacing()
                if updates is None:
                    updates = self.api.open_stream()
                opened_at = loop.time()
                if relist:
                    await self._relist()
                    if self._auth_error_since is None:
                        # A successful re-list resets the back-off, unless the
                        # stream keeps rejecting the key: then it grows.
                        failures = 0
                # A stream that stays open this long counts as healthy even
                # when no change arrives.
                healthy_timer = async_call_later(
                    self.hass, HEALTHY_SECONDS, self._stream_healthy
                )
                async for update in updates:
                    received = True
                    self._set_connected(True)
                    self._stream_healthy()
                    self._sink.apply_stream(update)
                failed = False
                LOGGER.debug("The server ended the dispatch stream; reopening")
            except DispatchAuthError as err:
                self._auth_rejected()
                self._set_connected(False, err)
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
            healthy = received or (
                not failed and loop.time() - opened_at >= HEALTHY_SECONDS
            )
            if healthy:
                failures = 0
            if failed or not healthy:
                failures += 1
            relist = True
            if failures:
                await self._wait(RETRY_DELAYS[min(failures, len(RETRY_DELAYS)) - 1])

    async def _relist_spacing(self) -> None:
        """However often streams end, list at most once per MIN_RELIST_SECONDS."""
        loop = asyncio.get_running_loop()
        wait = self._last_list + MIN_RELIST_SECONDS - loop.time()
        if wait > 0:
            await self._wait(wait)
        self._last_list = loop.time()

    async def _wait(self, seconds: float) -> None:
        """Wait on an HA timer (not `asyncio.sleep`); `retry_at` says until when."""
        woken: asyncio.Future[None] = self.hass.loop.create_future()

        @callback
        def _wake(_now: datetime) -> None:
            if not woken.done():
                woken.set_result(None)

        cancel = async_call_later(self.hass, seconds, _wake)
        self.retry_at = dt_util.utcnow() + timedelta(seconds=seconds)
        try:
            await woken
        finally:
            cancel()
            self.retry_at = None

    async def _relist(self) -> None:
        """List everything again (the stream is open) and reconcile."""
        parsed = await self.api.list_all(self._sink.known_versions())
        # The key counts as valid again only once the stream takes it too
        # (`_stream_healthy`), or a stream that always rejects it would never
        # lead to a reauth.
        self._set_connected(True)
        await self._sink.async_reconcile(parsed, announce=True)

    @callback
    def _auth_rejected(self) -> None:
        """Keep retrying; ask for a new key once it has failed for a while."""
        now = dt_util.utcnow()
        if self._auth_error_since is None:
            self._auth_error_since = now
            LOGGER.warning(
                "The Dispatch API rejected the API key; retrying, and asking to "
                "re-authenticate if this persists for %s",
                AUTH_GRACE,
            )
        elif now - self._auth_error_since >= AUTH_GRACE:
            # Once: HA does not start a second flow while one is open.
            self.config_entry.async_start_reauth(self.hass)

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
        if not connected and self._unsub_outage is None and not self._issue_raised:
            self._unsub_outage = async_call_later(
                self.hass, OUTAGE_ISSUE_AFTER, self._raise_outage_issue
            )
        if connected == self.connected:
            return
        self.connected = connected
        if connected:
            self._cancel_outage_issue()
            if self._issue_raised:
                self._issue_raised = False
                ir.async_delete_issue(self.hass, DOMAIN, self._issue_id)
        async_dispatcher_send(self.hass, signal_connection(self._entry_id))

    @property
    def _issue_id(self) -> str:
        return outage_issue_id(self._entry_id)

    @callback
    def _raise_outage_issue(self, _now: datetime) -> None:
        """Unreachable for long: the cached schedule may be stale; tell the user."""
        self._unsub_outage = None
        self._issue_raised = True
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            self._issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key="api_unreachable",
            translation_placeholders={
                "microgrid_id": str(self.microgrid_id),
                "hours": str(int(OUTAGE_ISSUE_AFTER.total_seconds() // 3600)),
            },
        )

    @callback
    def _cancel_outage_issue(self) -> None:
        if self._unsub_outage is not None:
            self._unsub_outage()
            self._unsub_outage = None

    @callback
    def _stream_healthy(self, _now: datetime | None = None) -> None:
        """The stream works again: the key is valid, the outage (if any) over."""
        self._auth_error_since = None
        if self._outage:
            self._outage = False
            LOGGER.info("Dispatch API for microgrid %s is back", self.microgrid_id)
