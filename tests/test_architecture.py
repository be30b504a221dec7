"""The import rules of docs/architecture.md, read from the source with `ast`, and the size limit.

Every `import` and `from ... import` in every module under gateway/ and drivers/ counts, at
module level or inside a function, relative (`from . import x`) or absolute, and so does a
dynamic `importlib.import_module("...")` with a literal name. A broken rule fails with the
module, the line and the rule. LAYERS below is the one table of rules; it mirrors the table
in docs/architecture.md, and a test checks that the two agree.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "drivers")
DOC = ROOT / "docs" / "architecture.md"
MAX_LINES = 400  # the hard CI line; ~300 is the hint to split


class Layer(NamedTuple):
    members: tuple[str, ...]  # module names (a name covers its submodules); `*` is one name
    may_import: tuple[str, ...]  # layer names, module names, "own family" or "anything"
    dynamic: bool = False  # may call importlib.import_module / __import__


# The import rules (docs/architecture.md, "Import rules"). A module belongs to the layer with
# the longest matching member; the package roots (`gateway`, `drivers`: docstrings only) may be
# imported by anyone and import nothing. Every layer lists itself where it may import itself.
LAYERS: dict[str, Layer] = {
    "package root": Layer(("gateway", "drivers"), ()),
    "foundation": Layer(
        (
            "gateway.model",
            "gateway.errors",
            "gateway.section",
            "gateway.clock",
            "gateway.collector",
            "gateway.supervise",
            "gateway.contract",
            "gateway.schema",
            "gateway.hotplug",
            "gateway.notify",
            "gateway.logs",
        ),
        ("foundation",),
    ),
    "registry": Layer(("gateway.registry",), ("foundation", "drivers"), dynamic=True),
    "config": Layer(
        ("gateway.config",),
        ("foundation", "registry", "config", "gateway.alerts.config", "gateway.alerts.rules"),
    ),
    "outbox": Layer(("gateway.outbox",), ("foundation", "outbox")),
    "pipeline": Layer(("gateway.pipeline",), ("foundation", "outbox", "pipeline")),
    "uplink": Layer(("gateway.uplink",), ("foundation", "config", "outbox", "uplink")),
    "alerts": Layer(("gateway.alerts",), ("foundation", "config", "outbox", "pipeline", "alerts")),
    "daemon": Layer(
        (
            "gateway.daemon",
            "gateway.runtime",
            "gateway.reload",
            "gateway.report",
            "gateway.monitor",
        ),
        ("foundation", "registry", "config", "outbox", "pipeline", "uplink", "alerts", "daemon"),
    ),
    "cli": Layer(("gateway.cli", "gateway.__main__"), ("anything",), dynamic=True),
    "demo": Layer(("gateway.demo",), ("anything",), dynamic=True),
    "driver": Layer(("drivers.*",), ("foundation", "own family")),
    "driver sim/demo": Layer(
        ("drivers.*.sim", "drivers.*.demo"),
        ("foundation", "gateway.config.profiles", "own family"),
    ),
}

# Imports that break a rule and are being fixed, each with its reason (none today). An entry
# that no longer occurs fails test_known_violations_still_occur.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()

# Modules over MAX_LINES, each with the reason (none today). An entry that is back under the
# limit fails test_long_modules_are_still_long.
LONG_MODULES: dict[str, str] = {}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (the longest name that is one of ours)
    line: int
    dynamic: bool = False


def _module_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _module_files()


def _ours(name: str) -> str | None:
    """The longest prefix of `name` that is one of our modules, or None (stdlib, third party)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _from_target(base: str, names: list[ast.alias]) -> list[str]:
    """`from base import a, b`: each name that is a submodule is the target, else `base`."""
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in names]


def _base(node: ast.ImportFrom, package: str) -> str:
    """The module `from X import ...` names; relative forms resolve against `package`."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, *([node.module] if node.module else [])])


def _dynamic_name(call: ast.Call) -> str | None:
    """The literal (or literal prefix of an f-string) module name of a dynamic import."""
    if not call.args:
        return None
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values:
        head = arg.values[0]
        if isinstance(head, ast.Constant) and isinstance(head.value, str):
            return head.value.rstrip(".")
    return None


def _is_dynamic_import(call: ast.Call) -> bool:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ("import_module", "__import__")


def imports_of(module: str) -> list[Import]:
    path = MODULES[module]
    return read_imports(module, path.read_text(encoding="utf-8"), path.name == "__init__.py")


def read_imports(module: str, source: str, is_package: bool) -> list[Import]:
    """Every import of ours in `source`, the text of `module` (a package's `__init__` if
    `is_package`), at any depth: relative forms resolve against the module's package."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(source, module)):
        if isinstance(node, ast.Import):
            targets, dynamic = [a.name for a in node.names], False
        elif isinstance(node, ast.ImportFrom):
            targets, dynamic = _from_target(_base(node, package), node.names), False
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            targets, dynamic = [_dynamic_name(node) or ""], True
        else:
            continue
        for target in dict.fromkeys(targets):  # `from m import a, b`: m once
            ours = _ours(target)
            if ours is not None or dynamic:
                found.append(Import(module, ours or "<computed>", node.lineno, dynamic))
    return found


