"""Safety of the code base: no pickle-loading deserialisers, and ZIPs that cannot escape.

Loading: every ``torch.load`` passes ``weights_only=True`` and every ``np.load`` passes
``allow_pickle=False`` (checked on the syntax tree of every Python file, import aliases
resolved), and the app and training code call no pickle-based loader at all. There is no
known-safe exception today: a new one must be added to SAFE_CALLS with its reason.

Archives: ``imaging.safe_name``, ``imaging.zip_bytes`` and ``imaging.cells_zip`` turn hostile
names into entries that stay inside the folder they are extracted into, both with zipfile's
own extraction and with a naive extractor that trusts the names.
"""

from __future__ import annotations

import ast
import io
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from malgan import imaging
from tests.support.paths import REPO_ROOT

# Folders that hold no project source.
SKIPPED_DIRS = {"exported", "runs", "build", "node_modules", "__pycache__", "artifacts"}
TORCH_LOADS = {"torch.load", "torch.serialization.load"}
NUMPY_LOADS = {"numpy.load", "numpy.lib.npyio.load"}
# Loaders that run pickled code; the app and the training scripts must never call them.
PICKLE_LOADS = {
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "_pickle.load",
    "_pickle.loads",
    "cloudpickle.load",
    "cloudpickle.loads",
    "dill.load",
    "dill.loads",
    "joblib.load",
    "shelve.open",
    "pandas.read_pickle",
    "torch.jit.load",
}
# Code that serves or trains: pickle loaders are forbidden there (tests may round-trip pickles).
PRODUCT_CODE = ("malgan", "train", "pages", "streamlit_app.py")
# (relative path, dotted call) -> why that call is safe without the keyword. Empty: none needed.
SAFE_CALLS: dict[tuple[str, str], str] = {}

HOSTILE_NAMES = (
    "../../etc/passwd",
    "/abs",
    "/etc/cron.d/job",
    "..\\..\\x",
    "a/../../b",
    "a/./../b",
    "....//....//c",
    "..",
    ".",
    "",
    "/",
    "\\",
    "~/.ssh/authorized_keys",
    "C:\\Windows\\system32\\x.dll",
    "C:/x.png",
    "nul\x00byte.png",
    "\x00",
    "../\x00/../y",
    ".hidden",
    "a" * 5000,
    "/".join(["deep"] * 200) + "/x.png",
    "x/" * 3 + "../" * 50 + "escape.png",
    "spaces and tabs\t.png",
    "семь/клеток.png",
    "💉/🦠.png",
    "name:with:colons.png",
    "a|b<c>d?e*f.png",
    "-rf",
    "a.png",
    "A.PNG",
    "a.png",
    "cell",
    "cell/inner.png",
)


# Loader calls in the source tree.


