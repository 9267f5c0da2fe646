"""The run ledger on its own (HA-free): what is told, and when a run is the same run."""

from datetime import UTC, datetime, timedelta

from custom_components.frequenz_dispatch.ledger import RunLedger, Transition
from custom_components.frequenz_dispatch.schedule import Run

T = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def _kinds(transitions: list[Transition[str]]) -> list[tuple[str, int, str]]:
    return [
        ("started" if t.started else "stopped", t.run.dispatch_id, t.run.subject)
        for t in transitions
    ]


def test_a_new_run_starts_and_a_missing_one_stops() -> None:
    ledger: RunLedger[str] = RunLedger()
    shown, transitions = ledger.update(1, Run(T, T + H), "v1")
    assert shown == Run(T, T + H)
    assert _kinds(transitions) == [("started", 1, "v1")]
    assert ledger.changed == {1}
    _shown, transitions = ledger.update(1, None, "v2")
    # The stop tells the dispatch as it is now.
    assert _kinds(transitions) == [("stopped", 1, "v2")]
    assert transitions[0].run.run == Run(T, T + H)
    assert ledger.told == {}


def test_an_overlapping_or_touching_run_is_the_same_run() -> None:
    ledger: RunLedger[str] = RunLedger()
    ledger.update(1, Run(T, T + H), "v1", 5)
    first_id = ledger.told[1].run_id
    # Asked later, a chain of windows may be found to start later or end later.
    shown, transitions = ledger.update(1, Run(T + H / 2, T + 3 * H), "v1")
    assert transitions == []
    assert shown == Run(T, T + 3 * H)  # the start first told stays
    # Touching: it starts where the told run ends.
    shown, transitions = ledger.update(1, Run(T + 3 * H, T + 4 * H), "v2")
    assert transitions == []
    assert shown == Run(T, T + 4 * H)
    assert ledger.told[1].run_id == first_id
    assert ledger.told[1].subject == "v2"


def test_a_run_after_a_gap_is_a_new_run() -> None:
    ledger: RunLedger[str] = RunLedger()
    ledger.update(1, Run(T, T + H), "v1")
    _shown, transitions = ledger.update(1, Run(T + 2 * H, T + 3 * H), "v1")
    assert _kinds(transitions) == [("stopped", 1, "v1"), ("started", 1, "v1")]
    assert transitions[0].run.run_id != transitions[1].run.run_id


def test_open_ended_runs_continue() -> None:
    ledger: RunLedger[str] = RunLedger()
    ledger.update(1, Run(T, None), "v1")
    shown, transitions = ledger.update(1, Run(T + 5 * H, None), "v1")
    assert (shown, transitions) == (Run(T, None), [])


def test_while_holding_nothing_counts_as_told_until_released() -> None:
    ledger: RunLedger[str] = RunLedger(RunLedger[str]().told.values(), holding=True)
    ledger.update(1, Run(T, T + H), "v1")
    ledger.update(2, Run(T, T + H), "v1")
    ledger.update(2, None, "v1")  # started and stopped while held
    assert ledger.told == {}
    assert not ledger.changed
    assert ledger.current(1) is not None
    ledger.release()
    assert list(ledger.told) == [1]
    assert ledger.changed == {1}


def test_a_held_stop_keeps_the_run_told() -> None:
    told: RunLedger[str] = RunLedger()
    told.update(1, Run(T, T + H), "v1")
    ledger = RunLedger(told.told.values(), holding=True)
    _shown, transitions = ledger.update(1, None, "v1")
    assert _kinds(transitions) == [("stopped", 1, "v1")]
    # Until the held `stopped` goes out, a crash must tell it again.
    assert list(ledger.told) == [1]
    ledger.release()
    assert ledger.told == {}


def test_sync_stops_what_is_not_running_removal_stops_everything() -> None:
    ledger: RunLedger[str] = RunLedger()
    ledger.update(1, Run(T, T + H), "a")
    ledger.update(2, Run(T, None), "b")
    assert _kinds(ledger.sync({1: object()})) == [("stopped", 2, "b")]
    assert _kinds(ledger.sync({})) == [("stopped", 1, "a")]
    assert ledger.sync({}) == []


def test_the_run_id_is_the_dispatch_the_start_and_the_version_first_told() -> None:
    ledger: RunLedger[str] = RunLedger()
    ledger.update(7, Run(T, T + H), "a", 12)
    ledger.update(7, Run(T, T + 2 * H), "b", 13)  # updated while it runs
    assert ledger.told[7].run_id == f"7@{T.isoformat()}#12"
    # Deactivated and activated again within the window: a new run, a new id.
    ledger.update(7, None, "c", 14)
    ledger.update(7, Run(T, T + 2 * H), "d", 15)
    assert ledger.told[7].run_id == f"7@{T.isoformat()}#15"
