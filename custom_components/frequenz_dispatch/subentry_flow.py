"""Subentry flows: add or change a payload sensor or a type + target group.

Both are subentries of the microgrid's entry ("Add …" on the integration
page); their entities come and go without reloading the entry (subentries.py).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

from homeassistant.config_entries import ConfigSubentryFlow, SubentryFlowResult
from homeassistant.helpers.selector import (
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
)

# Voluptuous schemas work at runtime on every HA version (see config_flow.py).
import voluptuous as vol

from .const import (
    CONF_DISPATCH_TYPE,
    CONF_DRY_RUNS,
    CONF_KIND,
    CONF_MERGE,
    CONF_PAYLOAD_KEY,
    CONF_TARGET,
    CONF_UNIT,
)
from .lookup import loaded_coordinator
from .names import type_name
from .setpoints import DryRuns, Kind, Merge, parse_target, unit_for


def _choice(options: list[str], key: str) -> SelectSelector:
    return SelectSelector(
        SelectSelectorConfig(
            options=options, translation_key=key, mode=SelectSelectorMode.DROPDOWN
        )
    )


class _SubentryFlow(ConfigSubentryFlow):
    """The steps both subentry types share: one form for add and reconfigure."""

    @abstractmethod
    def _fields(self) -> dict[vol.Marker, Any]:
        """The form's fields, for add and reconfigure."""

    def _check(self, data: dict[str, Any]) -> dict[str, str]:
        """Normalise `data` in place; return form errors (empty: fine)."""
        data[CONF_DISPATCH_TYPE] = str(data.get(CONF_DISPATCH_TYPE, "")).strip()
        if not data[CONF_DISPATCH_TYPE]:
            return {CONF_DISPATCH_TYPE: "invalid_type"}
        try:
            target = parse_target(str(data.get(CONF_TARGET) or ""))
        except ValueError:
            return {CONF_TARGET: "invalid_target"}
        data[CONF_TARGET] = "" if target is None else str(target)
        return {}

    @abstractmethod
    def _title(self, data: Mapping[str, Any]) -> str:
        """The subentry's title (its entity's name)."""

    def _type_selector(self) -> SelectSelector:
        """The known types, and any other typed in."""
        hass = self.hass
        coordinator = loaded_coordinator(hass, self._entry_id)
        known = sorted(coordinator.known_types()) if coordinator is not None else []
        return SelectSelector(
            SelectSelectorConfig(
                options=[
                    SelectOptionDict(
                        value=dispatch_type,
                        label=f"{type_name(hass, dispatch_type)} ({dispatch_type})",
                    )
                    for dispatch_type in known
                ],
                custom_value=True,
                mode=SelectSelectorMode.DROPDOWN,
            )
        )

    def _show(
        self, step_id: str, values: Mapping[str, Any], errors: dict[str, str]
    ) -> SubentryFlowResult:
        return self.async_show_form(
            step_id=step_id,
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema(self._fields()),  # type: ignore[arg-type,unused-ignore]
                dict(values),
            ),
            errors=errors,
        )

    async def async_step_user(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Add one."""
        if user_input is None:
            return self._show("user", {}, {})
        data = dict(user_input)
        if errors := self._check(data):
            return self._show("user", user_input, errors)
        return self.async_create_entry(title=self._title(data), data=data)

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Change one; its entity keeps its id and follows at once."""
        subentry = self._get_reconfigure_subentry()
        if user_input is None:
            return self._show("reconfigure", subentry.data, {})
        data = dict(user_input)
        if errors := self._check(data):
            return self._show("reconfigure", user_input, errors)
        return self.async_update_and_abort(
            self._get_entry(), subentry, title=self._title(data), data=data
        )


class SetpointSubentryFlow(_SubentryFlow):
    """A sensor showing one payload value of the running dispatches of a type."""

    def _fields(self) -> dict[vol.Marker, Any]:
        return {
            vol.Required(CONF_DISPATCH_TYPE): self._type_selector(),
            vol.Required(CONF_PAYLOAD_KEY): TextSelector(),
            vol.Optional(CONF_TARGET): TextSelector(),
            vol.Required(CONF_KIND, default=Kind.NONE.value): _choice(
                [kind.value for kind in Kind], "setpoint_kind"
            ),
            vol.Optional(CONF_UNIT): TextSelector(),
            vol.Required(CONF_MERGE, default=Merge.LAST_STARTED.value): _choice(
                [rule.value for rule in Merge], "merge"
            ),
            vol.Required(CONF_DRY_RUNS, default=DryRuns.INTEGRATION.value): _choice(
                [value.value for value in DryRuns], "dry_runs"
            ),
        }

    def _check(self, data: dict[str, Any]) -> dict[str, str]:
        if errors := super()._check(data):
            return errors
        path = str(data.get(CONF_PAYLOAD_KEY, "")).strip()
        if not path or any(not step for step in path.split(".")):
            return {CONF_PAYLOAD_KEY: "invalid_payload_key"}
        data[CONF_PAYLOAD_KEY] = path
        try:
            unit = unit_for(Kind(data[CONF_KIND]), str(data.get(CONF_UNIT) or ""))
        except ValueError:
            return {CONF_UNIT: "invalid_unit"}
        data[CONF_UNIT] = unit or ""
        return {}

    def _title(self, data: Mapping[str, Any]) -> str:
        title = (
            f"{type_name(self.hass, data[CONF_DISPATCH_TYPE])} {data[CONF_PAYLOAD_KEY]}"
        )
        if data[CONF_TARGET]:
            title += f" on {data[CONF_TARGET]}"
        return title


class GroupSubentryFlow(_SubentryFlow):
    """A binary sensor: on while a dispatch of a type runs on one target."""

    def _fields(self) -> dict[vol.Marker, Any]:
        return {
            vol.Required(CONF_DISPATCH_TYPE): self._type_selector(),
            vol.Required(CONF_TARGET): TextSelector(),
            vol.Required(CONF_DRY_RUNS, default=DryRuns.INTEGRATION.value): _choice(
                [value.value for value in DryRuns], "dry_runs"
            ),
        }

    def _check(self, data: dict[str, Any]) -> dict[str, str]:
        if errors := super()._check(data):
            return errors
        if not data[CONF_TARGET]:
            return {CONF_TARGET: "invalid_target"}
        return {}

    def _title(self, data: Mapping[str, Any]) -> str:
        return (
            f"{type_name(self.hass, data[CONF_DISPATCH_TYPE])} on {data[CONF_TARGET]}"
            " running"
        )
