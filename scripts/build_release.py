#!/usr/bin/env python3
"""Build the release zip HACS installs (hacs.json: zip_release, filename).

The zip holds the *contents* of custom_components/frequenz_dispatch/ at its
root (manifest.json, the modules, translations/, brand/ ...), without caches:
HACS unpacks it into the user's custom_components/frequenz_dispatch/. Entries
are sorted and dated by the commit time given in $SOURCE_DATE_EPOCH (else
1980-01-01), so the same tree gives the same bytes.

With ``--tag`` the release tag is checked first: it must be ``v`` followed by
manifest.json's version (exit 1 otherwise, with the reason). The release
workflow (.github/workflows/release.yml) runs:

    python scripts/build_release.py --tag "$GITHUB_REF_NAME" --out dist

Run from anywhere; prints the zip's path. Needs only the standard library.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
import json
import os
from pathlib import Path
import sys
import time
import zipfile

ROOT = Path(__file__).resolve().parent.parent
INTEGRATION = ROOT / "custom_components" / "frequenz_dispatch"
ZIP_NAME = "frequenz_dispatch.zip"
"""Must match hacs.json's `filename`."""
_SKIPPED_DIRS = frozenset({"__pycache__"})
_SKIPPED_SUFFIXES = frozenset({".pyc", ".pyo"})
_EPOCH_1980 = 315532800
"""The earliest time a zip entry can carry (1980-01-01 00:00:00 UTC)."""


class TagMismatchError(ValueError):
    """The release tag does not name manifest.json's version."""


def manifest_version(integration: Path = INTEGRATION) -> str:
    """The version in the integration's manifest.json."""
    manifest = json.loads((integration / "manifest.json").read_text("utf-8"))
    return str(manifest["version"])


def check_tag(tag: str, version: str) -> None:
    """Raise TagMismatchError unless `tag` is ``v<version>`` (refs/tags/ allowed)."""
    name = tag.removeprefix("refs/tags/")
    if name != f"v{version}":
        raise TagMismatchError(
            f"tag {name!r} does not match manifest.json's version {version!r}"
            f" (expected 'v{version}')"
        )


def release_files(integration: Path = INTEGRATION) -> Iterator[Path]:
    """The integration's files that ship, sorted; no caches or hidden files."""
    for path in sorted(integration.rglob("*")):
        parts = path.relative_to(integration).parts
        if any(part in _SKIPPED_DIRS or part.startswith(".") for part in parts):
            continue
        if path.is_file() and path.suffix not in _SKIPPED_SUFFIXES:
            yield path


def build_zip(out_dir: Path, integration: Path = INTEGRATION) -> Path:
    """Write ``out_dir/frequenz_dispatch.zip``; return its path."""
    epoch = max(int(os.environ.get("SOURCE_DATE_EPOCH", "0")), _EPOCH_1980)
    stamp = time.gmtime(epoch)[:6]
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / ZIP_NAME
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in release_files(integration):
            info = zipfile.ZipInfo(path.relative_to(integration).as_posix(), stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """Check the tag (if given) and build the zip; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tag", help="release tag to check against manifest.json (e.g. v0.1.0)"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "dist", help="output directory [dist]"
    )
    args = parser.parse_args(argv)
    version = manifest_version()
    if args.tag is not None:
        try:
            check_tag(args.tag, version)
        except TagMismatchError as err:
            print(f"build_release: {err}")
            return 1
    target = build_zip(args.out)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
