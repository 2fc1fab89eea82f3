"""Size limits of the library and the training code: a module holds one concept, a function one
task. Every file in ``malgan/`` and ``train/`` is found by glob, so a new one is covered."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
SOURCE_GLOBS = ("malgan/**/*.py", "train/**/*.py")

# Modules allowed past MAX_MODULE_LINES, each with why (split them rather than grow this list).
LONG_MODULES = {
    "malgan/data.py": "decoding, the patient split and its cache share the NIH layout's rules",
    "malgan/invert.py": "its docstring documents the search's loss, pool, refinement and budgets",
    "malgan/nn/nets.py": "the GAN networks and their shared blocks, as the ONNX sidecars name them",
    "malgan/runtime.py": "the ONNX generators and the classifier; to split one module per model",
    "malgan/synth/writer.py": "the export, its batches and its summary; to split the batches out",
    "malgan/tables.py": "every table and text of the pages; to split by page (results, datasheet)",
    "train/pipeline.py": "the stage graph, its side-by-side runner and its log",
}
# Functions allowed past MAX_FUNCTION_LINES, as ``path:name``, each with why.
LONG_FUNCTIONS = {
    "malgan/synth/datasheet.py:datasheet_markdown": "the datasheet's sections in reading order",
}


def source_files(root: Path) -> list[Path]:
    return sorted({p for g in SOURCE_GLOBS for p in root.glob(g)})


def long_modules(root: Path, limit: int = MAX_MODULE_LINES) -> dict[str, int]:
    """``{relative path: lines}`` of the files under ``root`` longer than ``limit`` lines."""
    lengths = {
        path.relative_to(root).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in source_files(root)
    }
    return {name: n for name, n in lengths.items() if n > limit}


def long_functions(root: Path, limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """``{"path:name": lines}`` of the functions (methods and nested ones too) past ``limit``."""
    found = {}
    for path in source_files(root):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found[f"{path.relative_to(root).as_posix()}:{node.name}"] = lines
    return found


def test_no_module_passes_the_line_limit_unless_listed() -> None:
    assert source_files(REPO_ROOT), "the globs found no source"
    extra = set(long_modules(REPO_ROOT)) - set(LONG_MODULES)
    assert not extra, f"modules over {MAX_MODULE_LINES} lines: {sorted(extra)}"


def test_no_function_passes_the_line_limit_unless_listed() -> None:
    extra = set(long_functions(REPO_ROOT)) - set(LONG_FUNCTIONS)
    assert not extra, f"functions over {MAX_FUNCTION_LINES} lines: {sorted(extra)}"


def test_every_exception_is_still_needed() -> None:
    """An exception that no longer applies is removed, so the list only shrinks."""
    assert set(LONG_MODULES) <= set(long_modules(REPO_ROOT))
    assert set(LONG_FUNCTIONS) <= set(long_functions(REPO_ROOT))


@pytest.mark.parametrize("kind", ["module", "function"])
def test_the_checks_see_a_module_or_function_past_the_limit(tmp_path: Path, kind: str) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    text = f"def long():\n{body}" if kind == "function" else "x = 0\n" * (MAX_MODULE_LINES + 1)
    (tmp_path / "malgan").mkdir()
    (tmp_path / "malgan" / "added.py").write_text(text, encoding="utf-8")
    (tmp_path / "malgan" / "short.py").write_text("def f():\n    return 1\n", encoding="utf-8")
    if kind == "function":
        assert long_functions(tmp_path) == {"malgan/added.py:long": MAX_FUNCTION_LINES + 1}
    else:
        assert long_modules(tmp_path) == {"malgan/added.py": MAX_MODULE_LINES + 1}
