#!/usr/bin/env python3
"""Refresh constraints/ha_pins.json from the Home Assistant wheels (needs PyPI).

For the latest patch of every Home Assistant minor from the ``hacs.json`` minimum
to the newest release, this reads ``homeassistant/package_constraints.txt`` and
``Requires-Python`` from the wheel (cached in ``.compat-cache/``), asks pip which
packages it would install for the manifest requirement under those constraints
on that Python (``pip install --dry-run --report``), and records them with their
declared dependencies, so ``scripts/check_requirements.py`` can check the result
offline. A requirement pip cannot resolve for some minor fails the refresh.

``--constraints VERSION`` also writes ``constraints/ha-VERSION.txt``, that
release's whole ``package_constraints.txt``, for a test leg or ``scripts/develop``.

Usage: ``scripts/refresh_pins.py [--through MINOR] [--constraints VERSION]...``
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime
from email.parser import Parser
import json
import os
from pathlib import Path
import re
import subprocess
import sys
import tempfile
from typing import Any
import zipfile

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.check_requirements import (
    DEFAULT_DATA,
    DEFAULT_HACS,
    DEFAULT_MANIFEST,
    ESSENTIAL,
    REPO_ROOT,
    hacs_minimum,
    manifest_requirements,
    min_python,
    minor_key,
)

CACHE_DIR = REPO_ROOT / ".compat-cache"
CONSTRAINTS_DIR = REPO_ROOT / "constraints"
# Always recorded, whether or not the set contains them.
ALWAYS_PINNED = ("grpcio", "grpcio-status", "grpcio-reflection", "protobuf")
_RELEASE = re.compile(r"^(\d{4})\.(\d{1,2})\.(\d+)$")
_CONSTRAINT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*?)\s*$")


class RefreshError(Exception):
    """pip failed or a wheel is not what it should be."""


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    """Run this interpreter's pip, non-interactively."""
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return subprocess.run(
        [sys.executable, "-m", "pip", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def errors(proc: subprocess.CompletedProcess[str], limit: int = 25) -> str:
    """The tail of pip's output without the index-location noise."""
    lines = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if line.strip() and "is ignored: it is neither" not in line
    ]
    return "\n".join(lines[-limit:])


def latest_patches(minimum: str, through: str | None) -> dict[str, str]:
    """Minor → latest released patch, from ``minimum`` on (one index query)."""
    proc = pip("index", "versions", "homeassistant", "--ignore-requires-python")
    match = re.search(r"Available versions: (.*)", proc.stdout)
    if proc.returncode != 0 or match is None:
        raise RefreshError(f"pip index versions homeassistant failed:\n{errors(proc)}")
    latest: dict[str, tuple[int, str]] = {}
    for version in (v.strip() for v in match.group(1).split(",")):
        found = _RELEASE.match(version)
        if found is None:  # betas, dev releases
            continue
        minor = f"{found.group(1)}.{int(found.group(2))}"
        if minor_key(minor) < minor_key(minimum):
            continue
        if through is not None and minor_key(minor) > minor_key(through):
            continue
        patch = int(found.group(3))
        if minor not in latest or patch > latest[minor][0]:
            latest[minor] = (patch, version)
    return {m: v for m, (_, v) in sorted(latest.items(), key=lambda i: minor_key(i[0]))}


def wheel(version: str) -> Path:
    """The ``homeassistant==version`` wheel, downloaded once into the cache."""
    CACHE_DIR.mkdir(exist_ok=True)
    cached = CACHE_DIR / f"homeassistant-{version}-py3-none-any.whl"
    if cached.exists():
        return cached
    with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix=".download-") as tmp:
        proc = pip(
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--ignore-requires-python",
            "--dest",
            tmp,
            f"homeassistant=={version}",
        )
        found = list(Path(tmp).glob("homeassistant-*.whl"))
        if proc.returncode != 0 or len(found) != 1:
            raise RefreshError(
                f"cannot download homeassistant=={version}:\n{errors(proc)}"
            )
        os.replace(found[0], cached)
    return cached


def read_wheel(version: str) -> tuple[str, str]:
    """``(package_constraints.txt, Requires-Python)`` of a release."""
    with zipfile.ZipFile(wheel(version)) as zf:
        constraints = zf.read("homeassistant/package_constraints.txt").decode()
        metadata = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        headers = Parser().parsestr(zf.read(metadata).decode(), headersonly=True)
    return constraints, headers.get("Requires-Python", "")


