"""Value types shared by the scheduling model's modules.

Public names are re-exported by the package :mod:`.schedule`; import them from there.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Final

MERGE_CAP: Final = 1000
"""Most occurrences merged into one run in either direction per evaluation.

Chains of touching windows can be unbounded (every minute, two minutes long,
forever); past this many occurrences a run's edge is reported provisionally.
"""

MERGE_WORK_CAP: Final = 2000
"""Most walking steps (about 0.5 us each) spent merging in either direction.

Sparse rules with windows of years chain few occurrences over centuries;
past this much work a run's edge is reported provisionally, as for
:data:`MERGE_CAP`. Merging inside a ``runs_between`` range is never capped.
"""


class InvalidDispatchError(ValueError):
    """The dispatch cannot be scheduled: its timing fields are malformed."""


class NeverOccursError(InvalidDispatchError):
    """The recurrence rule is well-formed but never produces an occurrence.

    Malformed for a dispatch with a duration; an open-ended dispatch ignores
    its rule (it runs from its start time), so for it this is no error.
    """


@dataclass(frozen=True, slots=True)
class Run:
    """One continuous run: overlapping or back-to-back windows merged.

    ``end`` is the earliest instant at which the run may end; re-check there.
    It is exact unless the run is a chain of more than :data:`MERGE_CAP`
    touching windows (or took more than :data:`MERGE_WORK_CAP` steps to
    follow): then it is the end of the chain found so far and
    ``Schedule.run_at(end)`` reports the continuation. Likewise ``start`` is
    the earliest start found. ``end is None`` means the run never ends.
    """

    start: datetime
    end: datetime | None

    def contains(self, instant: datetime) -> bool:
        """Tell whether ``instant`` lies in ``[start, end)``.

        Args:
            instant: An aware datetime.

        Returns:
            True if the run covers ``instant``.

        """
        return self.start <= instant and (self.end is None or instant < self.end)
