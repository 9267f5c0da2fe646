"""Entities of subentries: added, changed and removed without reloading the entry."""

from __future__ import annotations

from collections.abc import Callable

from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import FrequenzDispatchCoordinator
from .data import FrequenzDispatchConfigEntry
from .subentry_entity import SubentryEntity

type EntityFactory = Callable[
    [FrequenzDispatchCoordinator, ConfigSubentry], SubentryEntity
]


@callback
def async_follow_subentries(
    entry: FrequenzDispatchConfigEntry,
    subentry_type: str,
    factory: EntityFactory,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add an entity per subentry of the type, now and whenever one is added.

    The entry's update listener runs on every subentry change: a new
    subentry gets its entity, a changed one is applied in place. A removed
    one needs nothing: HA removes its entities from the registry, which
    removes them.
    """
    coordinator = entry.runtime_data
    entities: dict[str, SubentryEntity] = {}

    @callback
    def sync() -> None:
        wanted = {
            subentry_id: subentry
            for subentry_id, subentry in entry.subentries.items()
            if subentry.subentry_type == subentry_type
        }
        for subentry_id in [i for i in entities if i not in wanted]:
            del entities[subentry_id]
        for subentry_id, subentry in wanted.items():
            entity = entities.get(subentry_id)
            if entity is None:
                entity = entities[subentry_id] = factory(coordinator, subentry)
                async_add_entities([entity], config_subentry_id=subentry_id)
            elif entity.settings != (subentry.title, dict(subentry.data)):
                entity.async_reconfigure(subentry)

    async def updated(
        _hass: HomeAssistant, _entry: FrequenzDispatchConfigEntry
    ) -> None:
        sync()

    sync()
    entry.async_on_unload(entry.add_update_listener(updated))
