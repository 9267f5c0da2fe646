"""Config, reauth, reconfigure and options flows for Frequenz Dispatch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.config_entries import (
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.core import callback
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
import voluptuous as vol

from .api import (
    DispatchApi,
    DispatchAuthError,
    DispatchConnectionError,
    DispatchInvalidUrlError,
)
from .const import (
    CONF_API_KEY,
    CONF_DRY_RUN_COUNTS,
    CONF_MICROGRID_ID,
    CONF_SERVER_URL,
    CONF_SIGN_SECRET,
    DOMAIN,
    LOGGER,
)
from .data import FrequenzDispatchConfigEntry

_PASSWORD = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
_URL = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))


def _connection_schema(defaults: Mapping[str, Any]) -> dict[vol.Marker, Any]:
    return {
        vol.Required(
            CONF_SERVER_URL, default=defaults.get(CONF_SERVER_URL, vol.UNDEFINED)
        ): _URL,
        vol.Required(CONF_API_KEY): _PASSWORD,
        vol.Optional(CONF_SIGN_SECRET): _PASSWORD,
    }


USER_SCHEMA = vol.Schema(
    {
        **_connection_schema({}),
        vol.Required(CONF_MICROGRID_ID): NumberSelector(
            NumberSelectorConfig(min=1, step=1, mode=NumberSelectorMode.BOX)
        ),
    }
)


async def _check_connection(data: Mapping[str, Any]) -> dict[str, str]:
    """List the microgrid's dispatches once; return form errors (empty = fine)."""
    if not data[CONF_API_KEY]:
        # The client refuses to build without a key (TypeError); the server
        # would reject a blank one anyway.
        return {CONF_API_KEY: "invalid_auth"}
    try:
        api = DispatchApi(
            data[CONF_SERVER_URL],
            data[CONF_API_KEY],
            int(data[CONF_MICROGRID_ID]),
            data.get(CONF_SIGN_SECRET),
        )
    except DispatchInvalidUrlError:
        return {CONF_SERVER_URL: "invalid_url"}
    try:
        async with api:
            await api.list_all()
    except DispatchAuthError:
        return {"base": "invalid_auth"}
    except DispatchConnectionError:
        return {"base": "cannot_connect"}
    except Exception:
        LOGGER.exception("Unexpected error while checking the Dispatch API")
        return {"base": "unknown"}
    return {}


def _clean(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise form input into config entry data."""
    data: dict[str, Any] = {
        CONF_SERVER_URL: str(user_input[CONF_SERVER_URL]).strip(),
        CONF_API_KEY: str(user_input[CONF_API_KEY]).strip(),
        CONF_MICROGRID_ID: int(user_input[CONF_MICROGRID_ID]),
    }
    if secret := str(user_input.get(CONF_SIGN_SECRET) or "").strip():
        data[CONF_SIGN_SECRET] = secret
    return data


class FrequenzDispatchConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up one config entry per (server, microgrid)."""

    VERSION = 1

    @staticmethod
    @callback
    def async_get_options_flow(
        config_entry: FrequenzDispatchConfigEntry,
    ) -> FrequenzDispatchOptionsFlow:
        """Options of an existing entry."""
        return FrequenzDispatchOptionsFlow()

    async def async_step_user(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the server, key and microgrid, then test them."""
        errors: dict[str, str] = {}
        if user_input is not None:
            data = _clean(user_input)
            await self.async_set_unique_id(
                f"{data[CONF_SERVER_URL]}#{data[CONF_MICROGRID_ID]}"
            )
            self._abort_if_unique_id_configured()
            if not (errors := await _check_connection(data)):
                return self.async_create_entry(
                    title=f"Microgrid {data[CONF_MICROGRID_ID]}", data=data
                )
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(USER_SCHEMA, user_input),
            errors=errors,
        )

    async def async_step_reauth(
        self, entry_data: Mapping[str, Any]
    ) -> ConfigFlowResult:
        """The server rejected the key: ask for a new one."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the new API key (and signing secret)."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            # The secret is what the user entered now: omitted or blank clears it.
            data = {k: v for k, v in entry.data.items() if k != CONF_SIGN_SECRET}
            data.update(_clean({**data, **user_input}))
            if not (errors := await _check_connection(data)):
                return self.async_update_reload_and_abort(entry, data=data)
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema(
                {
                    vol.Required(CONF_API_KEY): _PASSWORD,
                    vol.Optional(CONF_SIGN_SECRET): _PASSWORD,
                }
            ),
            description_placeholders={
                CONF_MICROGRID_ID: str(entry.data[CONF_MICROGRID_ID])
            },
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the URL, key or secret of an entry, keeping its entities."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            data = _clean(
                {**user_input, CONF_MICROGRID_ID: entry.data[CONF_MICROGRID_ID]}
            )
            unique_id = f"{data[CONF_SERVER_URL]}#{data[CONF_MICROGRID_ID]}"
            if unique_id != entry.unique_id:
                # A new URL must not collide with another entry.
                await self.async_set_unique_id(unique_id)
                self._abort_if_unique_id_configured()
            if not (errors := await _check_connection(data)):
                return self.async_update_reload_and_abort(
                    entry, unique_id=unique_id, data=data
                )
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema(_connection_schema(entry.data)),
                {CONF_SERVER_URL: entry.data[CONF_SERVER_URL]},
            ),
            errors=errors,
        )


class FrequenzDispatchOptionsFlow(OptionsFlow):
    """Options: whether dry-run dispatches count for the per-type sensors."""

    async def async_step_init(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Show and store the options."""
        if user_input is not None:
            return self.async_create_entry(data=user_input)
        return self.async_show_form(
            step_id="init",
            data_schema=vol.Schema(
                {
                    vol.Required(
                        CONF_DRY_RUN_COUNTS,
                        default=self.config_entry.options.get(
                            CONF_DRY_RUN_COUNTS, False
                        ),
                    ): bool,
                }
            ),
        )
