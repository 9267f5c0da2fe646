#!/usr/bin/env python3
"""Gate 2: every ``homeassistant.*`` name the integration uses exists in HA.

The newest Home Assistant we support needs a newer Python than our venv, so it
cannot be imported here.  Instead this script reads the source of the
``homeassistant`` wheel (downloaded once into ``.compat-cache/``) with
:mod:`ast` and checks, for every ``.py`` file of the integration:

* ``import homeassistant.x.y`` / ``from homeassistant.x import y``: the module
  exists (a ``.py`` file or a package);
* ``from homeassistant.x import A``: ``A`` is bound at module level in
  ``homeassistant.x`` (def, class, assignment, import/re-export, ``*``-import)
  or is a submodule.  In modules that use HA's ``__getattr__`` deprecation
  helper, ``A`` also counts when ``_DEPRECATED_A`` is defined (reported as a
  warning); any other ``__getattr__`` only covers names in a literal ``__all__``;
* attribute chains through those imports: ``cv.string`` after
  ``import homeassistant.helpers.config_validation as cv`` and enum members such
  as ``Platform.BINARY_SENSOR`` (followed through aliases like
  ``Platform = EntityPlatforms``).  Attributes of other classes are not checked
  since they may be inherited.

Gate 2b checks that manifest.json and hacs.json carry the keys HA and HACS need.

Usage: ``scripts/compat_ha_names.py [--ha-version V]... [--source-dir DIR]``
Exit status: 0 when everything is found, 1 otherwise.
"""

import argparse
import ast
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
import importlib.util
import io
import json
from pathlib import Path
import re
import sys
import tokenize
from types import ModuleType
from typing import Literal, Self, cast
import zipfile


