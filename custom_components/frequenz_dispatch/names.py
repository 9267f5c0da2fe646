"""Names a person reads for dispatch types ("BATTERY_CHARGE" → "Battery charge").

Known types have a translation under `selector.dispatch_type.options.<key>`
in strings.json; any other type gets a readable form of its raw text. Entity
ids and every machine-facing field keep the raw type.
"""

from __future__ import annotations

import re
from typing import Final

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.translation import async_get_cached_translations

from .const import DOMAIN

KNOWN_TYPES: Final = (
    # the sample (dispatch_sim/sample_seed.json)
    "BATTERY_CHARGE",
    "BATTERY_DISCHARGE",
    "PV_CURTAILMENT",
    "EV_CHARGING_LIMIT",
    "FCR_PREQUALIFICATION",
    "DRY_RUN_TEST",
    # common in Frequenz deployments
    "FCR",
    "AFRR",
    "PEAK_SHAVING",
    "LOAD_SHIFTING",
    "SELF_CONSUMPTION",
    "GRID_FEED_IN_LIMIT",
    "SOC_MANAGEMENT",
)
"""Types with their own translation key (the key is the type in lower case)."""

_ACRONYMS: Final = frozenset(
    {"AC", "AFRR", "BESS", "CHP", "DC", "EV", "FCR", "FFR", "HVAC", "MFRR", "PV"}
    | {"SOC", "UPS"}
)
_WORD_SEPARATORS: Final = re.compile(r"[\s_\-.]+")


def type_key(dispatch_type: str) -> str | None:
    """The translation key of a known type, None for any other."""
    return dispatch_type.lower() if dispatch_type in KNOWN_TYPES else None


def readable_type(dispatch_type: str) -> str:
    """A readable form of any raw type: "FCR_PREQUALIFICATION" → "FCR prequalification".

    Words are split at `_`, `-`, `.` and spaces; known abbreviations stay in
    capitals, other all-capital words are lowered, the first word starts with
    a capital. Mixed-case words are kept as they are.
    """
    words = [word for word in _WORD_SEPARATORS.split(dispatch_type) if word]
    if not words:
        return dispatch_type
    readable: list[str] = []
    for word in words:
        upper = word.upper()
        if upper in _ACRONYMS:
            readable.append(upper)
        elif word in (upper, word.lower()):
            readable.append(word.lower())
        else:
            readable.append(word)
    first = readable[0]
    readable[0] = first[:1].upper() + first[1:]
    return " ".join(readable)


@callback
def type_name(hass: HomeAssistant, dispatch_type: str) -> str:
    """The name of a type in HA's language (its translation, or readable form)."""
    if (key := type_key(dispatch_type)) is not None:
        translations = async_get_cached_translations(
            hass, hass.config.language, "selector", DOMAIN
        )
        name = translations.get(
            f"component.{DOMAIN}.selector.dispatch_type.options.{key}"
        )
        if name:
            return name
    return readable_type(dispatch_type)