def source_files() -> list[Path]:
    """Every Python file of the project (tracked or not), outside hidden and output folders."""
    found = []
    for path in REPO_ROOT.rglob("*.py"):
        parts = path.relative_to(REPO_ROOT).parts[:-1]
        if any(p.startswith(".") or p in SKIPPED_DIRS or p.endswith(".egg-info") for p in parts):
            continue
        found.append(path)
    return sorted(found)


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted origin, from the module's imports (``np`` -> ``numpy``)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    names[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def calls(source: str) -> Iterator[tuple[str, ast.Call]]:
    """Every call in ``source`` with its callee resolved through the imports."""
    tree = ast.parse(source)
    aliases = _aliases(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name:
                head, _, rest = name.partition(".")
                origin = aliases.get(head, head)
                yield (f"{origin}.{rest}" if rest else origin), node


def keyword_is(call: ast.Call, name: str, value: object) -> bool:
    """Whether the call passes ``name=<literal value>`` and no ``**kwargs`` that could change it."""
    if any(k.arg is None for k in call.keywords):
        return False
    return any(
        k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value
        for k in call.keywords
    )


def unsafe_loads(source: str, where: str = "<snippet>") -> list[str]:
    """The loader calls in ``source`` that could unpickle, as ``where:line: call``."""
    found = []
    for name, call in calls(source):
        if (where, name) in SAFE_CALLS:
            continue
        if name in TORCH_LOADS and not keyword_is(call, "weights_only", True):
            found.append(f"{where}:{call.lineno}: {name} without weights_only=True")
        elif name in NUMPY_LOADS and not keyword_is(call, "allow_pickle", False):
            found.append(f"{where}:{call.lineno}: {name} without allow_pickle=False")
    return found


def pickle_loads(source: str, where: str = "<snippet>") -> list[str]:
    """Calls of pickle-based loaders in ``source``."""
    return [f"{where}:{c.lineno}: {name}" for name, c in calls(source) if name in PICKLE_LOADS]


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    return {
        str(path.relative_to(REPO_ROOT)): path.read_text(encoding="utf-8")
        for path in source_files()
    }


def test_scan_covers_the_project(sources: dict[str, str]) -> None:
    for expected in ("train/runs.py", "malgan/runtime.py", "malgan/data.py", "tests/conftest.py"):
        assert expected in sources
    # The scan finds the real loaders, so an empty result below means something.
    found = {name for text in sources.values() for name, _ in calls(text)}
    assert "torch.load" in found and "numpy.load" in found


def test_torch_and_numpy_loads_refuse_pickles(sources: dict[str, str]) -> None:
    problems = [p for where, text in sources.items() for p in unsafe_loads(text, where)]
    assert not problems, "\n".join(problems)


def test_product_code_calls_no_pickle_loader(sources: dict[str, str]) -> None:
    product = {w: t for w, t in sources.items() if w.startswith(PRODUCT_CODE)}
    assert any(w.startswith("pages/") for w in product) and "train/runs.py" in product
    problems = [p for where, text in product.items() for p in pickle_loads(text, where)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("snippet", "unsafe"),
    [
        ("import torch\ntorch.load(p)", True),
        ("import torch\ntorch.load(p, weights_only=False)", True),
        ("import torch\ntorch.load(p, weights_only=flag)", True),
        ("import torch\ntorch.load(p, **kw, weights_only=True)", True),
        ("import torch as T\nT.load(p)", True),
        ("from torch import load\nload(p)", True),
        ("from torch import load as tl\ntl(p, map_location='cpu')", True),
        ("import torch.serialization\ntorch.serialization.load(p)", True),
        ("import numpy as np\nnp.load(p)", True),
        ("import numpy as np\nnp.load(p, allow_pickle=True)", True),
        ("import numpy\nnumpy.load(p, mmap_mode='r')", True),
        ("from numpy import load\nload(p)", True),
        ("import torch\ntorch.load(p, map_location='cpu', weights_only=True)", False),
        ("import numpy as np\nnp.load(p, allow_pickle=False)", False),
        ("import json\njson.load(f)", False),
        ("load(p)", False),
    ],
)
def test_checker_recognises_unsafe_calls(snippet: str, unsafe: bool) -> None:
    assert bool(unsafe_loads(snippet)) is unsafe


def test_checker_recognises_pickle_loaders() -> None:
    assert pickle_loads("import pickle\npickle.loads(b)")
    assert pickle_loads("from pickle import load\nload(f)")
    assert pickle_loads("import pandas as pd\npd.read_pickle(p)")
    assert not pickle_loads("import pickle\npickle.dumps(x)")


# Archives.


def assert_safe_entry(name: str) -> None:
    """A ZIP entry name that stays inside any folder it is extracted into, on any system."""
    assert name and not name.startswith(("/", "\\")), name
    assert "\\" not in name and "\x00" not in name and ":" not in name, name
    parts = name.split("/")
    assert all(part and part not in (".", "..") for part in parts), name
    assert ".." not in name, name
    assert all(len(part) <= imaging.MAX_NAME_LEN + 8 for part in parts), name


def extract_both_ways(archive: bytes, dest: Path) -> dict[str, bytes]:
    """Extracts with zipfile and with a naive extractor; returns what the naive one wrote.

    The naive extractor joins each name to the destination as it stands, like a careless tool
    would; the archive must be safe for it too.
    """
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        zf.extractall(dest / "zipfile")
        naive = dest / "naive"
        written = {}
        for info in zf.infolist():
            target = naive / info.filename
            assert Path(os.path.realpath(target)).is_relative_to(os.path.realpath(naive))
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as fh:  # "x": an entry never overwrites another
                fh.write(zf.read(info))
            written[info.filename] = zf.read(info)
    return written


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_safe_name_is_one_plain_segment(name: str) -> None:
    cleaned = imaging.safe_name(name)
    assert re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", cleaned), cleaned
    assert ".." not in cleaned and len(cleaned) <= imaging.MAX_NAME_LEN


def test_zip_bytes_with_hostile_names_stays_inside(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    outside = tmp_path / "victim.txt"
    outside.write_text("untouched")
    entries = [(name, f"entry {i}".encode()) for i, name in enumerate(HOSTILE_NAMES)]
    archive = imaging.zip_bytes(entries)

    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        names = zf.namelist()
    assert len(names) == len(entries)
    assert len({n.casefold() for n in names}) == len(names), "entries that differ only in case"
    for name in names:
        assert_safe_entry(name)
    written = extract_both_ways(archive, dest)
    # Every entry was written, in order, inside the destination, and nothing else changed.
    assert list(written.values()) == [data for _, data in entries]
    assert files_under(dest / "zipfile") == files_under(dest / "naive") == set(written)
    assert {p.name for p in tmp_path.iterdir()} == {"dest", "victim.txt"}
    assert outside.read_text() == "untouched"


def test_zip_bytes_keeps_plain_names() -> None:
    archive = imaging.zip_bytes(
        [("Parasitized/seed_7_cell_0.png", b"a"), ("Parasitized/seed_7_cell_0.png", b"b")]
    )
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert zf.namelist() == ["Parasitized/seed_7_cell_0.png", "Parasitized/seed_7_cell_0_1.png"]


def test_zip_bytes_never_makes_a_file_where_a_folder_goes(tmp_path: Path) -> None:
    # "cell" (a file) and "cell/x.png" (inside a folder "cell") cannot both be extracted.
    archive = imaging.zip_bytes([("..", b"1"), ("../x.png", b"2"), ("cell", b"3"), ("A/b", b"4")])
    archive2 = imaging.zip_bytes([("a/b", b"1"), ("a", b"2"), ("A", b"3")])
    for i, data in enumerate((archive, archive2)):
        written = extract_both_ways(data, tmp_path / str(i))
        assert len(written) == len(zipfile.ZipFile(io.BytesIO(data)).namelist())


def test_cells_zip_with_hostile_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (len(HOSTILE_NAMES), 8, 8, 3), dtype=np.uint8)
    archive = imaging.cells_zip(images, list(HOSTILE_NAMES))
    written = extract_both_ways(archive, tmp_path / "dest")
    assert len(written) == len(images)
    for name, image in zip(written, images, strict=True):
        assert_safe_entry(name)
        assert (np.asarray(Image.open(io.BytesIO(written[name]))) == image).all()


# Names assembled from the pieces that make paths dangerous.
NAME_PIECES = (*"./\\\x00:~ aA_-é💉", "..", "../", "..\\", "CON", "x.png")
hostile_text = st.lists(st.sampled_from(NAME_PIECES), max_size=16).map("".join)


@settings(max_examples=150, deadline=None)
@given(names=st.lists(hostile_text, min_size=1, max_size=12))
def test_zip_bytes_any_names_stay_inside(names: list[str], tmp_path_factory) -> None:
    dest = tmp_path_factory.mktemp("zip")
    archive = imaging.zip_bytes((name, name.encode("utf-8", "replace")) for name in names)
    written = extract_both_ways(archive, dest)
    assert len(written) == len(names)
    for name in written:
        assert_safe_entry(name)
    assert files_under(dest / "zipfile") == set(written)