def _load_sibling(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` (the scripts directory is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).with_name(f"{name}.py")
    )
    if spec is None or spec.loader is None:  # pragma: no cover
        raise ImportError(name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_requirements = _load_sibling("compat_requirements")
CompatError = cast(type[Exception], _requirements.CompatError)
ha_wheel = cast(Callable[[str, Path], Path], _requirements.ha_wheel)
min_ha_version = cast(Callable[[Path], str], _requirements.min_ha_version)
NEWEST_HA_VERSION = cast(str, _requirements.NEWEST_HA_VERSION)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE_DIR = REPO_ROOT / "custom_components" / "frequenz_dispatch"
DEFAULT_CACHE_DIR = REPO_ROOT / ".compat-cache"
DEFAULT_HACS = REPO_ROOT / "hacs.json"

ROOT_PACKAGE = "homeassistant"
_ENUM_BASES = frozenset({"Enum", "IntEnum", "StrEnum", "Flag", "IntFlag", "ReprEnum"})
# Attributes every enum class has besides its members.
_ENUM_API = frozenset({"name", "value"})
# Attributes every module has.
_MODULE_ATTRS = frozenset(
    {
        "__all__",
        "__builtins__",
        "__dict__",
        "__doc__",
        "__file__",
        "__loader__",
        "__name__",
        "__package__",
        "__path__",
        "__spec__",
    }
)
_BREAKS_IN_RE = re.compile(r"^\d{4}\.\d{1,2}(?:\.\d+)?$")
_DEPRECATED_PREFIX = "_DEPRECATED_"

# --------------------------------------------------------------------------
# Our side: which homeassistant names does the integration use?


RefKind = Literal["import", "from", "attr"]
REF_KINDS: tuple[RefKind, ...] = ("import", "from", "attr")


@dataclass(frozen=True)
class HaRef:
    """One use of a ``homeassistant`` module or name in our source.

    ``target`` is the dotted path that must exist, e.g.
    ``homeassistant.const.Platform`` or ``homeassistant.const.Platform.SENSOR``.
    ``known`` is how many leading parts of it another reference (the import
    that bound the name) already covers; only the parts after it are reported.
    """

    kind: RefKind
    target: tuple[str, ...]
    path: Path
    line: int
    known: int = 0

    @property
    def label(self) -> str:
        """The dotted target, e.g. ``homeassistant.const.Platform``."""
        return ".".join(self.target)


def _chain(node: ast.expr) -> list[str] | None:
    """``a.b.c`` → ``["a", "b", "c"]``; None if the root is not a plain name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def _is_ha(module: str | None) -> bool:
    return module is not None and (
        module == ROOT_PACKAGE or module.startswith(f"{ROOT_PACKAGE}.")
    )


_NAMED_BINDERS = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.ExceptHandler,
    ast.MatchAs,
    ast.MatchStar,
)


def _rebound_names(tree: ast.AST) -> set[str]:
    """Names bound anywhere in ``tree`` other than by an import statement."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, _NAMED_BINDERS) and node.name is not None:
            names.add(node.name)
    return names


def references_in_source(source: str, path: Path) -> list[HaRef]:
    """The ``homeassistant`` references in one Python source file."""
    tree = parse_module_source(source, str(path))
    refs: list[HaRef] = []
    # Local name → the dotted homeassistant path it is bound to.
    bindings: dict[str, tuple[str, ...]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _is_ha(alias.name):
                    continue
                parts = tuple(alias.name.split("."))
                refs.append(HaRef("import", parts, path, node.lineno))
                if alias.asname:
                    bindings[alias.asname] = parts
                else:
                    bindings[parts[0]] = parts[:1]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            if not _is_ha(node.module):
                continue
            module = tuple(cast(str, node.module).split("."))
            for alias in node.names:
                if alias.name == "*":
                    refs.append(HaRef("import", module, path, node.lineno))
                    continue
                refs.append(HaRef("from", (*module, alias.name), path, node.lineno))
                bindings[alias.asname or alias.name] = (*module, alias.name)

    # Names that are also bound by something other than an import (a
    # parameter, a loop or comprehension variable, ...) may not refer to the
    # imported object everywhere; their attribute chains are not checked.
    for name in _rebound_names(tree):
        bindings.pop(name, None)

    # Attribute chains rooted at one of those bindings; only the outermost
    # Attribute of a chain (``a.b.c``, not also ``a.b``).
    inner: set[int] = set()
    chains: list[tuple[ast.Attribute, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Attribute):
                inner.add(id(node.value))
            chain = _chain(node)
            if chain and chain[0] in bindings:
                chains.append((node, chain))
    for node, chain in chains:
        if id(node) in inner:
            continue
        base = bindings[chain[0]]
        refs.append(
            HaRef("attr", (*base, *chain[1:]), path, node.lineno, known=len(base))
        )
    return refs


def collect_references(source_dir: Path) -> list[HaRef]:
    """The ``homeassistant`` references of every ``.py`` file under source_dir."""
    refs: list[HaRef] = []
    for path in sorted(source_dir.rglob("*.py")):
        refs.extend(references_in_source(path.read_text(), path))
    return refs


# --------------------------------------------------------------------------
# HA's side: what does a module of the wheel define?


def _parenthesize_except(source: str) -> str:
    """Rewrite PEP 758 ``except A, B:`` to ``except (A, B):``.

    HA 2026.x targets Python 3.14, whose grammar allows unparenthesized
    exception lists; :func:`ast.parse` of Python 3.13 does not.  The tokenizer
    copes with them, so find them by tokens and add the parentheses.
    """
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    edits: list[tuple[tuple[int, int], str]] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == tokenize.NAME and tok.string == "except":
            j = i + 1
            if tokens[j].type == tokenize.OP and tokens[j].string == "*":
                j += 1
            depth = 0
            comma = False
            k = j
            while k < len(tokens):
                t = tokens[k]
                if t.type == tokenize.OP:
                    if t.string in "([{":
                        depth += 1
                    elif t.string in ")]}":
                        depth -= 1
                    elif t.string == "," and depth == 0:
                        comma = True
                    elif t.string == ":" and depth == 0:
                        break
                k += 1
            if comma and k < len(tokens):
                edits += [(tokens[j].start, "("), (tokens[k].start, ")")]
            i = k
        i += 1
    lines = source.splitlines(keepends=True)
    for (row, col), text in sorted(edits, reverse=True):
        line = lines[row - 1]
        lines[row - 1] = line[:col] + text + line[col:]
    return "".join(lines)


def parse_module_source(source: str, filename: str) -> ast.Module:
    """Parse HA source, accepting Python 3.14 syntax we know how to rewrite."""
    try:
        return ast.parse(source, filename=filename)
    except SyntaxError:
        return ast.parse(_parenthesize_except(source), filename=filename)


Binding = tuple[str, str] | str  # (module, name) of an import, or a local alias


@dataclass
class ModuleInfo:
    """Module-level bindings of one ``homeassistant`` module."""

    name: str
    is_package: bool
    defined: set[str] = field(default_factory=set)
    aliases: dict[str, Binding] = field(default_factory=dict)
    classes: dict[str, ast.ClassDef] = field(default_factory=dict)
    star_imports: list[str] = field(default_factory=list)
    deprecated: dict[str, str] = field(default_factory=dict)
    all_names: list[str] | None = None

    @property
    def has_getattr(self) -> bool:
        """Whether the module resolves some attributes dynamically."""
        return "__getattr__" in self.defined


def _target_names(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for elt in target.elts:
            yield from _target_names(elt)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)


def _breaks_in(value: ast.expr | None) -> str:
    """The "breaks in HA version" argument of a ``DeprecatedConstant(...)``."""
    if not isinstance(value, ast.Call):
        return ""
    for arg in reversed([*value.args, *(kw.value for kw in value.keywords)]):
        if (
            isinstance(arg, ast.Constant)
            and isinstance(arg.value, str)
            and _BREAKS_IN_RE.match(arg.value)
        ):
            return arg.value
    return ""


def _absolute(module: str, is_package: bool, level: int, target: str | None) -> str:
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    return ".".join([*parts, target] if target else parts)


class _ModuleScanner:
    """Collects a module's module-level bindings (not those inside def/class)."""

    def __init__(self, name: str, is_package: bool) -> None:
        self.info = ModuleInfo(name=name, is_package=is_package)

    def visit(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.visit_stmt(stmt)

    def visit_stmt(self, stmt: ast.stmt) -> None:
        info = self.info
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            info.defined.add(stmt.name)
        elif isinstance(stmt, ast.ClassDef):
            info.defined.add(stmt.name)
            info.classes[stmt.name] = stmt
        elif isinstance(stmt, ast.Assign):
            self.assign(stmt)
        elif isinstance(stmt, ast.AnnAssign):
            if stmt.value is not None:
                info.defined.update(_target_names(stmt.target))
        elif isinstance(stmt, ast.TypeAlias):
            info.defined.update(_target_names(stmt.name))
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            self.import_(stmt)
        else:
            self.block(stmt)

    def assign(self, stmt: ast.Assign) -> None:
        info = self.info
        for target in stmt.targets:
            for bound in _target_names(target):
                info.defined.add(bound)
                if bound.startswith(_DEPRECATED_PREFIX):
                    deprecated = bound.removeprefix(_DEPRECATED_PREFIX)
                    info.deprecated[deprecated] = _breaks_in(stmt.value)
            if not isinstance(target, ast.Name):
                continue
            if isinstance(stmt.value, ast.Name):
                info.aliases[target.id] = stmt.value.id
            if target.id == "__all__" and isinstance(stmt.value, ast.List | ast.Tuple):
                info.all_names = [
                    e.value
                    for e in stmt.value.elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str)
                ]

    def import_(self, stmt: ast.Import | ast.ImportFrom) -> None:
        info = self.info
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.asname:
                    info.defined.add(alias.asname)
                    info.aliases[alias.asname] = (alias.name, "")
                else:
                    info.defined.add(alias.name.split(".")[0])
            return
        source = (
            _absolute(info.name, info.is_package, stmt.level, stmt.module)
            if stmt.level
            else cast(str, stmt.module)
        )
        for alias in stmt.names:
            if alias.name == "*":
                info.star_imports.append(source)
                continue
            bound = alias.asname or alias.name
            info.defined.add(bound)
            info.aliases[bound] = (source, alias.name)

    def block(self, stmt: ast.stmt) -> None:
        """Statements whose bodies run at module level (if, try, for, ...)."""
        if isinstance(stmt, ast.For | ast.AsyncFor):
            self.info.defined.update(_target_names(stmt.target))
        elif isinstance(stmt, ast.With | ast.AsyncWith):
            for item in stmt.items:
                if item.optional_vars is not None:
                    self.info.defined.update(_target_names(item.optional_vars))
        elif isinstance(stmt, ast.Try | ast.TryStar):
            for handler in stmt.handlers:
                self.visit(handler.body)
            self.visit(stmt.finalbody)
        elif isinstance(stmt, ast.Match):
            for case in stmt.cases:
                self.visit(case.body)
        for attr in ("body", "orelse"):
            value = getattr(stmt, attr, None)
            if isinstance(value, list):
                self.visit([s for s in value if isinstance(s, ast.stmt)])


def module_info(tree: ast.Module, name: str, is_package: bool) -> ModuleInfo:
    """Collect what a module binds at module level (not inside def/class)."""
    scanner = _ModuleScanner(name, is_package)
    scanner.visit(tree.body)
    return scanner.info


Status = Literal["ok", "deprecated", "missing"]


class HaSource:
    """Module-level names of the ``homeassistant`` package in a wheel."""

    def __init__(self, wheel: Path) -> None:
        self.wheel = wheel
        self._zip = zipfile.ZipFile(wheel)
        self.modules: dict[str, str] = {}  # dotted name → file in the wheel
        self.packages: set[str] = set()
        for entry in self._zip.namelist():
            if not entry.endswith(".py") or not entry.startswith(f"{ROOT_PACKAGE}/"):
                continue
            parts = entry.removesuffix(".py").split("/")
            for i in range(1, len(parts)):
                self.packages.add(".".join(parts[:i]))
            if parts[-1] == "__init__":
                self.modules[".".join(parts[:-1])] = entry
            else:
                self.modules.setdefault(".".join(parts), entry)
        self._infos: dict[str, ModuleInfo] = {}

    def close(self) -> None:
        """Close the wheel."""
        self._zip.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def is_module(self, dotted: str) -> bool:
        """Whether ``dotted`` is a module or (namespace) package in the wheel."""
        return dotted in self.modules or dotted in self.packages

    def info(self, dotted: str) -> ModuleInfo:
        """Parsed module-level bindings of a module (cached)."""
        if dotted not in self._infos:
            entry = self.modules.get(dotted)
            is_package = dotted in self.packages
            if entry is None:  # namespace package
                self._infos[dotted] = ModuleInfo(name=dotted, is_package=True)
            else:
                source = self._zip.read(entry).decode("utf-8")
                tree = parse_module_source(source, entry)
                self._infos[dotted] = module_info(tree, dotted, is_package)
        return self._infos[dotted]

    def _public_names(self, dotted: str, seen: set[str]) -> set[str]:
        """Names ``from dotted import *`` binds."""
        if dotted in seen or not self.is_module(dotted):
            return set()
        seen.add(dotted)
        info = self.info(dotted)
        if info.all_names is not None:
            return set(info.all_names)
        names = {n for n in info.defined if not n.startswith("_")}
        for star in info.star_imports:
            names |= self._public_names(star, seen)
        return names

    def lookup(self, module: str, name: str) -> tuple[Status, str]:
        """Is ``name`` an attribute of ``module``? Returns (status, note)."""
        info = self.info(module)
        if name in info.defined or name in _MODULE_ATTRS:
            return "ok", ""
        if info.is_package and self.is_module(f"{module}.{name}"):
            return "ok", "submodule"
        for star in info.star_imports:
            if name in self._public_names(star, set()):
                return "ok", f"via 'from {star} import *'"
        if info.has_getattr:
            if name in info.deprecated:
                breaks = info.deprecated[name]
                return "deprecated", (
                    f"deprecated, removed in HA {breaks}" if breaks else "deprecated"
                )
            if info.all_names is not None and name in info.all_names:
                return "ok", "listed in __all__ (module __getattr__)"
            return "missing", "not defined (module has __getattr__, name not listed)"
        return "missing", "not defined"

    def resolve_class(
        self, module: str, name: str, depth: int = 0
    ) -> ast.ClassDef | None:
        """The class ``module.name`` refers to, following aliases and imports."""
        if depth > 10 or not self.is_module(module):
            return None
        info = self.info(module)
        if name in info.classes:
            return info.classes[name]
        alias = info.aliases.get(name)
        if isinstance(alias, str):
            return self.resolve_class(module, alias, depth + 1)
        if alias is not None and alias[1]:
            return self.resolve_class(alias[0], alias[1], depth + 1)
        return None


def _is_enum(cls: ast.ClassDef) -> bool:
    for base in cls.bases:
        base_name = (
            base.id
            if isinstance(base, ast.Name)
            else base.attr
            if isinstance(base, ast.Attribute)
            else ""
        )
        if base_name in _ENUM_BASES:
            return True
    return False


def _class_members(cls: ast.ClassDef) -> set[str]:
    members: set[str] = set()
    for stmt in cls.body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                members.update(_target_names(target))
        elif isinstance(stmt, ast.AnnAssign):
            members.update(_target_names(stmt.target))
        elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            members.add(stmt.name)
    return members


# --------------------------------------------------------------------------
# Checking references against the wheel


@dataclass(frozen=True)
class Finding:
    """A reference that is missing (or only present as a deprecated alias)."""

    ref: HaRef
    status: Status
    missing: str  # e.g. "homeassistant.core:DefinitelyNotAName"
    note: str

    def describe(self, root: Path | None = None) -> str:
        """``module:name  (file:line)  note``."""
        path = self.ref.path
        if root is not None and path.is_relative_to(root):
            path = path.relative_to(root)
        note = f"  [{self.note}]" if self.note else ""
        return f"{self.missing}  ({path}:{self.ref.line}){note}"


def check_reference(src: HaSource, ref: HaRef) -> Finding | None:
    """None when ``ref`` exists in ``src``; otherwise what is missing."""
    target = ref.target
    # Longest prefix that is a module.
    k = len(target)
    while k > 0 and not src.is_module(".".join(target[:k])):
        k -= 1

    def finding(index: int, status: Status, note: str) -> Finding | None:
        if index < ref.known:  # the import that bound the name reports it
            return None
        module = ".".join(target[:index]) or "(none)"
        return Finding(ref, status, f"{module}:{'.'.join(target[index:])}", note)

    if ref.kind == "import":
        if k < len(target):
            return Finding(ref, "missing", ".".join(target), "no such module")
        return None
    if ref.kind == "from" and k < len(target) - 1:
        module = ".".join(target[:-1])
        return Finding(
            ref, "missing", f"{module}:{target[-1]}", f"no such module {module}"
        )
    if k == len(target):
        return None
    module, name = ".".join(target[:k]), target[k]
    status, note = src.lookup(module, name)
    if status != "ok":
        return finding(k, status, note)
    if k + 1 < len(target):  # module.Name.attr: check enum members
        cls = src.resolve_class(module, name)
        attr = target[k + 1]
        if (
            cls is not None
            and _is_enum(cls)
            and not attr.startswith("_")
            and attr not in _ENUM_API
            and attr not in _class_members(cls)
        ):
            return finding(k + 1, "missing", f"not a member of enum {cls.name}")
    return None


@dataclass
class NamesResult:
    """The outcome of checking the integration's HA names against one release."""

    ha_version: str
    files: int
    references: list[HaRef]
    missing: list[Finding]
    deprecated: list[Finding]

    @property
    def ok(self) -> bool:
        """True when nothing is missing (deprecations are warnings)."""
        return not self.missing

    def summary(self, root: Path | None = None) -> str:
        """A line plus one line per problem."""
        kinds = {k: sum(r.kind == k for r in self.references) for k in REF_KINDS}
        head = (
            f"HA {self.ha_version}: {'OK' if self.ok else 'FAIL'} "
            f"({self.files} files; {kinds['import']} module imports, "
            f"{kinds['from']} from-imports, {kinds['attr']} attribute uses"
            + (f"; {len(self.missing)} missing" if self.missing else "")
            + ")"
        )
        lines = [head]
        lines += [f"    missing: {f.describe(root)}" for f in self.missing]
        lines += [f"    warning: {f.describe(root)}" for f in self.deprecated]
        return "\n".join(lines)


def check_ha_names(
    source_dir: Path,
    ha_version: str = NEWEST_HA_VERSION,
    cache_dir: Path = DEFAULT_CACHE_DIR,
) -> NamesResult:
    """Check the ``homeassistant`` names used under ``source_dir``."""
    refs = collect_references(source_dir)
    missing: list[Finding] = []
    deprecated: list[Finding] = []
    seen: set[tuple[str, Path, int]] = set()
    with HaSource(ha_wheel(ha_version, cache_dir)) as src:
        for ref in refs:
            found = check_reference(src, ref)
            if found is None or (found.missing, ref.path, ref.line) in seen:
                continue
            seen.add((found.missing, ref.path, ref.line))
            (missing if found.status == "missing" else deprecated).append(found)
    return NamesResult(
        ha_version=ha_version,
        files=len(list(source_dir.rglob("*.py"))),
        references=refs,
        missing=missing,
        deprecated=deprecated,
    )


# --------------------------------------------------------------------------
# Gate 2b: manifest.json and hacs.json

MANIFEST_KEYS = (
    "domain",
    "name",
    "version",
    "codeowners",
    "documentation",
    "issue_tracker",
    "config_flow",
    "iot_class",
    "integration_type",
    "requirements",
)
IOT_CLASSES = frozenset(
    {
        "assumed_state",
        "calculated",
        "cloud_polling",
        "cloud_push",
        "local_polling",
        "local_push",
    }
)
INTEGRATION_TYPES = frozenset(
    {"device", "entity", "hardware", "helper", "hub", "service", "system", "virtual"}
)


def check_metadata(manifest: Path, hacs: Path) -> list[str]:
    """Problems with manifest.json / hacs.json (empty when fine)."""
    problems: list[str] = []
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError) as err:
        return [f"{manifest}: {err}"]
    problems += [
        f"{manifest.name}: missing '{k}'" for k in MANIFEST_KEYS if k not in data
    ]
    if "domain" in data and data["domain"] != manifest.parent.name:
        problems.append(
            f"{manifest.name}: domain {data['domain']!r} != directory "
            f"{manifest.parent.name!r}"
        )
    if "iot_class" in data and data["iot_class"] not in IOT_CLASSES:
        problems.append(f"{manifest.name}: unknown iot_class {data['iot_class']!r}")
    if "integration_type" in data and data["integration_type"] not in INTEGRATION_TYPES:
        problems.append(
            f"{manifest.name}: unknown integration_type {data['integration_type']!r}"
        )
    for key in ("codeowners", "requirements"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append(f"{manifest.name}: '{key}' must be a list of strings")
    if not isinstance(data.get("version", ""), str):
        problems.append(f"{manifest.name}: 'version' must be a string")
    try:
        hacs_data = json.loads(hacs.read_text())
    except (OSError, ValueError) as err:
        return [*problems, f"{hacs}: {err}"]
    problems += [
        f"{hacs.name}: missing '{k}'"
        for k in ("name", "homeassistant")
        if k not in hacs_data
    ]
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ha-version",
        action="append",
        help=f"HA release to check (repeatable; default: {NEWEST_HA_VERSION} and "
        "the hacs.json minimum)",
    )
    parser.add_argument("--source-dir", type=Path, default=DEFAULT_SOURCE_DIR)
    parser.add_argument("--hacs", type=Path, default=DEFAULT_HACS)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    args = parser.parse_args(argv)
    source_dir: Path = args.source_dir.resolve()

    problems = check_metadata(source_dir / "manifest.json", args.hacs)
    for problem in problems:
        print(f"gate 2b: {problem}")
    print(f"gate 2b: manifest.json / hacs.json: {'FAIL' if problems else 'OK'}")

    shown = (
        source_dir.relative_to(REPO_ROOT)
        if source_dir.is_relative_to(REPO_ROOT)
        else source_dir
    )
    print(f"gate 2: homeassistant names used in {shown}")
    names_failed = False
    try:
        versions: list[str] = args.ha_version or [
            NEWEST_HA_VERSION,
            min_ha_version(args.hacs),
        ]
        for version in dict.fromkeys(versions):
            result = check_ha_names(source_dir, version, args.cache_dir)
            print(f"  {result.summary(REPO_ROOT)}")
            names_failed |= not result.ok
    except (CompatError, SyntaxError, OSError) as err:
        print(f"gate 2: ERROR: {err}", file=sys.stderr)
        return 1
    print(f"gate 2: {'FAIL' if names_failed else 'OK'}")
    return 1 if problems or names_failed else 0


if __name__ == "__main__":
    sys.exit(main())
