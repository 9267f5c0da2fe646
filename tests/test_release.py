"""The release zip HACS installs (scripts/build_release.py) and its tag check."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys
import zipfile

import pytest

from scripts import build_release

ROOT = Path(__file__).resolve().parent.parent
VERSION = build_release.manifest_version()


def _build(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the script as the release workflow does."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_release.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )


def test_zip_holds_the_integration_at_its_root(tmp_path: Path) -> None:
    done = _build(tmp_path, "--tag", f"v{VERSION}", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    target = tmp_path / "frequenz_dispatch.zip"
    assert done.stdout.strip() == str(target)
    hacs = json.loads((ROOT / "hacs.json").read_text())
    assert hacs["zip_release"] is True
    assert hacs["filename"] == target.name
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["version"] == VERSION
    assert manifest["domain"] == "frequenz_dispatch"
    for name in ("__init__.py", "strings.json", "services.yaml", "brand/icon.png"):
        assert name in names
    assert {"translations/en.json", "translations/de.json"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith(("custom_components", "/"))]
    # Every file of the integration that git would ship is in it.
    integration = ROOT / "custom_components" / "frequenz_dispatch"
    shipped = {
        p.relative_to(integration).as_posix()
        for p in integration.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert set(names) == shipped


def test_same_tree_gives_the_same_bytes(tmp_path: Path) -> None:
    first = build_release.build_zip(tmp_path / "a")
    second = build_release.build_zip(tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()


def test_mismatching_tag_is_rejected(tmp_path: Path) -> None:
    done = _build(tmp_path, "--tag", "v999.0.0", "--out", str(tmp_path))
    assert done.returncode == 1
    assert f"expected 'v{VERSION}'" in done.stdout
    assert not (tmp_path / "frequenz_dispatch.zip").exists()


@pytest.mark.parametrize(
    "tag", [VERSION, f"v{VERSION}.1", f"release-{VERSION}", f"V{VERSION}"]
)
def test_tag_must_be_v_and_the_version(tag: str) -> None:
    with pytest.raises(build_release.TagMismatchError):
        build_release.check_tag(tag, VERSION)


def test_tag_ref_names_the_version() -> None:
    build_release.check_tag(f"v{VERSION}", VERSION)
    build_release.check_tag(f"refs/tags/v{VERSION}", VERSION)
