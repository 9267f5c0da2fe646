"""The offline requirement check (scripts/check_requirements.py) fails when it should.

It reads constraints/ha_pins.json; nothing here downloads anything.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from packaging.requirements import Requirement
import pytest

from scripts import check_requirements as gate

MANIFEST_REQS = gate.manifest_requirements(gate.DEFAULT_MANIFEST)
MINIMUM = gate.hacs_minimum(gate.DEFAULT_HACS)


@pytest.fixture
def data() -> dict[str, Any]:
    """A private copy of the committed data file."""
    loaded: dict[str, Any] = json.loads(gate.DEFAULT_DATA.read_text())
    return copy.deepcopy(loaded)


def _problems(data: dict[str, Any], requirements: list[Requirement]) -> list[str]:
    results, problems = gate.check(data, requirements, MINIMUM)
    return problems + [p for r in results for p in r.problems]


def test_committed_data_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert gate.main([]) == 0
    out = capsys.readouterr().out
    assert f"HA {MINIMUM}." in out
    assert "requirements: OK" in out


def test_committed_data_covers_oldest_and_newest_minor(data: dict[str, Any]) -> None:
    releases = data["releases"]
    assert MINIMUM in releases
    assert "2026.11" in releases
    oldest = releases[MINIMUM]["resolution"]["frequenz-client-dispatch"]["version"]
    newest = releases["2026.11"]["resolution"]["frequenz-client-dispatch"]["version"]
    assert oldest.startswith("1.0.")
    assert newest.startswith("1.1.")


def test_requirement_the_set_does_not_meet_fails(data: dict[str, Any]) -> None:
    problems = _problems(data, [Requirement("frequenz-client-dispatch>=1.1")])
    assert any(
        "manifest.json needs frequenz-client-dispatch>=1.1" in p for p in problems
    )


def test_unknown_requirement_fails(data: dict[str, Any]) -> None:
    problems = _problems(data, [*MANIFEST_REQS, Requirement("not-a-package>=1")])
    assert any("not-a-package>=1: not in the set" in p for p in problems)


def test_pin_that_breaks_a_declared_range_fails(data: dict[str, Any]) -> None:
    """An HA pinning a grpcio the recorded client does not accept."""
    release = data["releases"][MINIMUM]
    release["pins"]["grpcio"] = "==1.60.0"
    release["resolution"]["grpcio"]["version"] = "1.60.0"
    problems = _problems(data, MANIFEST_REQS)
    assert any("needs grpcio" in p and "grpcio 1.60.0" in p for p in problems)


def test_set_that_breaks_a_pin_fails(data: dict[str, Any]) -> None:
    release = data["releases"][MINIMUM]
    release["resolution"]["protobuf"]["version"] = "5.29.0"
    problems = _problems(data, MANIFEST_REQS)
    assert any("protobuf 5.29.0 breaks Home Assistant's pin" in p for p in problems)


def test_python_outside_a_package_range_fails(data: dict[str, Any]) -> None:
    data["releases"][MINIMUM]["requires_python"] = ">=3.10"
    problems = _problems(data, MANIFEST_REQS)
    assert any("needs Python" in p for p in problems)


def test_gap_in_minors_fails(data: dict[str, Any]) -> None:
    del data["releases"]["2026.1"]
    problems = _problems(data, MANIFEST_REQS)
    assert any("no data for HA 2026.1 " in p for p in problems)


def test_markers_are_evaluated_for_that_python() -> None:
    env = gate.marker_environment("3.13.2")
    assert gate.applies(Requirement("a; python_version < '3.14'"), env)
    assert not gate.applies(Requirement("a; python_version >= '3.14'"), env)
    assert not gate.applies(Requirement("a; extra == 'cli'"), env)
    assert gate.min_python(">=3.14.2") == "3.14.2"
    with pytest.raises(gate.CheckError):
        gate.min_python("<4")
    assert gate.expected_minors("2025.11", "2026.2") == [
        "2025.11",
        "2025.12",
        "2026.1",
        "2026.2",
    ]
