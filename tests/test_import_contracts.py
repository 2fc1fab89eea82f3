"""Import contracts, read from the source with ``ast``: the app never reaches torch, no cycles.

Every module is found by glob, so a new module is covered without editing this file. An import
counts wherever it stands (a lazy import inside a function still loads its module when called),
except under ``if TYPE_CHECKING:``, which never runs.
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# Packages that bring torch with them.
TORCH_PACKAGES = frozenset({"torch", "torchvision"})
# The library, the training scripts and the app, each as globs under the repository root.
LIBRARY_GLOBS = ("malgan/*.py", "malgan/*/*.py")
# A library module longer than this holds more than one concept: split it.
MAX_MODULE_LINES = 500
TRAIN_GLOBS = ("train/*.py",)
APP_GLOBS = ("streamlit_app.py", "pages/*.py")
# The library may import neither the training scripts nor the app's pages.
LIBRARY_FORBIDDEN = ("train", "pages")
# The app-side modules that the house style names: never torch modules, whatever they import.
APP_CORE = frozenset({"malgan.data", "malgan.latent", "malgan.runtime", "malgan.metrics"})
# Torch modules that exist today; a sanity check that the detector sees direct torch imports.
KNOWN_TORCH_MODULES = frozenset({"malgan.nn.nets", "malgan.nn.onnx_export"})


@dataclass(frozen=True)
class ImportGraph:
    """Modules of a source tree and what each one imports.

    Attributes:
        paths: Dotted module name -> its file.
        names: Module -> every dotted name it imports, as written (relative ones resolved).
        edges: Module -> the project modules it imports (their parent packages included).
        external: Module -> top-level names of the non-project packages it imports.
    """

    paths: dict[str, Path]
    names: dict[str, frozenset[str]]
    edges: dict[str, frozenset[str]]
    external: dict[str, frozenset[str]]

    def importing(self, packages: Iterable[str]) -> set[str]:
        """Modules that import any of ``packages`` themselves."""
        wanted = set(packages)
        return {module for module, names in self.external.items() if names & wanted}

    def path_to(self, start: str, targets: set[str]) -> list[str] | None:
        """Shortest import chain from ``start`` to a module in ``targets``, or None."""
        parent: dict[str, str | None] = {start: None}
        queue = [start]
        for module in queue:
            if module in targets:
                chain = [module]
                while (previous := parent[chain[-1]]) is not None:
                    chain.append(previous)
                return chain[::-1]
            for nxt in sorted(self.edges.get(module, ())):
                if nxt not in parent:
                    parent[nxt] = module
                    queue.append(nxt)
        return None

    def cycle(self, modules: Iterable[str]) -> list[str] | None:
        """One import cycle among ``modules`` (first module repeated at the end), or None."""
        inside = set(modules)
        sorter = graphlib.TopologicalSorter(
            {module: self.edges.get(module, frozenset()) & inside for module in inside}
        )
        try:
            sorter.prepare()
        except graphlib.CycleError as err:
            return list(err.args[1])
        return None


def module_name(path: Path, root: Path) -> str:
    """``malgan/data.py`` -> ``malgan.data``; ``malgan/__init__.py`` -> ``malgan``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterable[ast.AST]:
    """Every node that can run, skipping the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imported_names(tree: ast.AST, module: str, *, is_package: bool) -> set[str]:
    """Dotted names a module imports; ``from a import b`` gives both ``a`` and ``a.b``."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".") if package else []
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            if base:
                names.add(base)
            names.update(f"{base}.{alias.name}".strip(".") for alias in node.names)
    return names


def build_graph(root: Path, globs: Iterable[str]) -> ImportGraph:
    """Parse every file matched by ``globs`` under ``root`` into an import graph."""
    paths = {module_name(p, root): p for g in globs for p in sorted(root.glob(g))}
    project_tops = {name.split(".")[0] for name in paths}
    imported: dict[str, frozenset[str]] = {}
    edges: dict[str, frozenset[str]] = {}
    external: dict[str, frozenset[str]] = {}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names = imported_names(tree, module, is_package=path.name == "__init__.py")
        own_packages = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        targets: set[str] = set()
        outside: set[str] = set()
        for name in names:
            parts = name.split(".")
            if parts[0] not in project_tops:
                outside.add(parts[0])
                continue
            # Importing a.b.c runs a and a.b first: each prefix that is a module is reached.
            prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
            targets |= (prefixes & paths.keys()) - own_packages - {module}
        imported[module] = frozenset(names)
        edges[module] = frozenset(targets)
        external[module] = frozenset(outside)
    return ImportGraph(paths=paths, names=imported, edges=edges, external=external)


def torch_violations(graph: ImportGraph, app: Iterable[str], torch_modules: set[str]) -> list[str]:
    """One line per app module that reaches torch, with the chain that does it."""
    problems = []
    for module in sorted(app):
        if module in graph.importing(TORCH_PACKAGES):
            problems.append(f"{graph.paths[module]} imports torch")
            continue
        chain = graph.path_to(module, torch_modules)
        if chain is not None:
            problems.append(f"{graph.paths[module]} reaches torch: {' -> '.join(chain)} -> torch")
    return problems


