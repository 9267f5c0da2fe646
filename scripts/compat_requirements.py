#!/usr/bin/env python3
"""Gate 1: the manifest's requirements resolve inside each supported Home Assistant.

Home Assistant installs an integration's ``requirements`` with
``uv pip install --constraint homeassistant/package_constraints.txt`` (see
``homeassistant/requirements.py``).  Those constraints pin grpcio, grpcio-status,
grpcio-reflection and protobuf (and ~130 other packages), so a requirement that
does not resolve under them makes the integration fail to load.

For the minimum supported Home Assistant (``hacs.json`` → ``homeassistant``) and
for the newest one we target (:data:`NEWEST_HA_VERSION`) this script

1. downloads the ``homeassistant`` wheel once into ``.compat-cache/``,
2. reads ``package_constraints.txt`` and ``Requires-Python`` from it, and
3. runs ``pip install --dry-run`` for that Python version with that constraints
   file, reporting the selected frequenz-client-dispatch / grpcio / protobuf.

Usage: ``scripts/compat_requirements.py [--ha-version V]... [--requirement R]...``
Exit status: 0 when every requirement set resolves, 1 otherwise.
"""

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.parser import Parser
import json
import os
from pathlib import Path
import re
import subprocess
import sys
import tempfile
import time
from typing import Any
import zipfile

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = REPO_ROOT / ".compat-cache"
DEFAULT_MANIFEST = (
    REPO_ROOT / "custom_components" / "frequenz_dispatch" / "manifest.json"
)
DEFAULT_HACS = REPO_ROOT / "hacs.json"

# The newest Home Assistant release the integration must work with.  Bump it
# together with the other places that name it when a new release is out.
NEWEST_HA_VERSION = "2026.11.0"

# Pins that matter most for us: printed in the summary.
GRPC_PROTOBUF = ("grpcio", "grpcio-status", "grpcio-reflection", "protobuf")
REPORTED = ("frequenz-client-dispatch", "grpcio", "protobuf")

_VERSION_RE = re.compile(r"^\d{4}\.\d{1,2}\.\d+(?:(?:a|b|rc|\.dev)\d+)?$")
_CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*?)\s*$")
_MIN_PYTHON_RE = re.compile(r">=\s*(\d+\.\d+(?:\.\d+)?)")
_MAX_LINE = 300


class CompatError(Exception):
    """A gate could not run (download failed, malformed wheel, bad input)."""