def parse_constraints(text: str) -> dict[str, str]:
    """Normalized name → specifier for each line of a constraints file."""
    pins: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-") and (match := _CONSTRAINT.match(line)):
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def resolve(
    requirements: Sequence[str], constraints: str, python: str
) -> dict[str, dict[str, Any]]:
    """What pip installs for ``requirements`` under ``constraints`` on ``python``."""
    with tempfile.TemporaryDirectory(prefix="refresh-pins-") as tmp:
        constraints_file = Path(tmp) / "package_constraints.txt"
        constraints_file.write_text(constraints)
        report = Path(tmp) / "report.json"
        proc = pip(
            "install",
            "--dry-run",
            "--ignore-installed",
            "--only-binary=:all:",
            "--python-version",
            python,
            "--target",
            str(Path(tmp) / "target"),
            "--constraint",
            str(constraints_file),
            "--report",
            str(report),
            *requirements,
        )
        if proc.returncode != 0 or not report.exists():
            raise RefreshError(errors(proc))
        data = json.loads(report.read_text())
    resolution: dict[str, dict[str, Any]] = {}
    for item in data["install"]:
        metadata = item["metadata"]
        requires = [
            r
            for r in metadata.get("requires_dist", [])
            if "extra" not in str(Requirement(r).marker or "")
        ]
        resolution[canonicalize_name(metadata["name"])] = {
            "version": metadata["version"],
            "requires_python": metadata.get("requires_python", ""),
            "requires": requires,
        }
    return dict(sorted(resolution.items()))


def release_entry(version: str, requirements: Sequence[str]) -> dict[str, Any]:
    """The data file's record of one release."""
    constraints, requires_python = read_wheel(version)
    python = min_python(requires_python)
    try:
        resolution = resolve(requirements, constraints, python)
    except RefreshError as err:
        raise RefreshError(
            f"{' '.join(requirements)} does not resolve inside HA {version} "
            f"(Python {python}):\n{err}"
        ) from err
    all_pins = parse_constraints(constraints)
    names = {*ALWAYS_PINNED, *resolution}
    pins = {n: all_pins[n] for n in sorted(names) if n in all_pins}
    missing = [n for n in ESSENTIAL if n not in pins]
    if missing:
        raise RefreshError(f"HA {version} does not pin {', '.join(missing)}")
    return {
        "version": version,
        "requires_python": requires_python,
        "pins": pins,
        "resolution": resolution,
    }


def write_constraints(version: str) -> Path:
    """Write ``constraints/ha-VERSION.txt`` (the release's whole constraints)."""
    constraints, _ = read_wheel(version)
    path = CONSTRAINTS_DIR / f"ha-{version}.txt"
    path.write_text(
        f"# homeassistant=={version}: homeassistant/package_constraints.txt from its"
        " wheel, unchanged below this line.\n"
        f"# Written by scripts/refresh_pins.py --constraints {version}.\n" + constraints
    )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--through", help="newest minor to record, e.g. 2026.11")
    parser.add_argument(
        "--constraints",
        action="append",
        default=[],
        metavar="VERSION",
        help="also write constraints/ha-VERSION.txt",
    )
    args = parser.parse_args(argv)
    try:
        for version in args.constraints:
            print(f"wrote {write_constraints(version).relative_to(REPO_ROOT)}")
        requirements = [str(r) for r in manifest_requirements(DEFAULT_MANIFEST)]
        minimum = hacs_minimum(DEFAULT_HACS)
        releases = {}
        for minor, version in latest_patches(minimum, args.through).items():
            entry = release_entry(version, requirements)
            chosen = entry["resolution"].get("frequenz-client-dispatch", {})
            print(
                f"HA {version}: grpcio{entry['pins']['grpcio']}"
                f" protobuf{entry['pins']['protobuf']}"
                f" → frequenz-client-dispatch {chosen.get('version')}"
            )
            releases[minor] = entry
    except RefreshError as err:
        print(f"refresh: ERROR: {err}", file=sys.stderr)
        return 1
    data = {
        "about": (
            "grpcio/protobuf pins of the latest patch of every supported Home"
            " Assistant minor, with the packages pip selects for the manifest"
            " requirement under them. Written by scripts/refresh_pins.py, read by"
            " scripts/check_requirements.py."
        ),
        "refreshed": datetime.now(UTC).date().isoformat(),
        "requirements": requirements,
        "releases": releases,
    }
    args.data.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {args.data.relative_to(REPO_ROOT)} ({len(releases)} minors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
