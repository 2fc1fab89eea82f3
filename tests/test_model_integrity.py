"""Broken model files: the runtime refuses them clearly and only the pages using them say so.

Each case damages one file of a copy of ``exported/``. The runtime must raise ModelError with a
message naming the file and the fault. Then every page (found by glob) runs on the damaged copy.
Which files a page reads is observed, not listed by hand: an audit hook records the files each
page opens on an intact copy. A page that reads the damaged file must show an error (or lose
nothing but the models banner) and no exception, and at least one such page must name the
file; every other page must render exactly as on the intact copy.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from malgan import artifacts, runtime
from tests.support.pages import app_page
from tests.support.paths import REPO_ROOT

EXPORTED = REPO_ROOT / "exported"
PAGES = sorted((REPO_ROOT / "pages").glob("*.py"))
PAGE_TIMEOUT_S = 60
pytestmark = pytest.mark.skipif(
    not (EXPORTED / artifacts.INDEX_NAME).is_file(), reason="no exported models to damage"
)


# Which files a page reads.


class _FileAudit:
    """Records the files opened (and folders listed) under one folder, while recording.

    Built on ``sys.addaudithook``, which sees every ``open`` in the process (Path.read_bytes,
    np.load and Pillow included). A hook cannot be removed, so one is installed per process and
    does nothing while no folder is being recorded.
    """

    _installed = False

    def __init__(self) -> None:
        self.root: str | None = None
        self.seen: set[str] = set()

    def _hook(self, event: str, args: tuple) -> None:
        if self.root is None or event not in ("open", "os.listdir", "os.scandir"):
            return
        path = args[0] if args else None
        if isinstance(path, str | os.PathLike):
            path = os.fspath(path)
            if isinstance(path, str) and path.startswith(self.root):
                relative = os.path.relpath(path, self.root)
                self.seen.add(relative if event == "open" else f"{relative}/")

    def record(self, root: Path) -> None:
        if not _FileAudit._installed:
            sys.addaudithook(self._hook)
            _FileAudit._installed = True
        self.root, self.seen = str(root) + os.sep, set()

    def stop(self) -> set[str]:
        self.root = None
        return self.seen


AUDIT = _FileAudit()


def clear_caches() -> None:
    st.cache_resource.clear()
    st.cache_data.clear()


def run_page(page: Path) -> AppTest:
    clear_caches()
    at = app_page(page, timeout=PAGE_TIMEOUT_S)
    at.run()
    return at


def rendering(at: AppTest) -> list[tuple[str, str]]:
    """What a page shows: each element's type and text (images by their count only)."""
    shown = []
    for element in at.main:
        value = getattr(element, "value", "")
        shown.append((element.type, value if isinstance(value, str) else ""))
    return shown


@dataclass(frozen=True)
class Baseline:
    """A page on intact models: what it reads, what it shows, and anything wrong with it."""

    reads: frozenset[str]
    shown: list[tuple[str, str]]
    problems: tuple[str, ...]


@pytest.fixture(scope="module")
def intact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("intact") / "exported"
    shutil.copytree(EXPORTED, root)
    return root


@pytest.fixture(scope="module")
def baselines(intact: Path) -> dict[str, Baseline]:
    """Every page on the intact copy: the files it read, what it showed, any exception or error."""
    patch = pytest.MonkeyPatch()
    patch.setenv(artifacts.EXPORTED_ENV, str(intact))
    found = {}
    try:
        for page in PAGES:
            AUDIT.record(intact)
            try:
                at = run_page(page)
            finally:
                reads = AUDIT.stop()
            problems = tuple(e.proto.message for e in at.exception) + tuple(
                e.value for e in at.error
            )
            found[page.name] = Baseline(frozenset(reads), rendering(at), problems)
    finally:
        patch.undo()
        clear_caches()
    return found


# The damage.


def _remove(name: str) -> Callable[[Path], None]:
    return lambda root: (root / name).unlink()


# The cgan's file the pages run: its int8 copy, which the release ships.
CGAN_RUN = runtime.low_precision_path("cgan.onnx", artifacts.GENERATOR_PRECISION).name


def _load_cgan_run(root: Path) -> object:
    return artifacts.load_generator(root, "cgan", precision=artifacts.GENERATOR_PRECISION)


