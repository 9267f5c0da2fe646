"""Base of the entities a subentry adds: payload sensors and type + target groups.

Each follows the running dispatches of one type (`signal_type_runs`), picks
those it matches (setpoints.py) and writes its state only when what it shows
changed. A reconfigured subentry is applied in place: same entity, no reload.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.dispatcher import async_dispatcher_connect

from .const import (
    CONF_DISPATCH_TYPE,
    CONF_DRY_RUN_COUNTS,
    CONF_DRY_RUNS,
    CONF_TARGET,
    LOGGER,
    signal_type_runs,
)
from .coordinator import FrequenzDispatchCoordinator
from .entity import FrequenzDispatchEntity
from .setpoints import Contribution, DryRuns, parse_target, select


class SubentryEntity(FrequenzDispatchEntity):
    """An entity configured by one subentry; unique id = the subentry id."""

    def __init__(
        self, coordinator: FrequenzDispatchCoordinator, subentry: ConfigSubentry
    ) -> None:
        """Take the subentry's settings."""
        super().__init__(coordinator, subentry.subentry_id)
        self._attr_unique_id = subentry.subentry_id
        self._unsub: Callable[[], None] | None = None
        self._shown: tuple[Any, ...] | None = None
        self._logged: set[tuple[int, str]] = set()
        self.settings: tuple[str, dict[str, Any]] = ("", {})
        self.dispatch_type = ""
        self._apply(subentry)

    @callback
    def _apply(self, subentry: ConfigSubentry) -> None:
        """Read the subentry (name, type, target, dry runs, the subclass's own)."""
        data = dict(subentry.data)
        self.settings = (subentry.title, data)
        self._attr_name = subentry.title
        self.dispatch_type = str(data[CONF_DISPATCH_TYPE])
        self._target = parse_target(str(data.get(CONF_TARGET) or ""))
        dry_runs = DryRuns(data.get(CONF_DRY_RUNS, DryRuns.INTEGRATION))
        if dry_runs is DryRuns.INTEGRATION:
            self._dry_runs_count = bool(
                self.coordinator.options.get(CONF_DRY_RUN_COUNTS, False)
            )
        else:
            self._dry_runs_count = dry_runs is DryRuns.COUNT
        self._configure(data)

    def _configure(self, data: dict[str, Any]) -> None:
        """Read the settings of the subclass."""

    def _compute(self) -> tuple[Any, ...]:
        """What the entity shows (compared to skip writes that change nothing)."""
        raise NotImplementedError

    def _chosen(self) -> list[Contribution]:
        """The running dispatches of the type that this entity follows."""
        coordinator = self.coordinator
        running: list[Contribution] = []
        for dispatch_id, run in coordinator.running().items():
            state = coordinator.state_of(dispatch_id)
            if state is None or state.item.dispatch.type != self.dispatch_type:
                continue
            attributes = coordinator.attributes(dispatch_id) or {}
            running.append(
                Contribution(
                    dispatch_id,
                    run.start,
                    state.item.dispatch.dry_run,
                    attributes.get("target") or [],
                    attributes.get("payload") or {},
                )
            )
        return select(running, target=self._target, dry_runs_count=self._dry_runs_count)

    @callback
    def _log_problems(self, problems: list[tuple[int, str]]) -> None:
        """One log line per dispatch and problem, until it is gone."""
        current = set(problems)
        for dispatch_id, problem in sorted(current - self._logged):
            LOGGER.warning(
                "%s: dispatch %s gives no value (%s); showing unknown",
                self.entity_id,
                dispatch_id,
                problem,
            )
        self._logged = current

    async def async_added_to_hass(self) -> None:
        """Follow the running dispatches of the type."""
        await super().async_added_to_hass()
        self._follow()
        self.async_on_remove(self._unfollow)

    @callback
    def _follow(self) -> None:
        self._unfollow()
        signal = signal_type_runs(
            self.coordinator.config_entry.entry_id, self.dispatch_type
        )
        self._unsub = async_dispatcher_connect(self.hass, signal, self._handle_change)
        self._shown = self._compute()

    @callback
    def _unfollow(self) -> None:
        if self._unsub is not None:
            self._unsub()
            self._unsub = None

    @callback
    def _handle_change(self) -> None:
        """Write the state only if what it shows changed."""
        shown = self._compute()
        if shown != self._shown:
            self._shown = shown
            self.async_write_ha_state()

    @callback
    def async_reconfigure(self, subentry: ConfigSubentry) -> None:
        """The subentry changed: show the new settings at once."""
        self._apply(subentry)
        if self.hass is None or self._unsub is None:
            return  # not added yet: it reads the settings when it is
        self._follow()
        self.async_write_ha_state()
        registry = er.async_get(self.hass)
        entry = registry.async_get(self.entity_id)
        if entry is not None and entry.original_name != self._attr_name:
            # HA 2026.x renames as it writes the state; older versions do not.
            registry.async_update_entity(self.entity_id, original_name=self._attr_name)
