"""The layers hold: README's list of layers against the real import graph.

README's "Layers" section lists the layers from the bottom up, each with the
modules and packages it holds. This test reads every module of the
`provanchor` package, collects each import it can execute (top-level and
inside functions; `if TYPE_CHECKING:` blocks never run), and fails on an
import of a module in a higher layer, on a package cycle, and on a module the
list does not place. It reads source, not timings: `provanchor --help` stays
fast because the CLI's entry module imports nothing heavy, and that is an
import-graph fact too.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "provanchor"


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int


def read_layers(readme: str) -> list[tuple[str, list[str]]]:
    """(layer name, module prefixes) from README's "### Layers" list, bottom first."""
    section = readme.split("### Layers", 1)[1].split("\n#", 1)[0]
    layers = []
    for match in re.finditer(r"^\d+\. \*\*(.+?)\*\*: (.+)$", section, re.M):
        layers.append((match.group(1), re.findall(r"`([\w.]+)`", match.group(2))))
    return layers


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> list[Import]:
    """Every provanchor import the module can execute, wherever it stands in the module."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(Import(name, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(Import(name, target, node.lineno))
            # `from provanchor.x import y` may import the module provanchor.x.y
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                if (ROOT / Path(*candidate.split("."))).with_suffix(".py").exists() or (
                    ROOT / Path(*candidate.split("."))
                ).is_dir():
                    found.append(Import(name, candidate, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return [i for i in found if i.imported == "provanchor" or i.imported.startswith("provanchor.")]


def layer_of(module: str, layers: list[tuple[str, list[str]]]) -> int | None:
    """The index of the layer holding `module`: the longest listed prefix wins; `X.__init__` means X alone."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            if prefix.endswith(".__init__"):
                matches = module == prefix.removesuffix(".__init__")
            else:
                matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, as a path that starts and ends at the same node, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := walk(target)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := walk(node)) is not None:
            return cycle
    return None


LAYERS = read_layers((ROOT / "README.md").read_text())
MODULES = sorted(PACKAGE.rglob("*.py"))


def test_readme_lists_the_layers_in_order() -> None:
    names = [name for name, _ in LAYERS]
    assert names[0] == "errors" and names[1] == "formats" and names[-1] == "CLI", names
    assert len(names) == len(set(names)) >= 10


def test_every_module_has_a_layer() -> None:
    unplaced = [module_name(path) for path in MODULES if layer_of(module_name(path), LAYERS) is None]
    assert unplaced == [], f"modules README's layer list does not place: {unplaced}"


def test_no_import_runs_up_the_layers() -> None:
    upward = []
    for path in MODULES:
        for found in imports_of(path):
            mine, theirs = layer_of(found.importer, LAYERS), layer_of(found.imported, LAYERS)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(
                    f"{found.importer}:{found.line} ({LAYERS[mine][0]}) imports {found.imported} ({LAYERS[theirs][0]})"
                )
    assert upward == [], "imports that run up the layers:\n" + "\n".join(upward)


def test_no_package_imports_another_in_a_cycle() -> None:
    edges: dict[str, set[str]] = {}
    for path in MODULES:
        for found in imports_of(path):
            a, b = package_of(found.importer), package_of(found.imported)
            if a != b and "provanchor" not in (a, b):
                edges.setdefault(a, set()).add(b)
    assert find_cycle(edges) is None, f"package cycle: {' -> '.join(find_cycle(edges) or [])}"


def test_the_formats_layer_reads_nothing_above_it() -> None:
    """The bottom layer in the words of the issue: no pipeline, index, verify, replay, agent or CLI."""
    forbidden = ("pipeline", "index", "verify", "replay", "agent", "cli", "chain", "ipfs", "snapshot")
    bottom = {prefix for _, prefixes in LAYERS[:2] for prefix in prefixes}
    for path in MODULES:
        name = module_name(path)
        if layer_of(name, LAYERS) not in (0, 1):
            continue
        for found in imports_of(path):
            assert package_of(found.imported).split(".")[-1] not in forbidden, (name, found.imported, bottom)


HEAVY = ("web3", "eth_account", "eth_abi", "eth_utils", "requests", "ipfshttpclient", "pydantic", "numpy", "sqlite3")
"""Libraries whose import costs tens to hundreds of milliseconds: help must never load them."""

_MODULES_AFTER_HELP = """
import json, sys
from provanchor.cli.main import COMMANDS, main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps({"loaded": sorted({m.split('.')[0] for m in sys.modules}), "commands": sorted(COMMANDS)}))
"""


def _loaded_by(*args: str) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _MODULES_AFTER_HELP, *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_help_loads_no_heavy_library() -> None:
    """`provanchor --help` and every `provanchor COMMAND --help` (query's included) import only the CLI:
    the 0.3 s budget is kept by what is imported, checked here in the real import graph, not by a clock."""
    top = _loaded_by("--help")
    assert [m for m in top["loaded"] if m in HEAVY] == []
    for command in top["commands"]:
        loaded = _loaded_by(command, "--help")["loaded"]
        assert [m for m in loaded if m in HEAVY] == [], (command, [m for m in loaded if m in HEAVY])


# ------------------------------------------------------------------ the checker itself


def test_the_checker_sees_function_level_imports_and_skips_type_checking(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from provanchor.cli import main\n"
        "def f():\n    from provanchor.agent import run\n"
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = [i.imported for i in imports_of(source)]
    finally:
        ROOT = saved
    assert found == ["provanchor.agent"]


@pytest.mark.parametrize(
    ("edges", "cyclic"),
    [({"a": {"b"}, "b": {"c"}}, False), ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True), ({"a": {"a"}}, True)],
)
def test_the_cycle_finder(edges: dict[str, set[str]], cyclic: bool) -> None:
    assert (find_cycle(edges) is not None) is cyclic


def test_the_layer_lookup_prefers_the_longest_prefix() -> None:
    layers = [("low", ["provanchor.ml.events"]), ("high", ["provanchor.ml.__init__", "provanchor.agent"])]
    assert layer_of("provanchor.ml.events", layers) == 0
    assert layer_of("provanchor.ml", layers) == 1
    assert layer_of("provanchor.ml.tracker", layers) is None
    assert layer_of("provanchor.agentx", layers) is None
