"""Import contracts, read from the source with ``ast``: each tier imports only what it may.

The tiers are folders, each given as globs under the repository root:
- only ``malgan/nn/**`` and ``train/`` import torch (the app and the numpy core never reach it);
- only ``malgan/app/**`` and ``pages/`` (with the entry point ``streamlit_app.py``) import
  Streamlit or plotly.

Every module is found by recursive glob, so a module added to any folder is covered without
editing this file. An import counts wherever it stands (a lazy import inside a function still
loads its module when called), except under ``if TYPE_CHECKING:``, which never runs.
"""

from __future__ import annotations

import ast
import fnmatch
import graphlib
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

# Every source file of the library, the training scripts and the app.
SOURCE_GLOBS = ("malgan/**/*.py", "train/**/*.py", "pages/**/*.py", "streamlit_app.py")
# The two rules: these packages, only from these folders.
TORCH_PACKAGES = frozenset({"torch", "torchvision"})
TORCH_TIER = ("malgan/nn/**/*.py", "train/**/*.py")
UI_PACKAGES = frozenset({"streamlit", "plotly"})
UI_TIER = ("malgan/app/**/*.py", "pages/**/*.py", "streamlit_app.py")
# The library may import neither the training scripts nor the app's pages.
LIBRARY_FORBIDDEN = ("train", "pages")
# The benchmarks, and the harness they share with the tests (browser, fake cells), run without
# the tests: they import nothing from tests/.
OUTSIDE_TESTS = ("benchmarks/**/*.py", "harness/**/*.py")
TESTS_FORBIDDEN = ("tests",)


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


def tier_modules(graph: ImportGraph, root: Path, globs: Iterable[str]) -> set[str]:
    """The modules of ``graph`` whose files match one of ``globs`` under ``root``."""
    files = {path.resolve() for g in globs for path in root.glob(g)}
    return {module for module, path in graph.paths.items() if path.resolve() in files}


def tier_violations(graph: ImportGraph, packages: Iterable[str], tier: set[str]) -> list[str]:
    """One line per module outside ``tier`` that imports one of ``packages``, or reaches a
    module that does through the project's own imports (with the chain that does it)."""
    wanted = frozenset(packages)
    direct = graph.importing(wanted)
    label = "/".join(sorted(wanted))
    problems = []
    for module in sorted(set(graph.paths) - tier):
        if module in direct:
            problems.append(f"{graph.paths[module]} imports {label}")
            continue
        chain = graph.path_to(module, direct)
        if chain is not None:
            problems.append(f"{graph.paths[module]} reaches {label}: {' -> '.join(chain)}")
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
    return build_graph(REPO_ROOT, SOURCE_GLOBS)


@pytest.fixture(scope="module")
def library(graph: ImportGraph) -> set[str]:
    return {m for m in graph.paths if m.split(".")[0] == "malgan"}


def test_discovery_covers_every_module(graph: ImportGraph) -> None:
    files = {
        path.resolve()
        for folder in ("malgan", "train", "pages")
        for path in (REPO_ROOT / folder).rglob("*.py")
    }
    assert files <= {path.resolve() for path in graph.paths.values()}
    for package in ("malgan.nn", "malgan.app", "malgan.synth"):
        assert any(m.startswith(f"{package}.") for m in graph.paths), package
    assert {"malgan.metrics", "train.pipeline", "streamlit_app"} <= graph.paths.keys()


def test_the_tiers_hold_what_they_name(graph: ImportGraph) -> None:
    """A sanity check that the detector sees direct imports where they are expected."""
    assert {"malgan.nn.nets", "malgan.nn.registry"} <= graph.importing(TORCH_PACKAGES)
    assert "malgan.app.charts" in graph.importing(UI_PACKAGES)


def test_only_nn_and_train_import_torch(graph: ImportGraph) -> None:
    problems = tier_violations(graph, TORCH_PACKAGES, tier_modules(graph, REPO_ROOT, TORCH_TIER))
    assert not problems, "\n".join(problems)


def test_only_app_and_pages_import_streamlit_or_plotly(graph: ImportGraph) -> None:
    problems = tier_violations(graph, UI_PACKAGES, tier_modules(graph, REPO_ROOT, UI_TIER))
    assert not problems, "\n".join(problems)


def test_library_imports_neither_train_nor_pages(graph: ImportGraph, library: set[str]) -> None:
    problems = forbidden_imports(graph, library, LIBRARY_FORBIDDEN)
    assert not problems, "\n".join(problems)


def test_library_and_train_have_no_import_cycle(graph: ImportGraph) -> None:
    modules = [m for m in graph.paths if m.split(".")[0] in ("malgan", "train")]
    cycle = graph.cycle(modules)
    assert cycle is None, " -> ".join(cycle or ())


def test_benchmarks_and_the_harness_import_nothing_from_tests() -> None:
    outside = build_graph(REPO_ROOT, OUTSIDE_TESTS)
    tops = {module.split(".")[0] for module in outside.paths}
    assert {"benchmarks", "harness"} <= tops, tops
    problems = forbidden_imports(outside, outside.paths, TESTS_FORBIDDEN)
    assert not problems, "\n".join(problems)


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