def _matches(module: str, pattern: str) -> bool:
    return fnmatchcase(module, pattern) or fnmatchcase(module, pattern + ".*")


def layer_of(module: str) -> str | None:
    """The layer with the longest member matching `module`; None when it is in none."""
    best: tuple[int, str] | None = None
    for name, layer in LAYERS.items():
        for member in layer.members:
            # a package root covers its `__init__` only: a module in no other layer is in none
            matched = module == member if name == "package root" else _matches(module, member)
            if matched and (best is None or len(member) > best[0]):
                best = (len(member), name)
    return best[1] if best else None


def _family(module: str) -> str:
    return ".".join(module.split(".")[:2])


def broken_rule(imp: Import) -> str | None:
    """Why `imp` breaks a rule, or None when it keeps to them."""
    source = layer_of(imp.module)
    if source is None:
        return f"{imp.module} is in no layer of LAYERS"
    layer = LAYERS[source]
    if imp.dynamic and not layer.dynamic:
        return f"{source} modules do not import dynamically (only gateway.registry finds drivers)"
    if imp.target == "<computed>":
        return None
    target_layer = layer_of(imp.target)
    if target_layer == "package root" or "anything" in layer.may_import:
        return None
    for allowed in layer.may_import:
        if allowed == "own family":
            if imp.target.startswith("drivers.") and _family(imp.target) == _family(imp.module):
                return None
        elif allowed in LAYERS:
            if target_layer == allowed:
                return None
        elif _matches(imp.target, allowed):
            return None
    return f"{source} may import only {', '.join(layer.may_import) or 'nothing'}"


def _violations() -> list[tuple[Import, str]]:
    found = []
    for module in MODULES:
        for imp in imports_of(module):
            rule = broken_rule(imp)
            if rule is not None:
                found.append((imp, rule))
    return found


def _where(imp: Import) -> str:
    return f"{MODULES[imp.module].relative_to(ROOT)}:{imp.line}"


def test_every_import_keeps_to_the_rules() -> None:
    new = [
        f"{_where(imp)}: {imp.module} imports {imp.target}: {rule}"
        for imp, rule in _violations()
        if (imp.module, imp.target) not in KNOWN_VIOLATIONS
    ]
    assert not new, "import rules (docs/architecture.md) broken:\n" + "\n".join(new)


def test_known_violations_still_occur() -> None:
    seen = {(imp.module, imp.target) for imp, _ in _violations()}
    gone = sorted(KNOWN_VIOLATIONS - seen)
    assert not gone, f"fixed: remove {gone} from KNOWN_VIOLATIONS"


def test_every_top_level_module_and_package_is_in_a_layer() -> None:
    members = {m for layer in LAYERS.values() for m in layer.members}
    unclassified = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).iterdir()):
            if path.suffix == ".py" and path.stem != "__init__":
                name = f"{package}.{path.stem}"
            elif path.is_dir() and any(path.glob("*.py")):
                name = f"{package}.{path.name}"
            else:
                continue
            if not any(fnmatchcase(name, m) for m in members):
                unclassified.append(name)
            elif package == "drivers" and path.suffix == ".py":
                unclassified.append(f"{name} (drivers/ holds one package per family)")
    assert not unclassified, f"add to a layer in LAYERS and docs/architecture.md: {unclassified}"
    stale = sorted(m for m in members if "*" not in m and m not in MODULES)
    assert not stale, f"LAYERS names modules that do not exist: {stale}"


