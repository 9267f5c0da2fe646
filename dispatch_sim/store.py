"""In-memory dispatch storage, per microgrid, with change notifications."""

from collections.abc import Callable
import logging

from frequenz.api.dispatch.v1 import dispatch_pb2
from frequenz.client.common.streaming import Event

from .convert import now_utc, to_timestamp
from .endtime import compute_end_time

_LOGGER = logging.getLogger(__name__)

Listener = Callable[[int, Event, dispatch_pb2.Dispatch], None]
"""Called with (microgrid_id, event, dispatch) after every change."""


class DispatchNotFoundError(LookupError):
    """Raised when a dispatch id is unknown in a microgrid (NOT_FOUND)."""


class DispatchStore:
    """Dispatches as protobufs: microgrid id -> dispatch id -> `Dispatch`.

    Every accessor returns copies, so callers cannot change stored state.
    """

    def __init__(self) -> None:
        self._data: dict[int, dict[int, dispatch_pb2.Dispatch]] = {}
        self._last_id = 0
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        """Register a change listener.

        Args:
            listener: Called after every create, update and delete.

        """
        self._listeners.append(listener)

    def _notify(
        self, microgrid_id: int, event: Event, dispatch: dispatch_pb2.Dispatch
    ) -> None:
        """Tell every listener about a change.

        Args:
            microgrid_id: The microgrid.
            event: What happened.
            dispatch: The dispatch state (after the change; last state if deleted).

        """
        for listener in self._listeners:
            copy = dispatch_pb2.Dispatch()
            copy.CopyFrom(dispatch)
            listener(microgrid_id, event, copy)

    def _grid(self, microgrid_id: int) -> dict[int, dispatch_pb2.Dispatch]:
        """Return the (live) dispatch map of a microgrid, creating it if needed.

        Args:
            microgrid_id: The microgrid.

        Returns:
            The map.

        """
        return self._data.setdefault(microgrid_id, {})

    def _find(self, microgrid_id: int, dispatch_id: int) -> dispatch_pb2.Dispatch:
        """Return the live stored dispatch.

        Args:
            microgrid_id: The microgrid.
            dispatch_id: The dispatch id.

        Returns:
            The stored protobuf (not a copy).

        Raises:
            DispatchNotFoundError: If there is no such dispatch.

        """
        found = self._data.get(microgrid_id, {}).get(dispatch_id)
        if found is None:
            raise DispatchNotFoundError(
                f"dispatch {dispatch_id} not found in microgrid {microgrid_id}"
            )
        return found

    def get(self, microgrid_id: int, dispatch_id: int) -> dispatch_pb2.Dispatch:
        """Return a copy of one dispatch.

        Args:
            microgrid_id: The microgrid.
            dispatch_id: The dispatch id.

        Returns:
            The dispatch.

        """
        copy = dispatch_pb2.Dispatch()
        copy.CopyFrom(self._find(microgrid_id, dispatch_id))
        return copy

    def all(self, microgrid_id: int) -> list[dispatch_pb2.Dispatch]:
        """Return copies of all dispatches of a microgrid, by ascending id.

        Args:
            microgrid_id: The microgrid.

        Returns:
            The dispatches.

        """
        grid = self._data.get(microgrid_id, {})
        return [self.get(microgrid_id, dispatch_id) for dispatch_id in sorted(grid)]

    def create(
        self, microgrid_id: int, data: dispatch_pb2.DispatchData
    ) -> dispatch_pb2.Dispatch:
        """Store a new dispatch with a fresh id and current timestamps.

        Args:
            microgrid_id: The microgrid.
            data: The (already validated) dispatch data.

        Returns:
            A copy of the stored dispatch.

        """
        self._last_id += 1
        now = to_timestamp(now_utc())
        dispatch = dispatch_pb2.Dispatch()
        dispatch.data.CopyFrom(data)
        dispatch.metadata.dispatch_id = self._last_id
        dispatch.metadata.create_time.CopyFrom(now)
        dispatch.metadata.update_time.CopyFrom(now)
        _set_end_time(dispatch)
        self._grid(microgrid_id)[self._last_id] = dispatch
        self._notify(microgrid_id, Event.CREATED, dispatch)
        return self.get(microgrid_id, self._last_id)

    def replace_data(
        self, microgrid_id: int, dispatch_id: int, data: dispatch_pb2.DispatchData
    ) -> dispatch_pb2.Dispatch:
        """Replace a dispatch's data and bump its update time.

        Args:
            microgrid_id: The microgrid.
            dispatch_id: The dispatch id.
            data: The new (already validated) data.

        Returns:
            A copy of the updated dispatch.

        """
        dispatch = self._find(microgrid_id, dispatch_id)
        dispatch.data.CopyFrom(data)
        dispatch.metadata.update_time.CopyFrom(to_timestamp(now_utc()))
        _set_end_time(dispatch)
        self._notify(microgrid_id, Event.UPDATED, dispatch)
        return self.get(microgrid_id, dispatch_id)

    def delete(self, microgrid_id: int, dispatch_id: int) -> dispatch_pb2.Dispatch:
        """Remove a dispatch.

        Args:
            microgrid_id: The microgrid.
            dispatch_id: The dispatch id.

        Returns:
            The last state of the removed dispatch.

        """
        dispatch = self._find(microgrid_id, dispatch_id)
        del self._data[microgrid_id][dispatch_id]
        self._notify(microgrid_id, Event.DELETED, dispatch)
        return dispatch

    def insert_raw(
        self, microgrid_id: int, dispatch: dispatch_pb2.Dispatch, *, notify: bool
    ) -> int:
        """Store a protobuf as-is, without validation.

        A zero `dispatch_id` gets a fresh id, unset create/update times get the
        current time; everything else (including `end_time`) is kept.

        Args:
            microgrid_id: The microgrid.
            dispatch: The dispatch; it is copied.
            notify: Whether to emit CREATED (or UPDATED if the id existed).

        Returns:
            The dispatch id.

        """
        stored = dispatch_pb2.Dispatch()
        stored.CopyFrom(dispatch)
        meta = stored.metadata
        if meta.dispatch_id == 0:
            self._last_id += 1
            meta.dispatch_id = self._last_id
        self._last_id = max(self._last_id, meta.dispatch_id)
        now = to_timestamp(now_utc())
        if not meta.HasField("create_time"):
            meta.create_time.CopyFrom(now)
        if not meta.HasField("update_time"):
            meta.update_time.CopyFrom(now)
        grid = self._grid(microgrid_id)
        event = Event.UPDATED if meta.dispatch_id in grid else Event.CREATED
        grid[meta.dispatch_id] = stored
        if notify:
            self._notify(microgrid_id, event, stored)
        return int(meta.dispatch_id)


def _set_end_time(dispatch: dispatch_pb2.Dispatch) -> None:
    """Set or clear `metadata.end_time` from the data.

    Args:
        dispatch: The dispatch to update in place.

    """
    end = compute_end_time(dispatch.data)
    if end is None:
        dispatch.metadata.ClearField("end_time")
    else:
        dispatch.metadata.end_time.CopyFrom(to_timestamp(end))