def forbidden_imports(graph: ImportGraph, sources: Iterable[str], tops: Iterable[str]) -> list[str]:
    """One line per module of ``sources`` that imports anything under one of ``tops``."""
    banned = tuple(tops)
    problems = []
    for module in sorted(sources):
        hits = {name for name in graph.names[module] if name.split(".")[0] in banned}
        # ``from a import b`` names both a and a.b: report a only.
        outermost = {n for n in hits if not any(n.startswith(f"{h}.") for h in hits)}
        problems += [f"{graph.paths[module]} imports {name}" for name in sorted(outermost)]
    return problems


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return build_graph(REPO_ROOT, LIBRARY_GLOBS + TRAIN_GLOBS + APP_GLOBS)


@pytest.fixture(scope="module")
def library(graph: ImportGraph) -> set[str]:
    return {m for m in graph.paths if m.split(".")[0] == "malgan"}


@pytest.fixture(scope="module")
def torch_modules(graph: ImportGraph, library: set[str]) -> set[str]:
    """The allow-list: library modules that import torch themselves."""
    return graph.importing(TORCH_PACKAGES) & library


def test_discovery_finds_every_part(graph: ImportGraph) -> None:
    tops = {m.split(".")[0] for m in graph.paths}
    assert {"malgan", "train", "pages", "streamlit_app"} <= tops
    assert "malgan.metrics" in graph.paths and "train.pipeline" in graph.paths


def test_torch_modules_are_the_training_side(torch_modules: set[str]) -> None:
    assert torch_modules >= KNOWN_TORCH_MODULES, "the detector missed a direct torch import"
    assert not torch_modules & APP_CORE, f"app-side modules import torch: {torch_modules}"


def test_app_never_reaches_torch(
    graph: ImportGraph, library: set[str], torch_modules: set[str]
) -> None:
    app = {m for m in graph.paths if m.split(".")[0] in ("streamlit_app", "pages")}
    app |= library - torch_modules
    problems = torch_violations(graph, app, torch_modules)
    assert not problems, "\n".join(problems)


def test_library_imports_neither_train_nor_pages(graph: ImportGraph, library: set[str]) -> None:
    problems = forbidden_imports(graph, library, LIBRARY_FORBIDDEN)
    assert not problems, "\n".join(problems)


def test_library_and_train_have_no_import_cycle(graph: ImportGraph) -> None:
    modules = [m for m in graph.paths if m.split(".")[0] in ("malgan", "train")]
    cycle = graph.cycle(modules)
    assert cycle is None, " -> ".join(cycle or ())


def test_no_library_module_is_longer_than_500_lines() -> None:
    lengths = {
        path.name: len(path.read_text(encoding="utf-8").splitlines())
        for glob in LIBRARY_GLOBS
        for path in REPO_ROOT.glob(glob)
    }
    assert lengths and not {n: k for n, k in lengths.items() if k > MAX_MODULE_LINES}


# The analyser itself, on a made-up tree where every contract is broken once.
SYNTHETIC_TREE = {
    "lib/__init__.py": '"""A package."""\n',
    "lib/core.py": "import numpy as np\nfrom lib import helpers\n",
    "lib/helpers.py": "def f():\n    from . import nets\n    return nets\n",
    "lib/nets.py": "import torch.nn\n",
    "lib/typed.py": (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n"
        "else:\n    import json\n"
    ),
    "lib/upward.py": "from scripts.run import main\n",
    "lib/loop_a.py": "import lib.loop_b\n",
    "lib/loop_b.py": "from .loop_a import thing\n",
    "scripts/run.py": "import lib.core\n",
    "app.py": "from lib.typed import x\n",
}


@pytest.fixture
def synthetic(tmp_path: Path) -> ImportGraph:
    for name, text in SYNTHETIC_TREE.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return build_graph(tmp_path, ("lib/*.py", "scripts/*.py", "app.py"))


def test_analyser_resolves_imports(synthetic: ImportGraph) -> None:
    assert synthetic.edges["lib.core"] == {"lib.helpers"}
    assert synthetic.edges["lib.helpers"] == {"lib.nets"}  # lazy and relative
    assert synthetic.edges["lib.loop_b"] == {"lib.loop_a"}
    assert synthetic.edges["scripts.run"] == {"lib", "lib.core"}
    assert synthetic.external["lib.core"] == {"numpy"}
    assert synthetic.external["lib.typed"] == {"typing", "json"}
    assert synthetic.importing(TORCH_PACKAGES) == {"lib.nets"}


def test_analyser_reports_broken_contracts(synthetic: ImportGraph) -> None:
    torch_modules = {"lib.nets"}
    app = set(synthetic.paths) - torch_modules - {"scripts.run"}
    problems = torch_violations(synthetic, app, torch_modules)
    reached = [p.split(" reaches")[0].split("/")[-1] for p in problems]
    assert reached == ["core.py", "helpers.py", "upward.py"]
    assert "lib.core -> lib.helpers -> lib.nets -> torch" in problems[0]
    assert torch_violations(synthetic, {"app", "lib.typed"}, torch_modules) == []
    assert [p.split("/")[-1] for p in forbidden_imports(synthetic, app, ["scripts"])] == [
        "upward.py imports scripts.run"
    ]
    cycle = synthetic.cycle(synthetic.paths)
    assert cycle is not None and set(cycle) == {"lib.loop_a", "lib.loop_b"}
    assert synthetic.cycle(set(synthetic.paths) - {"lib.loop_a"}) is None
