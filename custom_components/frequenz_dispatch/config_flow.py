"""Config, reauth, reconfigure and options flows for Frequenz Dispatch."""

from __future__ import annotations

from collections.abc import Mapping
import math
from typing import Any

from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentryFlow,
    OptionsFlow,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)

# HA 2026.x types schemas as probatio schemas (absent in HA 2025.6); voluptuous
# ones work at runtime, hence the `type: ignore[arg-type,unused-ignore]` below.
import voluptuous as vol

from .api import (
    DispatchApi,
    DispatchAuthError,
    DispatchConnectionError,
    DispatchInvalidUrlError,
)
from .channel import MAX_KEY_LENGTH, InvalidServerUrl, parse_server_url, sendable
from .const import (
    CONF_API_KEY,
    CONF_DRY_RUN_COUNTS,
    CONF_MICROGRID_ID,
    CONF_SERVER_URL,
    CONF_SIGN_SECRET,
    DOMAIN,
    LOGGER,
    SUBENTRY_GROUP,
    SUBENTRY_SETPOINT,
)
from .data import FrequenzDispatchConfigEntry
from .migration import MINOR_VERSION
from .subentry_flow import GroupSubentryFlow, SetpointSubentryFlow

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


_MICROGRID_ID = NumberSelector(
    NumberSelectorConfig(min=1, step=1, mode=NumberSelectorMode.BOX)
)
USER_SCHEMA = vol.Schema(
    {**_connection_schema({}), vol.Required(CONF_MICROGRID_ID): _MICROGRID_ID}
)
_MAX_MICROGRID_ID = 2**64 - 1

_DETAIL = "error_detail"
"""Description placeholder saying what exactly is wrong (shown with the error)."""


class _FormError(Exception):
    """Input the form must refuse: `field` gets `error`, `detail` says why."""

    def __init__(self, field: str, error: str, detail: str = "") -> None:
        super().__init__(error)
        self.field = field
        self.error = error
        self.detail = detail