def normalize(name: str) -> str:
    """PEP 503-normalize a distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_env() -> dict[str, str]:
    """Environment for pip subprocesses: non-interactive, no version nagging."""
    env = dict(os.environ)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _pip_errors(output: str, limit: int = 30) -> str:
    """The lines of pip's output that explain a failure.

    That is the "conflict is caused by" block and the ``ERROR:`` lines; when
    there are none (an unexpected failure), the last lines of the output.
    """
    lines = [line.rstrip() for line in output.splitlines() if line.strip()]
    keep: list[str] = []
    in_conflict = False
    for line in lines:
        if line.startswith("The conflict is caused by"):
            in_conflict = True
        elif in_conflict and not line.startswith(" "):
            in_conflict = False
        if in_conflict or line.startswith("ERROR:"):
            keep.append(line)
    chosen = keep or lines
    return "\n".join(
        line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "..."
        for line in chosen[-limit:]
    )


def _usable_wheel(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return "homeassistant/package_constraints.txt" in zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def ha_wheel(version: str, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """The cached ``homeassistant==version`` wheel, downloaded on first use.

    Released wheels on PyPI never change, so a wheel in the cache is reused
    forever.  The download goes to a temporary directory first and is moved
    into place atomically, so an interrupted or concurrent run never leaves a
    truncated wheel behind.
    """
    if not _VERSION_RE.match(version):
        raise CompatError(f"not a Home Assistant version: {version!r}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    for cached in sorted(cache_dir.glob(f"homeassistant-{version}-*.whl")):
        if _usable_wheel(cached):
            return cached
        cached.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--ignore-requires-python",
            "--dest",
            tmp,
            f"homeassistant=={version}",
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=pip_env(), check=False
        )
        wheels = list(Path(tmp).glob("homeassistant-*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            raise CompatError(
                f"could not download homeassistant=={version} from the package "
                f"index (pip exit {proc.returncode}):\n"
                + _pip_errors(proc.stdout + proc.stderr)
            )
        dest = cache_dir / wheels[0].name
        os.replace(wheels[0], dest)
    if not _usable_wheel(dest):
        raise CompatError(f"{dest} is not a Home Assistant wheel")
    return dest


def min_python(requires_python: str) -> str:
    """The lowest Python version a ``Requires-Python`` specifier allows."""
    match = _MIN_PYTHON_RE.search(requires_python)
    if match is None:
        raise CompatError(f"cannot find a lower bound in {requires_python!r}")
    return match.group(1)


def parse_constraints(text: str) -> dict[str, str]:
    """Map normalized name → specifier for each line of a constraints file."""
    pins: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = _CONSTRAINT_RE.match(line)
        if match:
            pins[normalize(match.group(1))] = match.group(2)
    return pins


@dataclass(frozen=True)
class HaRelease:
    """What gate 1 needs to know about one Home Assistant release."""

    version: str
    wheel: Path
    requires_python: str
    python_version: str
    constraints: str

    @property
    def pins(self) -> dict[str, str]:
        """Normalized name → specifier from ``package_constraints.txt``."""
        return parse_constraints(self.constraints)

    def grpc_protobuf_pins(self) -> str:
        """The grpcio/protobuf pins, e.g. ``grpcio==1.83.1 protobuf==7.36.0``."""
        pins = self.pins
        return " ".join(f"{n}{pins[n]}" for n in GRPC_PROTOBUF if n in pins)


def ha_release(version: str, cache_dir: Path = DEFAULT_CACHE_DIR) -> HaRelease:
    """Read ``package_constraints.txt`` and ``Requires-Python`` of a release."""
    wheel = ha_wheel(version, cache_dir)
    with zipfile.ZipFile(wheel) as zf:
        constraints = zf.read("homeassistant/package_constraints.txt").decode()
        metadata_name = next(
            (
                n
                for n in zf.namelist()
                if n.startswith("homeassistant-") and n.endswith(".dist-info/METADATA")
            ),
            None,
        )
        if metadata_name is None:
            raise CompatError(f"{wheel.name} has no METADATA")
        metadata = Parser().parsestr(zf.read(metadata_name).decode(), headersonly=True)
    requires_python = metadata.get("Requires-Python", "")
    return HaRelease(
        version=version,
        wheel=wheel,
        requires_python=requires_python,
        python_version=min_python(requires_python),
        constraints=constraints,
    )


@dataclass
class ResolveResult:
    """The outcome of resolving a set of requirements inside one HA release."""

    ha_version: str
    python_version: str
    requirements: tuple[str, ...]
    ok: bool
    pins: str = ""
    selected: dict[str, str] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0

    def summary(self) -> str:
        """One line (plus pip's explanation on failure) for humans."""
        head = (
            f"HA {self.ha_version} (Python {self.python_version}; {self.pins}): "
            f"{'OK' if self.ok else 'FAIL'}"
        )
        if self.ok:
            chosen = ", ".join(
                f"{n} {self.selected[n]}" for n in REPORTED if n in self.selected
            )
            return f"{head} → {chosen} [{self.seconds:.1f} s]"
        detail = "\n".join(f"      {line}" for line in self.error.splitlines())
        return (
            f"{head}: {' '.join(self.requirements)} does not resolve "
            f"[{self.seconds:.1f} s]\n{detail}"
        )


def resolve_requirements(
    requirements: Sequence[str],
    ha_version: str,
    cache_dir: Path = DEFAULT_CACHE_DIR,
) -> ResolveResult:
    """Dry-run ``pip install requirements`` the way HA ``ha_version`` would.

    Uses the release's whole ``package_constraints.txt`` as constraints (that
    is what HA passes to its installer) and the lowest Python its wheel allows.
    Raises :class:`CompatError` only when the check itself cannot run; a
    requirement that does not resolve is a result with ``ok=False``.
    """
    start = time.monotonic()
    release = ha_release(ha_version, cache_dir)
    reqs = tuple(requirements)
    result = ResolveResult(
        ha_version=ha_version,
        python_version=release.python_version,
        requirements=reqs,
        ok=False,
        pins=release.grpc_protobuf_pins(),
    )
    if not reqs:
        result.ok = True
        return result
    with tempfile.TemporaryDirectory(prefix="compat-resolve-") as tmp:
        constraints = Path(tmp) / "package_constraints.txt"
        constraints.write_text(release.constraints)
        report = Path(tmp) / "report.json"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--only-binary=:all:",
            "--python-version",
            release.python_version,
            "--target",
            str(Path(tmp) / "target"),
            "--constraint",
            str(constraints),
            "--report",
            str(report),
            *reqs,
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=pip_env(), check=False
        )
        result.seconds = time.monotonic() - start
        if proc.returncode != 0 or not report.exists():
            result.error = _pip_errors(proc.stdout + proc.stderr) or (
                f"pip exited with status {proc.returncode}"
            )
            return result
        data: dict[str, Any] = json.loads(report.read_text())
    result.selected = {
        normalize(item["metadata"]["name"]): str(item["metadata"]["version"])
        for item in data.get("install", [])
    }
    result.ok = True
    return result