def _truncate(root: Path) -> None:
    data = (root / CGAN_RUN).read_bytes()
    (root / CGAN_RUN).write_bytes(data[: len(data) // 2])


def _swap_model(root: Path) -> None:
    shutil.copyfile(root / "classifier.onnx", root / CGAN_RUN)


def _swap_model_and_sidecar(root: Path) -> None:
    shutil.copyfile(root / "classifier.onnx", root / "cgan.onnx")
    shutil.copyfile(root / "classifier.json", root / "cgan.json")


def _flip_byte(root: Path) -> None:
    data = bytearray((root / "classifier.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (root / "classifier.onnx").write_bytes(bytes(data))


def _corrupt_sidecar(root: Path) -> None:
    text = (root / "classifier.json").read_text()
    (root / "classifier.json").write_text(text[: len(text) // 2])


@dataclass(frozen=True)
class Breakage:
    """One damaged file and how the runtime must refuse it.

    Attributes:
        id: Test id.
        file: The damaged file, relative to the models folder.
        damage: Damages a copy of the models folder.
        load: The runtime call that must fail.
        message: Regular expression the ModelError message must match (the root is ``{root}``).
        mentions: Words one of which a page's notice must contain; the file name by default.
    """

    id: str
    file: str
    damage: Callable[[Path], None]
    load: Callable[[Path], object]
    message: str
    mentions: tuple[str, ...] = ()

    def named_in(self, notice: str) -> bool:
        """Whether a page's notice points at the damaged file."""
        return any(word in notice for word in (*self.mentions, Path(self.file).name))


MISMATCH = (
    r"{file} does not match its sidecar \(sha256 [0-9a-f]{12}… instead of [0-9a-f]{12}…\): "
    r"the file is truncated, replaced or corrupt\. Export it again\."
)
BREAKAGES = (
    Breakage(
        "missing_model",
        "classifier.onnx",
        _remove("classifier.onnx"),
        artifacts.load_classifier,
        r"^The model file {root}/classifier\.onnx is missing\.$",
    ),
    Breakage(
        "missing_sidecar",
        "cgan.json",
        _remove("cgan.json"),
        lambda root: artifacts.load_generator(root, "cgan"),
        r"^The model sidecar {root}/cgan\.json is missing\.$",
    ),
    Breakage(
        "truncated_model",
        CGAN_RUN,
        _truncate,
        _load_cgan_run,
        "^" + MISMATCH.replace("{file}", re.escape(CGAN_RUN)) + "$",
    ),
    Breakage(
        "swapped_model",
        CGAN_RUN,
        _swap_model,
        _load_cgan_run,
        "^" + MISMATCH.replace("{file}", re.escape(CGAN_RUN)) + "$",
    ),
    Breakage(
        "swapped_model_and_sidecar",
        # The pages read the sidecar, which no longer names the source of the int8 copy.
        "cgan.json",
        _swap_model_and_sidecar,
        _load_cgan_run,
        r"^cgan\.onnx is described as a classifier model, not a generator\.$",
        mentions=("cgan.onnx",),
    ),
    Breakage(
        "hash_mismatch",
        "classifier.onnx",
        _flip_byte,
        artifacts.load_classifier,
        "^" + MISMATCH.replace("{file}", r"classifier\.onnx") + "$",
    ),
    Breakage(
        "corrupt_sidecar",
        "classifier.json",
        _corrupt_sidecar,
        artifacts.load_classifier,
        r"^The model sidecar {root}/classifier\.json cannot be read \(.+line \d+.+\)\.$",
    ),
    Breakage(
        "missing_index",
        "index.json",
        _remove("index.json"),
        artifacts.load_index,
        r"^The model index {root}/index\.json is missing\.$",
        mentions=("model index",),
    ),
    Breakage(
        "missing_metrics",
        "metrics.json",
        _remove("metrics.json"),
        artifacts.load_metrics,
        r"^The metrics file {root}/metrics\.json is missing\.$",
    ),
)


def models_banner(exported: Path) -> str | None:
    """The banner that the training profile in a models folder's index calls for."""
    notice = artifacts.models_notice(artifacts.load_index(exported))
    return None if notice is None else notice.text


def without_banner(shown: list[tuple[str, str]], banner: str | None) -> list[tuple[str, str]]:
    """A page's rendering without the models banner (which needs the index)."""
    return [(kind, text) for kind, text in shown if banner is None or text != banner]


def unescaped(text: str) -> str:
    """Markdown text as read: backslash escapes removed."""
    return re.sub(r"\\(.)", r"\1", text)


def test_intact_copy_loads(intact: Path) -> None:
    index = artifacts.load_index(intact)
    for entry in index["generators"]:
        gen = artifacts.load_generator(intact, entry["name"])
        assert gen.z_dim > 0 and gen.classes
    assert artifacts.load_classifier(intact).classes == ("Parasitized", "Uninfected")
    assert artifacts.load_metrics(intact)


def test_every_page_works_on_intact_models(baselines: dict[str, Baseline]) -> None:
    assert set(baselines) == {page.name for page in PAGES} and PAGES
    broken = {name: b.problems for name, b in baselines.items() if b.problems}
    assert not broken, broken
    # The audit sees reads: every page reads at least the index (for the models banner).
    assert all("index.json" in b.reads for b in baselines.values()), baselines


@pytest.mark.parametrize("case", BREAKAGES, ids=lambda case: case.id)
def test_broken_model_file(
    case: Breakage,
    intact: Path,
    baselines: dict[str, Baseline],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / "exported"
    shutil.copytree(intact, root)
    case.damage(root)

    # The runtime refuses the file with a message naming it and the fault.
    with pytest.raises(runtime.ModelError) as err:
        case.load(root)
    expected = case.message.replace("{root}", re.escape(str(root)))
    assert re.match(expected, str(err.value)), str(err.value)

    # Pages reading the file say so (or lose only the models banner); the others render
    # exactly as on intact models.
    banner = models_banner(intact)
    monkeypatch.setenv(artifacts.EXPORTED_ENV, str(root))
    affected, naming, problems = [], [], []
    try:
        for page in PAGES:
            baseline = baselines[page.name]
            if baseline.problems:
                continue  # already failing on intact models: see the test above
            at = run_page(page)
            shown = rendering(at)
            notices = [unescaped(e.value) for e in (*at.error, *at.warning)]
            if at.exception or not at.title:
                problems.append((page.name, "exception", [e.proto.message for e in at.exception]))
            elif case.file in baseline.reads:
                affected.append(page.name)
                graceful = not at.error and without_banner(shown, banner) == without_banner(
                    baseline.shown, banner
                )
                if not graceful and not at.error:
                    problems.append((page.name, "changed without an error", notices))
                if any(case.named_in(n) for n in notices):
                    naming.append(page.name)
            elif at.error or shown != baseline.shown:
                problems.append((page.name, "changed", notices))
    finally:
        clear_caches()
    assert not problems, problems
    assert affected, f"no page reads {case.file}"
    # The loaders' own message (ui shows the ModelError) names the file on some page at least.
    assert naming, f"no page names {case.file}"