def _write_tree(root: Path, tree: dict[str, str]) -> None:
    for name, text in tree.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.fixture
def synthetic(tmp_path: Path) -> ImportGraph:
    _write_tree(tmp_path, SYNTHETIC_TREE)
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
    tier = {"lib.nets", "scripts.run"}
    problems = tier_violations(synthetic, TORCH_PACKAGES, tier)
    reached = [p.split(" reaches")[0].split("/")[-1] for p in problems]
    assert reached == ["core.py", "helpers.py", "upward.py"]
    assert "lib.core -> lib.helpers -> lib.nets" in problems[0]
    assert (
        tier_violations(synthetic, TORCH_PACKAGES, set(synthetic.paths) - {"app", "lib.typed"})
        == []
    )
    app = set(synthetic.paths) - {"scripts.run"}
    assert [p.split("/")[-1] for p in forbidden_imports(synthetic, app, ["scripts"])] == [
        "upward.py imports scripts.run"
    ]
    cycle = synthetic.cycle(synthetic.paths)
    assert cycle is not None and set(cycle) == {"lib.loop_a", "lib.loop_b"}
    assert synthetic.cycle(set(synthetic.paths) - {"lib.loop_a"}) is None


def test_neither_the_harness_nor_the_tests_ship_in_the_package() -> None:
    found = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = found["tool"]["setuptools"]["packages"]["find"]["include"]
    assert any(fnmatch.fnmatch("malgan.app", pattern) for pattern in include)
    shipped = [
        top
        for top in ("harness", "tests", "benchmarks")
        if any(fnmatch.fnmatch(top, pattern) for pattern in include)
    ]
    assert not shipped


def test_a_benchmark_that_imports_the_tests_fails(tmp_path: Path) -> None:
    _write_tree(
        tmp_path,
        {
            "harness/browser.py": "import json\n",
            "benchmarks/fine.py": "from harness import browser\n",
            "benchmarks/lazy.py": "def f():\n    from tests.support.paths import REPO_ROOT\n",
            "benchmarks/direct.py": "import tests.support\n",
        },
    )
    outside = build_graph(tmp_path, OUTSIDE_TESTS)
    problems = forbidden_imports(outside, outside.paths, TESTS_FORBIDDEN)
    assert [p.split("/")[-1] for p in problems] == [
        "direct.py imports tests.support",
        "lazy.py imports tests.support.paths",
    ]


# A tree laid out as the project is: the tier globs, not a list of modules, decide.
TIERED_TREE = {
    "pkg/__init__.py": "",
    "pkg/core.py": "import numpy\n",
    "pkg/nn/__init__.py": "",
    "pkg/nn/nets.py": "import torch\n",
    "pkg/app/__init__.py": "",
    "pkg/app/charts.py": "import plotly.graph_objects as go\nfrom pkg import core\n",
    "train/loop.py": "from pkg.nn import nets\n",
    "pages/page.py": "import streamlit as st\nfrom pkg.app import charts\n",
}
TIERED_GLOBS = ("pkg/**/*.py", "train/**/*.py", "pages/**/*.py")
TIERED_TORCH = ("pkg/nn/**/*.py", "train/**/*.py")
TIERED_UI = ("pkg/app/**/*.py", "pages/**/*.py")
# Modules that someone might add later, each breaking one rule from a new (nested) folder.
BREAKING_MODULES = {
    "pkg/app/deep/tensors.py": ("torch", "import torch\n"),
    "pkg/synth/sample.py": ("torch", "def f():\n    from pkg.nn.nets import G\n"),
    "pkg/nn/plots.py": ("ui", "from plotly import express\n"),
    "pkg/sub/widgets.py": ("ui", "import streamlit\n"),
    "train/report.py": ("ui", "from pkg.app.charts import figure\n"),
}


def _tiered_problems(root: Path) -> dict[str, list[str]]:
    tree = build_graph(root, TIERED_GLOBS)
    return {
        "torch": tier_violations(tree, TORCH_PACKAGES, tier_modules(tree, root, TIERED_TORCH)),
        "ui": tier_violations(tree, UI_PACKAGES, tier_modules(tree, root, TIERED_UI)),
    }


def test_a_sound_tiered_tree_passes(tmp_path: Path) -> None:
    _write_tree(tmp_path, TIERED_TREE)
    assert _tiered_problems(tmp_path) == {"torch": [], "ui": []}


@pytest.mark.parametrize("added", sorted(BREAKING_MODULES))
def test_a_module_added_that_breaks_a_tier_fails(tmp_path: Path, added: str) -> None:
    rule, text = BREAKING_MODULES[added]
    _write_tree(tmp_path, {**TIERED_TREE, added: text})
    problems = _tiered_problems(tmp_path)
    assert len(problems[rule]) == 1 and added in problems[rule][0], problems
    other = "ui" if rule == "torch" else "torch"
    assert problems[other] == []