def _microgrid_id(value: Any) -> int:
    """A whole number within 1..2^64-1 (never rounded), else a form error.

    The form's number selector sends a float (or an int).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (
            isinstance(value, float)
            and not (math.isfinite(value) and value.is_integer())
        )
    ):
        raise _FormError(CONF_MICROGRID_ID, "invalid_microgrid_id")
    number = int(value)
    if not 1 <= number <= _MAX_MICROGRID_ID:
        raise _FormError(CONF_MICROGRID_ID, "invalid_microgrid_id")
    return number


def _secret_text(field: str, value: Any) -> str:
    """A key or secret as entered, without surrounding blanks."""
    text = str(value or "").strip()
    if len(text) > MAX_KEY_LENGTH:
        raise _FormError(field, "key_too_long", str(MAX_KEY_LENGTH))
    if not sendable(text):
        raise _FormError(field, "invalid_key_characters")
    return text


def _clean(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """Check form input and normalise it into config entry data."""
    url = str(user_input.get(CONF_SERVER_URL) or "").strip()
    try:
        parse_server_url(url)
    except InvalidServerUrl as err:
        raise _FormError(CONF_SERVER_URL, "invalid_url", str(err)) from None
    data: dict[str, Any] = {
        CONF_SERVER_URL: url,
        CONF_API_KEY: _secret_text(CONF_API_KEY, user_input.get(CONF_API_KEY)),
        CONF_MICROGRID_ID: _microgrid_id(user_input.get(CONF_MICROGRID_ID)),
    }
    if not data[CONF_API_KEY]:
        raise _FormError(CONF_API_KEY, "invalid_auth")
    if secret := _secret_text(CONF_SIGN_SECRET, user_input.get(CONF_SIGN_SECRET)):
        data[CONF_SIGN_SECRET] = secret
    return data


async def _check_connection(
    hass: HomeAssistant, data: Mapping[str, Any]
) -> dict[str, str]:
    """Ask the server for one page of dispatches; return form errors (empty = fine)."""
    try:
        api = await DispatchApi.async_open(
            data[CONF_SERVER_URL],
            data[CONF_API_KEY],
            data[CONF_MICROGRID_ID],
            data.get(CONF_SIGN_SECRET),
            run_blocking=hass.async_add_executor_job,
        )
    except DispatchInvalidUrlError as err:
        raise _FormError(CONF_SERVER_URL, "invalid_url", str(err)) from None
    # A key gRPC cannot send (DispatchAuthError here) was refused by _clean.
    try:
        async with api:
            await api.check_access()
    except DispatchAuthError:
        return {"base": "invalid_auth"}
    except DispatchConnectionError:
        return {"base": "cannot_connect"}
    except Exception:
        LOGGER.exception("Unexpected error while checking the Dispatch API")
        return {"base": "unknown"}
    return {}


class FrequenzDispatchConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up one config entry per microgrid."""

    VERSION = 1
    MINOR_VERSION = MINOR_VERSION
    """1.3: entry, entities and device identified by the microgrid (migration.py)."""

    _detail = ""

    @staticmethod
    @callback
    def async_get_options_flow(
        config_entry: FrequenzDispatchConfigEntry,
    ) -> FrequenzDispatchOptionsFlow:
        """Options of an existing entry."""
        return FrequenzDispatchOptionsFlow()

    @classmethod
    @callback
    def async_get_supported_subentry_types(
        cls, config_entry: ConfigEntry
    ) -> dict[str, type[ConfigSubentryFlow]]:
        """Payload sensors and type + target groups, added on the entry's page."""
        return {
            SUBENTRY_SETPOINT: SetpointSubentryFlow,
            SUBENTRY_GROUP: GroupSubentryFlow,
        }

    def _form(
        self,
        step_id: str,
        schema: Any,  # voluptuous, or probatio on newer HA
        errors: dict[str, str],
        placeholders: dict[str, str] | None = None,
    ) -> ConfigFlowResult:
        return self.async_show_form(
            step_id=step_id,
            data_schema=schema,
            errors=errors,
            description_placeholders={_DETAIL: self._detail, **(placeholders or {})},
        )

    async def _validate(self, user_input: Mapping[str, Any]) -> dict[str, Any]:
        """Clean and test the input; raise _FormError with the form's errors."""
        data = _clean(user_input)
        if errors := await _check_connection(self.hass, data):
            raise _FormError("base", errors["base"])
        return data

    def _refused(self, err: _FormError) -> dict[str, str]:
        self._detail = err.detail
        return {err.field: err.error}

    async def async_step_user(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the server, key and microgrid, then test them."""
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                microgrid_id = _microgrid_id(user_input.get(CONF_MICROGRID_ID))
                await self.async_set_unique_id(str(microgrid_id))
                self._abort_if_unique_id_configured()
                data = await self._validate(user_input)
                return self.async_create_entry(
                    title=f"Microgrid {microgrid_id}", data=data
                )
            except _FormError as err:
                errors = self._refused(err)
        return self._form(
            "user",
            self.add_suggested_values_to_schema(USER_SCHEMA, user_input),  # type: ignore[arg-type,unused-ignore]
            errors,
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
            kept = {k: v for k, v in entry.data.items() if k != CONF_SIGN_SECRET}
            try:
                data = await self._validate({**kept, **user_input})
                return self.async_update_reload_and_abort(entry, data=data)
            except _FormError as err:
                errors = self._refused(err)
        return self._form(
            "reauth_confirm",
            vol.Schema(
                {
                    vol.Required(CONF_API_KEY): _PASSWORD,
                    vol.Optional(CONF_SIGN_SECRET): _PASSWORD,
                }
            ),
            errors,
            {CONF_MICROGRID_ID: str(entry.data[CONF_MICROGRID_ID])},
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the URL, key or secret of an entry, keeping its entities.

        The microgrid stays: entering another one aborts.
        """
        entry = self._get_reconfigure_entry()
        microgrid_id = str(entry.data[CONF_MICROGRID_ID])
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                given = user_input.get(
                    CONF_MICROGRID_ID, int(entry.data[CONF_MICROGRID_ID])
                )
                await self.async_set_unique_id(str(_microgrid_id(given)))
                self._abort_if_unique_id_mismatch(reason="wrong_microgrid")
                data = await self._validate(
                    {**user_input, CONF_MICROGRID_ID: entry.data[CONF_MICROGRID_ID]}
                )
                return self.async_update_reload_and_abort(
                    entry, unique_id=microgrid_id, data=data
                )
            except _FormError as err:
                errors = self._refused(err)
        schema = vol.Schema(
            {
                **_connection_schema(entry.data),
                vol.Optional(CONF_MICROGRID_ID): _MICROGRID_ID,
            }
        )
        return self._form(
            "reconfigure",
            self.add_suggested_values_to_schema(
                schema,  # type: ignore[arg-type,unused-ignore]
                {
                    CONF_SERVER_URL: entry.data[CONF_SERVER_URL],
                    CONF_MICROGRID_ID: entry.data[CONF_MICROGRID_ID],
                },
            ),
            errors,
            {CONF_MICROGRID_ID: microgrid_id},
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
            data_schema=vol.Schema(  # type: ignore[arg-type,unused-ignore]
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
