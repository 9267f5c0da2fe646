"""Entities of subentries: added, changed and removed without reloading the entry.

They sit on the microgrid's device and are not linked to their subentry in
the registries: HA lets a device belong to one subentry only, and linking
would move the microgrid's device into the first subentry. So this module
removes an entity itself when its subentry goes.
"""

from __future__ import annotations

from collections.abc import Callable

from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import DOMAIN
from .coordinator import FrequenzDispatchCoordinator
from .data import FrequenzDispatchConfigEntry
from .subentry_entity import SubentryEntity

type EntityFactory = Callable[
    [FrequenzDispatchCoordinator, ConfigSubentry], SubentryEntity
]


@callback
def async_follow_subentries(
    hass: HomeAssistant,
    entry: FrequenzDispatchConfigEntry,
    platform: str,
    subentry_type: str,
    factory: EntityFactory,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Keep one entity per subentry of the type, from now until the entry unloads.

    The entry's update listener runs on every subentry change: a new
    subentry gets its entity, a changed one is applied in place, a removed
    one's entity leaves the registry (and so HA).
    """
    coordinator = entry.runtime_data
    registry = er.async_get(hass)
    entities: dict[str, SubentryEntity] = {}

    def wanted() -> dict[str, ConfigSubentry]:
        return {
            subentry_id: subentry
            for subentry_id, subentry in entry.subentries.items()
            if subentry.subentry_type == subentry_type
        }

    @callback
    def sync() -> None:
        current = wanted()
        for subentry_id in [i for i in entities if i not in current]:
            del entities[subentry_id]
            entity_id = registry.async_get_entity_id(platform, DOMAIN, subentry_id)
            if entity_id is not None:
                registry.async_remove(entity_id)
        for subentry_id, subentry in current.items():
            entity = entities.get(subentry_id)
            if entity is None:
                entity = entities[subentry_id] = factory(coordinator, subentry)
                async_add_entities([entity])
            elif entity.settings != (subentry.title, dict(subentry.data)):
                entity.async_reconfigure(subentry)

    async def updated(
        _hass: HomeAssistant, _entry: FrequenzDispatchConfigEntry
    ) -> None:
        sync()

    # Subentries removed while the entry was not loaded leave the registry.
    # Their unique id is the subentry id (a ULID, no "_"); every other entity's
    # has a "_" ("<microgrid id>_<key>", or an older "<entry id>_<key>").
    current = wanted()
    for reg_entry in er.async_entries_for_config_entry(registry, entry.entry_id):
        if (
            reg_entry.domain == platform
            and "_" not in reg_entry.unique_id
            and reg_entry.unique_id not in current
        ):
            registry.async_remove(reg_entry.entity_id)
    sync()
    entry.async_on_unload(entry.add_update_listener(updated))