def manifest_requirements(manifest: Path = DEFAULT_MANIFEST) -> list[str]:
    """The ``requirements`` list of a manifest.json."""
    data = json.loads(manifest.read_text())
    reqs = data.get("requirements", [])
    if not isinstance(reqs, list) or not all(isinstance(r, str) for r in reqs):
        raise CompatError(f"{manifest}: 'requirements' must be a list of strings")
    return list(reqs)


def min_ha_version(hacs: Path = DEFAULT_HACS) -> str:
    """The minimum supported Home Assistant version from hacs.json."""
    version = json.loads(hacs.read_text()).get("homeassistant")
    if not isinstance(version, str):
        raise CompatError(f"{hacs}: missing string 'homeassistant'")
    return version


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ha-version",
        action="append",
        help="HA release to check (repeatable; default: hacs.json minimum and "
        f"{NEWEST_HA_VERSION})",
    )
    parser.add_argument(
        "--requirement",
        action="append",
        help="requirement to resolve (repeatable; default: manifest.json's)",
    )
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--hacs", type=Path, default=DEFAULT_HACS)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="list every selected package"
    )
    args = parser.parse_args(argv)

    try:
        requirements: list[str] = args.requirement or manifest_requirements(
            args.manifest
        )
        versions: list[str] = args.ha_version or [
            min_ha_version(args.hacs),
            NEWEST_HA_VERSION,
        ]
        print(
            f"gate 1: requirements {' '.join(requirements) or '(none)'} under "
            "each HA's package_constraints.txt"
        )
        failed = 0
        for version in dict.fromkeys(versions):
            result = resolve_requirements(requirements, version, args.cache_dir)
            print(f"  {result.summary()}")
            if args.verbose and result.ok:
                for name, ver in sorted(result.selected.items()):
                    print(f"      {name}=={ver}")
            failed += not result.ok
    except CompatError as err:
        print(f"gate 1: ERROR: {err}", file=sys.stderr)
        return 1
    if failed:
        print(f"gate 1: FAIL ({failed} of {len(set(versions))} HA releases)")
        return 1
    print("gate 1: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
