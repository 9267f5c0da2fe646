"""Following the Dispatch API stream of one entry: back-off, auth grace, outages.

The follower only keeps the connection: it hands every stream message and
every re-listing to the coordinator (`StreamSink`), which applies them. The
stream stays open as long as it works; a full listing follows only a break
of it, plus one safety listing a day.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing, suppress
from datetime import datetime, timedelta
import random
from typing import TYPE_CHECKING, Any, Protocol

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

RETRY_JITTER = 0.5
"""Each reconnect delay is drawn from RETRY_DELAYS[i] * (1 ± this).

So that the clients a server restart cut off do not all come back at once.
"""

SAFETY_RELIST = timedelta(hours=24)
"""While the stream stays open, the known set is listed again this often.

In case the server dropped a change without breaking the stream.
"""

SAFETY_RELIST_JITTER = timedelta(hours=1)
"""The safety listing comes within ± this of SAFETY_RELIST (spread load)."""

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


def retry_delay(failures: int) -> float:
    """Seconds to wait after `failures` (>= 1) consecutive failures, jittered."""
    base = RETRY_DELAYS[min(failures, len(RETRY_DELAYS)) - 1]
    return base * random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)


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
    """Keeps the stream of one entry open; re-lists when it reopens, and daily."""

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
        self._relist_due = asyncio.Event()
        self._unsub_safety: CALLBACK_TYPE | None = None
        self.retry_at: datetime | None = None
        """When the task, waiting to reconnect or re-list, goes on."""

    # -- driven by the coordinator's setup and shutdown -------------------------

    @callback
    def setup_listed(self, stream: DispatchStream) -> None:
        """The first listing worked; `stream` was opened just before it."""
        self._first_stream = stream
        self.connected = True
        self._arm_safety_relist()
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
        self._cancel_safety_relist()

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
                updates = await self._open(updates, relist=relist)
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
                async with aclosing(
                    self._updates_and_safety_relists(updates)
                ) as stream_updates:
                    async for update in stream_updates:
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
                await self._wait(retry_delay(failures))

    async def _open(
        self, updates: DispatchStream | None, *, relist: bool
    ) -> DispatchStream:
        """Open a stream (unless setup left one) and wait until it is subscribed."""
        if relist:
            await self._relist_spacing()
        if updates is not None:
            return updates
        updates = self.api.open_stream()
        try:
            # The server has subscribed it: the listing misses nothing.
            await updates.wait_open()
        except BaseException:
            updates.cancel()
            raise
        return updates

    async def _updates_and_safety_relists(
        self, updates: DispatchStream
    ) -> AsyncGenerator[StreamUpdate]:
        """Yield the stream's updates; list again when the safety timer says so.

        Updates that arrive during such a listing wait in the stream and are
        applied after it, as after the listing that follows an open.
        """
        pending: asyncio.Future[StreamUpdate | None] | None = None
        # One waiter for the whole stream, not one per update.
        due: asyncio.Task[Any] | None = None
        try:
            iterator = aiter(updates)
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(anext(iterator, None))
                if due is None:
                    due = asyncio.ensure_future(self._relist_due.wait())
                await asyncio.wait((pending, due), return_when=asyncio.FIRST_COMPLETED)
                if pending.done():
                    update, pending = pending.result(), None
                    if update is None:
                        return  # the server ended the stream
                    yield update
                    continue
                due = None  # the listing re-arms (and clears) the event
                LOGGER.debug("Daily safety listing of microgrid %s", self.microgrid_id)
                await self._relist_spacing()
                await self._relist()
        finally:
            if due is not None:
                due.cancel()
            if pending is not None:
                # Also fetches the error of one that ended with the stream.
                pending.cancel()
                with suppress(Exception, asyncio.CancelledError):
                    await pending

    @callback
    def _arm_safety_relist(self) -> None:
        """List again in about SAFETY_RELIST (from now: a listing just ended)."""
        self._cancel_safety_relist()
        self._relist_due.clear()
        jitter = SAFETY_RELIST_JITTER.total_seconds()
        seconds = SAFETY_RELIST.total_seconds() + random.uniform(-jitter, jitter)
        self._unsub_safety = async_call_later(
            self.hass, seconds, self._safety_relist_due
        )

    @callback
    def _safety_relist_due(self, _now: datetime) -> None:
        self._unsub_safety = None
        self._relist_due.set()

    @callback
    def _cancel_safety_relist(self) -> None:
        if self._unsub_safety is not None:
            self._unsub_safety()
            self._unsub_safety = None

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
        self._arm_safety_relist()
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
