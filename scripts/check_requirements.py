#!/usr/bin/env python3
"""The manifest requirement resolves inside every supported Home Assistant minor.

Home Assistant installs an integration's ``requirements`` under its own
``package_constraints.txt``, which pins grpcio and protobuf. A requirement that
does not resolve under those pins makes the integration fail to load.

``constraints/ha_pins.json`` (written by ``scripts/refresh_pins.py``) records, for
the latest patch of every Home Assistant minor from the ``hacs.json`` minimum on:
its lowest Python, its pins of the packages that matter, and the set of packages
pip selected for the manifest requirement under those pins, each with its own
declared dependencies and Python range. This script downloads nothing: it checks
that recorded set is a valid installation, i.e. that

1. every manifest requirement is met by a package of the set,
2. every package of the set meets the Home Assistant pin of its name,
3. every dependency a package of the set declares (for that Python, on Linux) is
   met by the set, and every package admits that Python,
4. grpcio and protobuf are in the set, and the minors run without a gap from the
   ``hacs.json`` minimum to the newest recorded one.

A valid set proves the requirement resolves there. When the manifest changes in
a way the recorded sets no longer meet, ``scripts/refresh_pins.py`` asks pip for
new ones (and fails when there are none).

Usage: ``scripts/check_requirements.py [--data FILE] [--manifest FILE] [--hacs FILE]``
Exit status: 0 when every minor passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
import json
from pathlib import Path
import re
import sys
from typing import Any

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT / "constraints" / "ha_pins.json"
DEFAULT_MANIFEST = (
    REPO_ROOT / "custom_components" / "frequenz_dispatch" / "manifest.json"
)
DEFAULT_HACS = REPO_ROOT / "hacs.json"

# Must be part of every recorded set: the reason this check exists.
ESSENTIAL = ("grpcio", "protobuf")
_LOWER_BOUND = re.compile(r">=\s*(\d+\.\d+(?:\.\d+)?)")


class CheckError(Exception):
    """The data file or an input is malformed."""


def min_python(requires_python: str) -> str:
    """The lowest Python a ``Requires-Python`` specifier allows (``>=3.14.2``)."""
    match = _LOWER_BOUND.search(requires_python)
    if match is None:
        raise CheckError(f"no lower bound in Requires-Python {requires_python!r}")
    return match.group(1)


def marker_environment(python: str) -> dict[str, str]:
    """PEP 508 marker values of a Linux CPython ``python`` (as HA OS runs)."""
    major_minor = ".".join(python.split(".")[:2])
    return {
        "python_version": major_minor,
        "python_full_version": python,
        "implementation_name": "cpython",
        "implementation_version": python,
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "platform_release": "",
        "platform_version": "",
        "extra": "",
    }


def applies(requirement: Requirement, environment: dict[str, str]) -> bool:
    """Whether a dependency applies (its marker holds, it is not an extra's)."""
    marker: Marker | None = requirement.marker
    return marker is None or marker.evaluate(environment)


@dataclass(frozen=True)
class Package:
    """One package of a recorded installation."""

    name: str
    version: Version
    requires_python: SpecifierSet
    requires: tuple[Requirement, ...]

    @classmethod
    def from_data(cls, name: str, data: Mapping[str, Any]) -> Package:
        """Build from the data file's ``{"version", "requires_python", "requires"}``."""
        try:
            return cls(
                name=canonicalize_name(name),
                version=Version(data["version"]),
                requires_python=SpecifierSet(data.get("requires_python") or ""),
                requires=tuple(Requirement(r) for r in data.get("requires", [])),
            )
        except (KeyError, TypeError, InvalidRequirement, InvalidSpecifier) as err:
            raise CheckError(f"package {name}: {err}") from err


@dataclass
class MinorResult:
    """The outcome for one Home Assistant minor."""

    minor: str
    version: str
    python: str
    pins: dict[str, str]
    selected: dict[str, Version]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    def summary(self) -> str:
        """One line, plus one per problem."""
        pins = " ".join(
            f"{n}{self.pins[n]}" for n in ("grpcio", "protobuf") if n in self.pins
        )
        head = f"HA {self.version} (Python {self.python}; {pins}): "
        if self.ok:
            client = self.selected.get("frequenz-client-dispatch")
            return head + f"OK → frequenz-client-dispatch {client}"
        return head + "FAIL\n" + "\n".join(f"      {p}" for p in self.problems)


def check_minor(
    minor: str, release: Mapping[str, Any], requirements: Sequence[Requirement]
) -> MinorResult:
    """Check one minor's recorded installation against its pins and requirements."""
    python = min_python(release["requires_python"])
    pins: dict[str, str] = {
        canonicalize_name(n): str(s) for n, s in release["pins"].items()
    }
    packages = {
        canonicalize_name(name): Package.from_data(name, data)
        for name, data in release["resolution"].items()
    }
    result = MinorResult(
        minor=minor,
        version=release["version"],
        python=python,
        pins=pins,
        selected={name: p.version for name, p in packages.items()},
    )
    environment = marker_environment(python)

    def met(requirement: Requirement, by: str) -> None:
        name = canonicalize_name(requirement.name)
        package = packages.get(name)
        if package is None:
            result.problems.append(f"{by} needs {requirement}: not in the set")
        elif not requirement.specifier.contains(package.version, prereleases=True):
            result.problems.append(
                f"{by} needs {requirement}, the set has {name} {package.version}"
            )

    for requirement in requirements:
        if applies(requirement, environment):
            met(requirement, "manifest.json")
    for name, package in sorted(packages.items()):
        pin = pins.get(name)
        if pin is not None and not SpecifierSet(pin).contains(
            package.version, prereleases=True
        ):
            result.problems.append(
                f"{name} {package.version} breaks Home Assistant's pin {name}{pin}"
            )
        if not package.requires_python.contains(python, prereleases=True):
            result.problems.append(
                f"{name} {package.version} needs Python {package.requires_python}"
            )
        for requirement in package.requires:
            if applies(requirement, environment):
                met(requirement, f"{name} {package.version}")
    for essential in ESSENTIAL:
        if essential not in packages:
            result.problems.append(f"{essential} is not in the set (stale data file?)")
    return result


def minor_key(minor: str) -> tuple[int, int]:
    """``"2025.6"`` → ``(2025, 6)``."""
    year, month = minor.split(".")
    return int(year), int(month)


def expected_minors(first: str, last: str) -> list[str]:
    """Every monthly Home Assistant minor from ``first`` to ``last``."""
    year, month = minor_key(first)
    end = minor_key(last)
    minors = []
    while (year, month) <= end:
        minors.append(f"{year}.{month}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return minors


def manifest_requirements(manifest: Path) -> list[Requirement]:
    """The ``requirements`` of a manifest.json."""
    data = json.loads(manifest.read_text())
    reqs = data.get("requirements")
    if not isinstance(reqs, list) or not all(isinstance(r, str) for r in reqs):
        raise CheckError(f"{manifest}: 'requirements' must be a list of strings")
    return [Requirement(r) for r in reqs]


def hacs_minimum(hacs: Path) -> str:
    """The ``homeassistant`` minimum of hacs.json as a minor (``2025.6``)."""
    version = json.loads(hacs.read_text()).get("homeassistant")
    if not isinstance(version, str) or version.count(".") != 2:
        raise CheckError(f"{hacs}: 'homeassistant' must be a version like 2025.6.0")
    return version.rsplit(".", 1)[0]


def check(
    data: Mapping[str, Any], requirements: Sequence[Requirement], minimum: str
) -> tuple[list[MinorResult], list[str]]:
    """Check every recorded minor; also report minors missing from the data."""
    releases: Mapping[str, Any] = data["releases"]
    problems: list[str] = []
    if not releases:
        return [], ["the data file records no Home Assistant release"]
    newest = max(releases, key=minor_key)
    wanted = expected_minors(minimum, newest)
    missing = [m for m in wanted if m not in releases]
    if missing:
        problems.append(
            f"no data for HA {', '.join(missing)} (run scripts/refresh_pins.py)"
        )
    results = [
        check_minor(m, releases[m], requirements) for m in wanted if m in releases
    ]
    return results, problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--hacs", type=Path, default=DEFAULT_HACS)
    args = parser.parse_args(argv)
    try:
        data = json.loads(args.data.read_text())
        requirements = manifest_requirements(args.manifest)
        minimum = hacs_minimum(args.hacs)
        results, problems = check(data, requirements, minimum)
    except (OSError, ValueError, KeyError, CheckError) as err:
        print(f"requirements: ERROR: {err}", file=sys.stderr)
        return 1
    print(
        f"requirements: {' '.join(map(str, requirements))} inside HA {minimum}+"
        f" ({args.data.name}, refreshed {data.get('refreshed', '?')})"
    )
    for result in results:
        print(f"  {result.summary()}")
    for problem in problems:
        print(f"  {problem}")
    failed = sum(not r.ok for r in results) + len(problems)
    if failed:
        print("requirements: FAIL (scripts/refresh_pins.py refreshes the data)")
        return 1
    print(f"requirements: OK ({len(results)} Home Assistant minors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
