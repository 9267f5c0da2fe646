"""Filtering of ListMicrogridDispatches requests."""

from collections.abc import Iterable

from frequenz.api.common.v1alpha8.types.interval_pb2 import Interval
from frequenz.api.dispatch.v1 import dispatch_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from .paging import nanos

_Category = tuple[int, tuple[str, int] | None]


def _in_interval(stamp: Timestamp | None, interval: Interval) -> bool:
    """Check `from <= stamp < to` for an API interval (either bound optional).

    Args:
        stamp: The value; None stands for "never" (an open end).
        interval: An `Interval` protobuf.

    Returns:
        Whether the value lies in the interval.

    """
    lower_set = interval.HasField("start_time")
    upper_set = interval.HasField("end_time")
    if stamp is None:
        return not upper_set
    value = nanos(stamp)
    if lower_set and value < nanos(interval.start_time):
        return False
    return not (upper_set and value >= nanos(interval.end_time))


def _categories(target: dispatch_pb2.TargetComponents) -> set[_Category] | None:
    """List the categories (with optional type) of a target.

    Args:
        target: The target.

    Returns:
        The categories, or None if the target is not category based.

    """
    match target.WhichOneof("components"):
        case "component_categories":
            return {(cat, None) for cat in target.component_categories.categories}
        case "component_categories_types":
            result: set[_Category] = set()
            for entry in target.component_categories_types.categories:
                kind = entry.WhichOneof("type")
                type_ = None if kind is None else (kind, getattr(entry, kind))
                result.add((entry.category, type_))
            return result
        case _:
            return None


def targets_overlap(
    dispatch_target: dispatch_pb2.TargetComponents,
    wanted: dispatch_pb2.TargetComponents,
) -> bool:
    """Check whether a dispatch's target shares a component or category.

    Ids match ids; categories match categories, where a filter category without
    a type matches every type of that category (and vice versa).

    Args:
        dispatch_target: The dispatch's target.
        wanted: The filter's target.

    Returns:
        Whether they overlap.

    """
    if wanted.WhichOneof("components") == "component_ids":
        if dispatch_target.WhichOneof("components") != "component_ids":
            return False
        return bool(
            set(dispatch_target.component_ids.ids) & set(wanted.component_ids.ids)
        )
    have, want = _categories(dispatch_target), _categories(wanted)
    if not have or not want:
        return False
    return any(
        category == w_category and (type_ is None or w_type is None or type_ == w_type)
        for category, type_ in have
        for w_category, w_type in want
    )


def matches_query(dispatch: dispatch_pb2.Dispatch, queries: Iterable[str]) -> bool:
    """Check the free-text queries (OR-combined).

    `#<int>` matches the dispatch id; anything else matches case-insensitively
    as a substring of the type (including a leading `#` that is not an id).

    Args:
        dispatch: The dispatch.
        queries: The queries; empty matches everything.

    Returns:
        Whether any query matches.

    """
    queries = list(queries)
    if not queries:
        return True
    type_ = dispatch.data.type.lower()
    for query in queries:
        if query.startswith("#") and query[1:].isdigit():
            if int(query[1:]) == dispatch.metadata.dispatch_id:
                return True
        elif query.lower() in type_:
            return True
    return False


def matches(dispatch: dispatch_pb2.Dispatch, flt: dispatch_pb2.DispatchFilter) -> bool:
    """Check a dispatch against a list filter.

    Args:
        dispatch: The dispatch.
        flt: The filter.

    Returns:
        Whether the dispatch passes every given criterion.

    """
    data, meta = dispatch.data, dispatch.metadata
    checks = [
        not flt.dispatch_ids or meta.dispatch_id in flt.dispatch_ids,
        not flt.HasField("is_active") or data.is_active == flt.is_active,
        not flt.HasField("is_dry_run") or data.is_dry_run == flt.is_dry_run,
        flt.WhichOneof("recurrence") != "is_recurring"
        or (data.recurrence.freq != 0) == flt.is_recurring,
        not flt.targets or any(targets_overlap(data.target, t) for t in flt.targets),
        not flt.HasField("start_time_interval")
        or _in_interval(data.start_time, flt.start_time_interval),
        not flt.HasField("end_time_interval")
        or _in_interval(
            meta.end_time if meta.HasField("end_time") else None, flt.end_time_interval
        ),
        not flt.HasField("update_time_interval")
        or _in_interval(meta.update_time, flt.update_time_interval),
    ]
    return all(checks) and matches_query(dispatch, flt.queries)