def test_the_doc_states_the_same_rules() -> None:
    """The "Import rules" table of docs/architecture.md lists the same layers as LAYERS."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Import rules", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]  # no header
    in_doc = {}
    for row in rows:
        name, members, may_import, dynamic = (c.strip() for c in row.strip("|").split("|"))
        in_doc[name] = Layer(
            tuple(re.findall(r"`([^`]+)`", members)),
            tuple(t.strip().strip("`") for t in may_import.split(",") if t.strip() != "nothing"),
            dynamic == "yes",
        )
    assert in_doc == LAYERS


def test_the_doc_maps_every_package_and_top_level_module() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).iterdir()):
            if path.name.startswith(("_", ".")) and path.name != "__main__.py":
                continue
            if path.suffix == ".py" or (path.is_dir() and any(path.glob("*.py"))):
                shown = f"`{package}/{path.name}{'/' if path.is_dir() else ''}`"
                if shown not in text:
                    missing.append(shown)
    assert not missing, f"docs/architecture.md's package map lacks {missing}"


def test_no_module_is_over_the_line_limit() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in MODULES.values()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    unlisted = {path: n for path, n in long.items() if path not in LONG_MODULES}
    assert not unlisted, f"over {MAX_LINES} lines (split them): {unlisted}"


def test_long_modules_are_still_long() -> None:
    short = [
        path
        for path in LONG_MODULES
        if not (ROOT / path).exists()
        or len((ROOT / path).read_text(encoding="utf-8").splitlines()) <= MAX_LINES
    ]
    assert not short, f"now within {MAX_LINES} lines: remove {short} from LONG_MODULES"


# -- the checker itself, on made-up modules -------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "target", "broken"),
    [
        ("gateway.model", "gateway.errors", False),
        ("gateway.model", "gateway.outbox.store", True),
        ("gateway.outbox.store", "gateway.pipeline", True),
        ("gateway.pipeline", "gateway.outbox.store", False),
        ("gateway.uplink.session", "gateway.config.loader", False),
        ("gateway.uplink.session", "gateway.alerts.alert", True),
        ("gateway.alerts.engine", "gateway.uplink.payload", True),
        ("gateway.alerts.engine", "gateway.pipeline", False),
        ("gateway.config.loader", "gateway.alerts.config", False),
        ("gateway.config.loader", "gateway.alerts.engine", True),
        ("gateway.config.loader", "gateway.registry", False),
        ("gateway.daemon", "gateway.registry", False),
        ("gateway.daemon", "drivers.modbus", True),
        ("gateway.daemon", "gateway.cli.main", True),
        ("gateway.cli.main", "drivers.modbus.sim", False),
        ("gateway.registry", "drivers.serial", False),
        ("gateway.pipeline", "drivers", False),  # the package root: a docstring
        ("drivers.serial.bus", "drivers.serial.options", False),
        ("drivers.serial.bus", "drivers.modbus.rtu", True),
        ("drivers.serial.bus", "gateway.section", False),
        ("drivers.serial.bus", "gateway.config.profiles", True),
        ("drivers.serial.bus", "gateway.outbox.store", True),
        ("drivers.modbus.sim", "gateway.config.profiles", False),
        ("drivers.modbus.sim", "gateway.config.loader", True),
        ("drivers.modbus.demo", "drivers.serial.sim", True),
        ("gateway", "gateway.model", True),  # the package root imports nothing
        ("gateway.unclassified", "gateway.model", True),  # in no layer: nothing is allowed
    ],
)
def test_the_rules_as_stated(module: str, target: str, broken: bool) -> None:
    assert (broken_rule(Import(module, target, 1)) is not None) == broken


def test_dynamic_imports_only_where_allowed() -> None:
    assert broken_rule(Import("gateway.registry", "drivers", 1, dynamic=True)) is None
    assert broken_rule(Import("gateway.cli.main", "<computed>", 1, dynamic=True)) is None
    assert broken_rule(Import("gateway.daemon", "drivers", 1, dynamic=True)) is not None
    assert broken_rule(Import("drivers.ble", "<computed>", 1, dynamic=True)) is not None


def test_relative_function_level_and_dynamic_imports_are_all_read() -> None:
    source = """
import json
from . import rules
from .. import model
from ..config import profiles
from gateway.alerts import config as alert_config
import gateway.errors


def later(name):
    from gateway.outbox import database
    import importlib

    importlib.import_module("drivers.modbus")
    importlib.import_module(f"drivers.{name}")
    return importlib.import_module(name)
"""
    found = read_imports("gateway.alerts.engine", source, is_package=False)
    assert [(i.target, i.line, i.dynamic) for i in found] == [
        ("gateway.alerts.rules", 3, False),
        ("gateway.model", 4, False),
        ("gateway.config.profiles", 5, False),
        ("gateway.alerts.config", 6, False),  # a submodule, not the package
        ("gateway.errors", 7, False),
        ("gateway.outbox.database", 11, False),
        ("drivers.modbus", 14, True),
        ("drivers", 15, True),
        ("<computed>", 16, True),
    ]
    # in a package's __init__, `from . import x` is the package's own submodule
    (imp,) = read_imports("gateway.alerts", "from . import rules\n", is_package=True)
    assert imp.target == "gateway.alerts.rules"
