"""The compatibility gates in scripts/ fail when they should.

These call the gate functions directly.  They reuse the Home Assistant wheels
cached in .compat-cache/ by scripts/compat (downloaded on first use) and run pip
as a subprocess, so nothing here opens a socket in the test process.
"""

import ast
import importlib.util
from pathlib import Path
import sys
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
NEWEST_HA = "2026.11.0"


def _load(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


requirements_gate = _load("compat_requirements")
names_gate = _load("compat_ha_names")


# ---------------------------------------------------------------- gate 1


@pytest.mark.parametrize(
    ("requirement", "explanation"),
    [
        # No such release.
        ("frequenz-client-dispatch>=99", "No matching distribution"),
        # Exists, but its frequenz-api-dispatch needs protobuf<7 while HA
        # 2026.11 pins protobuf==7.36.0.
        ("frequenz-client-dispatch==0.8.0", "protobuf"),
    ],
)
def test_unresolvable_requirement_fails(requirement: str, explanation: str) -> None:
    result = requirements_gate.resolve_requirements([requirement], NEWEST_HA)
    assert not result.ok
    assert explanation in result.error
    assert "FAIL" in result.summary()
    assert result.python_version.startswith("3.14")


def test_manifest_requirements_resolve_under_newest_ha() -> None:
    result = requirements_gate.resolve_requirements(
        requirements_gate.manifest_requirements(), NEWEST_HA
    )
    assert result.ok, result.error
    pins = requirements_gate.ha_release(NEWEST_HA).pins
    assert pins["grpcio"] == f"=={result.selected['grpcio']}"
    assert pins["protobuf"] == f"=={result.selected['protobuf']}"
    assert "frequenz-client-dispatch" in result.selected


def test_parse_constraints_and_min_python() -> None:
    pins = requirements_gate.parse_constraints(
        "# comment\ngrpcio==1.83.1\nTyping_Extensions>=4.16.0,<5.0  # why\n\n"
    )
    assert pins == {"grpcio": "==1.83.1", "typing-extensions": ">=4.16.0,<5.0"}
    assert requirements_gate.min_python(">=3.14.2") == "3.14.2"
    with pytest.raises(requirements_gate.CompatError):
        requirements_gate.min_python("<4")


# ---------------------------------------------------------------- gate 2


def _integration(tmp_path: Path, source: str) -> Path:
    (tmp_path / "module.py").write_text(source)
    return tmp_path


def test_missing_name_is_reported(tmp_path: Path) -> None:
    source_dir = _integration(
        tmp_path,
        "from homeassistant.core import HomeAssistant\n"
        "from homeassistant.core import DefinitelyNotAName\n",
    )
    result = names_gate.check_ha_names(source_dir, NEWEST_HA)
    assert not result.ok
    assert [(f.missing, f.ref.path.name, f.ref.line) for f in result.missing] == [
        ("homeassistant.core:DefinitelyNotAName", "module.py", 2)
    ]
    assert "missing: homeassistant.core:DefinitelyNotAName" in result.summary()


def test_real_names_pass(tmp_path: Path) -> None:
    source_dir = _integration(
        tmp_path,
        "import homeassistant.helpers.config_validation as cv\n"
        "from homeassistant.components.sensor import SensorDeviceClass\n"
        "from homeassistant.config_entries import ConfigEntry, ConfigFlow\n"
        "from homeassistant.const import CONF_HOST, Platform\n"
        "from homeassistant.core import HomeAssistant, callback\n"
        "from homeassistant.helpers import entity_registry as er\n"
        "from homeassistant.util import dt as dt_util\n"
        "SCHEMA = cv.string\n"
        "PLATFORMS = [Platform.SENSOR, Platform.BINARY_SENSOR]\n"
        "KIND = SensorDeviceClass.TIMESTAMP\n"
        "NOW = dt_util.utcnow\n"
        "GET = er.async_get\n",
    )
    result = names_gate.check_ha_names(source_dir, NEWEST_HA)
    assert result.ok, result.summary()
    assert not result.deprecated
    assert len(result.references) == 16


def test_missing_modules_attributes_and_enum_members(tmp_path: Path) -> None:
    source_dir = _integration(
        tmp_path,
        "import homeassistant.helpers.not_a_module\n"
        "import homeassistant.helpers.config_validation as cv\n"
        "from homeassistant.not_a_package import Anything\n"
        "from homeassistant.const import Platform\n"
        "A = cv.not_a_validator\n"
        "B = Platform.NOT_A_PLATFORM\n"
        "C = Platform.SENSOR.value\n",
    )
    result = names_gate.check_ha_names(source_dir, NEWEST_HA)
    assert {f.missing for f in result.missing} == {
        "homeassistant.helpers.not_a_module",
        "homeassistant.not_a_package:Anything",
        "homeassistant.helpers.config_validation:not_a_validator",
        "homeassistant.const.Platform:NOT_A_PLATFORM",
    }


def test_deprecated_constant_is_a_warning(tmp_path: Path) -> None:
    source_dir = _integration(
        tmp_path, "from homeassistant.const import CONCENTRATION_PARTS_PER_MILLION\n"
    )
    result = names_gate.check_ha_names(source_dir, NEWEST_HA)
    assert result.ok
    assert [f.missing for f in result.deprecated] == [
        "homeassistant.const:CONCENTRATION_PARTS_PER_MILLION"
    ]


def test_shadowed_import_is_not_checked(tmp_path: Path) -> None:
    source_dir = _integration(
        tmp_path,
        "from homeassistant.components import tts\n"
        "def installed(infos: list[object]) -> bool:\n"
        "    return any(tts.installed for tts in infos)\n",
    )
    assert names_gate.check_ha_names(source_dir, NEWEST_HA).ok


def test_python_314_except_syntax_is_parsed() -> None:
    source = "try:\n    pass\nexcept ValueError, TypeError:\n    pass\n"
    tree = names_gate.parse_module_source(source, "x.py")
    handler = tree.body[0].handlers[0]
    assert isinstance(handler.type, ast.Tuple)


# ---------------------------------------------------------------- gate 2b


def test_metadata_of_this_repo_is_complete() -> None:
    assert (
        names_gate.check_metadata(
            names_gate.DEFAULT_SOURCE_DIR / "manifest.json", names_gate.DEFAULT_HACS
        )
        == []
    )


def test_metadata_missing_keys_are_reported(tmp_path: Path) -> None:
    integration = tmp_path / "frequenz_dispatch"
    integration.mkdir()
    (integration / "manifest.json").write_text('{"domain": "other", "name": "X"}')
    (tmp_path / "hacs.json").write_text('{"name": "X"}')
    problems = names_gate.check_metadata(
        integration / "manifest.json", tmp_path / "hacs.json"
    )
    assert "manifest.json: missing 'version'" in problems
    assert "manifest.json: missing 'requirements'" in problems
    assert any("domain 'other'" in p for p in problems)
    assert "hacs.json: missing 'homeassistant'" in problems
