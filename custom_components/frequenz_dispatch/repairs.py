"""Repair flows: removing a second config entry for one microgrid."""

from typing import Any

from homeassistant.components.repairs import ConfirmRepairFlow, RepairsFlow
from homeassistant.core import HomeAssistant


class RemoveDuplicateEntryFlow(ConfirmRepairFlow):
    """Confirm, then remove the duplicate entry (the issue then goes away)."""

    def __init__(self, entry_id: str) -> None:
        """Remember which entry to remove."""
        super().__init__()
        self._entry_id = entry_id

    async def async_step_confirm(
        self, user_input: dict[str, str] | None = None
    ) -> Any:  # RepairsFlowResult; FlowResult on older HA
        """Remove the entry once the user confirms."""
        if user_input is not None and self.hass.config_entries.async_get_entry(
            self._entry_id
        ):
            await self.hass.config_entries.async_remove(self._entry_id)
        return await super().async_step_confirm(user_input)


async def async_create_fix_flow(
    hass: HomeAssistant, issue_id: str, data: dict[str, Any] | None
) -> RepairsFlow:
    """The flow that fixes one of our fixable issues."""
    return RemoveDuplicateEntryFlow(str((data or {})["entry_id"]))
