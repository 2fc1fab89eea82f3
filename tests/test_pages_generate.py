"""Interaction tests of the generation pages (overview, sample, latent explorer, interpolate)."""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from harness.fakes import write_fake_nih_tree
from malgan import (
    artifacts,
    explore,
    imaging,
    latent,
    latent_files,
    nearest,
    report,
    runtime,
    tables,
)
from malgan.app import cells, controls, frame, loading, table_view, views
from malgan.data import CLASSES
from malgan.directions import Directions
from tests.support.pages import app_page, html_table, models_copy

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGES = REPO_ROOT / "pages"
TIMEOUT_S = 60
Z_DIM = 6
# The Interpolate page's default number of frames.
DEFAULT_STEPS = 9


@pytest.fixture(autouse=True)
def _committed_models(monkeypatch: pytest.MonkeyPatch):
    # Caches are keyed by the models folder, so sessions loaded by earlier tests stay valid.
    monkeypatch.delenv(artifacts.EXPORTED_ENV, raising=False)
    st.cache_data.clear()


def open_page(name: str, **query: str) -> AppTest:
    """Run a page once, optionally opened with query parameters."""
    at = app_page(PAGES / f"{name}.py", timeout=TIMEOUT_S)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def image_urls(at: AppTest) -> list[str]:
    """Media URLs of every image shown (a URL is derived from the image bytes)."""
    return [url for image in at.image for url in image.value]


def verdicts(at: AppTest) -> list[str]:
    """The per-cell verdict captions of the Sample page."""
    return [m.value for m in at.markdown if "✓" in m.value or "✕" in m.value]


def chart_series(at: AppTest) -> tuple[np.ndarray, np.ndarray]:
    """x and y of the first trace of the page's plotly chart."""
    (chart,) = at.get("plotly_chart")
    trace = json.loads(chart.proto.spec)["data"][0]

    def decode(values):
        if isinstance(values, dict):
            return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
        return np.asarray(values, dtype=np.float64)

    return decode(trace["x"]), decode(trace["y"])


# Overview.
def test_overview_shows_table_strip_and_data_note():
    at = open_page("overview")

    assert "Overview" in at.title[0].value
    (text,) = [m.value for m in at.markdown if 'aria-label="Headline figures"' in m.value]
    rows = html_table(text)
    assert rows[0] == list(tables.headline_columns(loading.metrics()))
    assert len(rows) == 1 + len(tables.headline_table(None))
    assert "94.9%" in text and "30.0%" in text and "99.1%" in text
    assert "× floor" in text and "—" in text
    # One convention: every percentage on the page has one decimal.
    shown = " ".join(m.value for m in (*at.markdown, *at.caption))
    assert {len(d) for d in re.findall(r"\d\.(\d+)%", shown)} == {1}
    (strip_p, strip_u) = at.image
    assert "Parasitized" in strip_p.captions[0] and "Uninfected" in strip_u.captions[0]
    note = " ".join(m.value for m in at.markdown)
    assert "180 patients" in note and "by patient" in note
    classifier = json.loads((REPO_ROOT / "exported" / "metrics.json").read_text())["classifier"]
    assert f"{len(classifier['test_patients'])} held-out patients" in note
    assert f"{classifier['n_test']:,} cells" in note
    assert any("not for clinical use" in w.value for w in at.warning)


def test_overview_without_metrics_keeps_intro_and_strip(tmp_path, monkeypatch):
    for item in (REPO_ROOT / "exported").iterdir():
        if item.name != "metrics.json":
            (tmp_path / item.name).symlink_to(item)
    monkeypatch.setenv(artifacts.EXPORTED_ENV, str(tmp_path))
    at = open_page("overview")

    assert not at.table
    assert len(at.image) == 2
    assert any("metrics.json" in i.value for i in at.info)
    assert any("metrics file" in e.value for e in at.error)


# Sample.
def test_sample_shows_n_cells_with_verdicts_and_summary():
    at = app_page(PAGES / "sample.py", timeout=TIMEOUT_S)
    at.run()
    at.slider(key="s_n").set_value(5).run()

    assert not at.exception
    assert len(at.image) == 5
    shown = verdicts(at)
    # Each verdict names the class the classifier predicts: ✓ the intended one, ✕ the other.
    assert len(shown) == 5
    assert all("✓ Parasitized" in v or "✕ Uninfected" in v for v in shown)
    (metric,) = at.metric
    recognised = sum("✓" in v for v in shown)
    assert metric.value == f"{recognised} / 5"
    assert any(f"{recognised} of 5" in m.value for m in at.markdown)
    labels = [b.label for b in at.download_button]
    assert any("PNG" in label for label in labels) and any("ZIP" in label for label in labels)


def test_sample_without_the_data_folder_says_what_to_set(monkeypatch):
    monkeypatch.delenv(nearest.DATA_ENV, raising=False)
    at = open_page("sample", s_n="3")
    assert any(nearest.DATA_ENV in i.value for i in at.info)
    assert len(at.image) == 3  # the cells, no neighbours


def test_sample_refuses_a_data_folder_that_is_not_the_training_set(tmp_path, monkeypatch):
    monkeypatch.setenv(nearest.DATA_ENV, str(write_fake_nih_tree(tmp_path / "nih")))
    at = open_page("sample", s_n="3")
    assert any("not the folder the models were trained on" in w.value for w in at.warning)
    assert len(at.image) == 3


def test_sample_shows_a_cell_beside_its_nearest_training_cells(tmp_path, monkeypatch):
    data = write_fake_nih_tree(tmp_path / "nih", patients=10, cells=4)
    files = nearest.training_files(data)
    root = models_copy(tmp_path / "exported", "gpu")
    classifier = artifacts.load_classifier(root)
    reference = artifacts.load_reference(root)
    # A reference whose training codes are those of the drawn folder's training cells.
    train = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in files])
    with np.load(root / "reference.npz", allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays["train_codes"] = reference.codes(classifier.features(train)).astype(np.float16)
    np.savez(root / "reference.npz", **arrays)
    index = json.loads((root / "index.json").read_text())
    index["reference"]["sha256"] = runtime.sha256_file(root / "reference.npz")
    (root / "index.json").write_text(json.dumps(index))
    monkeypatch.setenv(artifacts.EXPORTED_ENV, str(root))
    monkeypatch.setenv(nearest.DATA_ENV, str(data))

    at = open_page("sample", s_n="2")
    at.number_input(key="s_near").set_value(1).run()
    assert not at.exception
    assert len(at.image) == 2 + 1 + nearest.NEAREST_CELLS
    generator = artifacts.load_generator(root, frame.DEFAULT_MODEL)
    cell = generator.generate(latent.sample_z(frame.DEFAULT_SEED, 2, generator.z_dim), CLASSES[0])
    (expected,) = nearest.nearest_training_cells(
        classifier.features(cell[1:]), artifacts.load_reference(root), files
    )
    captions = [c.value for c in at.caption]
    assert "Generated cell 1" in captions
    for neighbour in expected:
        assert any(neighbour.path.name in c for c in captions), neighbour.path.name


def test_sample_seed_changes_cells_and_lives_in_url():
    at = open_page("sample")
    first = image_urls(at)
    assert at.query_params["s_seed"] == str(frame.DEFAULT_SEED)

    at.number_input(key="s_seed").set_value(123).run()
    assert image_urls(at) != first
    assert at.query_params["s_seed"] == "123"

    reopened = open_page("sample", s_seed="123")
    assert reopened.number_input(key="s_seed").value == 123
    assert image_urls(reopened) == image_urls(at)


def test_sample_url_restores_every_control():
    at = open_page("sample", s_model="dcgan", s_class="Uninfected", s_n="3", s_trunc="1.5")

    assert at.selectbox(key="s_model").value == "dcgan"
    assert at.radio(key="s_class").value == "Uninfected"
    assert len(at.image) == 3
    assert all("✓ Uninfected" in v or "✕ Parasitized" in v for v in verdicts(at))
    assert at.select_slider(key="s_trunc").value == pytest.approx(1.5)
    assert any("±1.5" in c.value for c in at.caption)
    # A number between two stops snaps to the nearer one; "off" is a stop of its own.
    assert open_page("sample", s_trunc="1.26").select_slider(key="s_trunc").value == 1.3
    assert open_page("sample", s_trunc="off").select_slider(key="s_trunc").value == 3.0


def test_sample_bad_url_values_fall_back():
    at = open_page("sample", s_model="nope", s_n="0", s_seed="-5", s_trunc="nan", s_class="x")

    assert at.selectbox(key="s_model").value == frame.DEFAULT_MODEL
    assert at.radio(key="s_class").value == CLASSES[0]
    assert at.select_slider(key="s_trunc").value == pytest.approx(3.0)
    assert len(at.image) == 1
    assert at.number_input(key="s_seed").value == 0


def test_sample_new_seed_and_truncation_change_cells():
    at = open_page("sample", s_n="4")
    first = image_urls(at)
    at.button[0].click().run()
    assert at.number_input(key="s_seed").value != frame.DEFAULT_SEED
    assert image_urls(at) != first

    at = open_page("sample", s_n="4")
    # No truncation by default, and the control says so where it stands.
    trunc = at.select_slider(key="s_trunc")
    assert trunc.value == controls.TRUNCATION_OFF and trunc.options[-1] == "off"
    assert trunc.options[0] == "±0.5" and any("Truncation: off" in c.value for c in at.caption)
    trunc.set_value(0.5).run()
    assert image_urls(at) != first
    assert at.query_params["s_trunc"] == "0.5"


def test_sample_downloads_match_cells():
    exported = artifacts.exported_dir()
    grid, archive = views.sample_files(exported, "cgan", "Parasitized", 11, 3, None)
    images, _ = views.sample_cells(exported, "cgan", "Parasitized", 11, 3, None)

    assert Image.open(io.BytesIO(grid)).format == "PNG"
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        names = zf.namelist()
        first = np.asarray(Image.open(io.BytesIO(zf.read(names[0]))).convert("RGB"))
    assert names == [f"cgan_Parasitized_seed11_{i:02d}.png" for i in range(3)]
    np.testing.assert_array_equal(first, images[0])


# Latent explorer.
def test_latent_explorer_shows_one_cell_and_probability():
    at = open_page("latent_explorer")

    cell, strip = at.image
    assert len(cell.value) == 1
    # The probability is shown once, as the text of its bar.
    assert not at.metric
    (bar,) = at.get("progress")
    assert bar.proto.text.startswith("P(parasitized) ") and bar.proto.text.endswith("%")
    assert abs(bar.proto.value - float(bar.proto.text.split()[-1].rstrip("%"))) < 1
    # The strip shows the cell at five positions of the infection control, 0 being the cell.
    assert len(strip.value) == 5 and strip.captions[2].startswith("0: ")
    assert strip.captions[0].startswith("−1: ") and strip.captions[4].startswith("+1: ")
    assert strip.value[2] == strip.value[3] == strip.value[4]  # a Parasitized cell stays one
    generator = loading.cached_generator(artifacts.exported_dir(), "cgan")
    count = explore.directions_for(generator.directions, "Parasitized").count
    assert len(at.slider) == count + 1
    assert at.query_params["le_seed"] == str(frame.DEFAULT_SEED)


def test_latent_explorer_slider_moves_cell_and_reset_restores_it():
    at = open_page("latent_explorer")
    start = image_urls(at)

    at.slider(key="le_p0").set_value(2.0).run()
    moved = image_urls(at)
    assert moved != start
    assert at.query_params["le_p0"] == "2"

    # The conditional GAN's infection control is its class input: -0.5 moves a Parasitized
    # cell half-way to Uninfected.
    at.slider(key="le_inf").set_value(-0.5).run()
    assert image_urls(at) != moved
    assert at.query_params["le_inf"] == "-0.5"
    assert (at.slider(key="le_inf").min, at.slider(key="le_inf").max) == (-1.0, 1.0)
    # Under the slider, what moves along it, measured.
    captions = " ".join(c.value for c in at.caption)
    assert "became Uninfected" in captions and "class input" in captions
    assert list(at.table[0].value.columns) == ["Slider", "P(parasitized)", "Stain hue", "Cell area"]

    at.button[0].click().run()  # Reset
    assert at.slider(key="le_p0").value == 0.0 and at.slider(key="le_inf").value == 0.0
    assert image_urls(at) == start


def test_latent_explorer_url_reproduces_cell():
    at = open_page("latent_explorer")
    at.number_input(key="le_seed").set_value(123).run()
    at.slider(key="le_p1").set_value(1.5).run()

    reopened = open_page("latent_explorer", **at.query_params)
    assert reopened.slider(key="le_p1").value == pytest.approx(1.5)
    assert image_urls(reopened) == image_urls(at)


def test_latent_explorer_randomise_changes_seed():
    at = open_page("latent_explorer")
    start = image_urls(at)
    at.button[1].click().run()

    assert at.number_input(key="le_seed").value != frame.DEFAULT_SEED
    assert image_urls(at) != start


def test_latent_explorer_upload_bad_and_good_latents():
    at = open_page("latent_explorer")
    start = image_urls(at)

    at.file_uploader[0].set_value(("bad.npy", b"not a numpy file", "application/octet-stream"))
    at.run()
    assert not at.exception
    assert any("bad.npy" in e.value and ".npy" in e.value for e in at.error)
    assert image_urls(at) == start

    wrong = latent_files.latent_to_npy(np.zeros((1, 3), np.float32))
    at.file_uploader[0].set_value(("wrong.npy", wrong, "application/octet-stream")).run()
    assert any("128" in e.value for e in at.error)

    z = latent.sample_z(99, 1, 128)
    npy = latent_files.latent_to_npy(z)
    at.file_uploader[0].set_value(("mine.npy", npy, "application/octet-stream"))
    at.run()
    assert not at.error
    assert "uploaded mine.npy" in at.image[0].captions[0]
    seeded = open_page("latent_explorer", le_seed="99")
    assert image_urls(at) == image_urls(seeded)


def test_latent_explorer_per_class_dcgan():
    at = open_page("latent_explorer", le_model="dcgan", le_class="Uninfected", le_p0="1")

    assert len(at.image[0].value) == 1
    assert at.slider(key="le_p0").value == 1.0
    assert "Uninfected" in at.image[0].captions[0]


# Interpolate.
def test_interpolate_default_frames_chart_and_gif():
    at = open_page("interpolate")

    (strip,) = at.image
    assert len(strip.value) == DEFAULT_STEPS
    assert strip.captions[0] == "t = 0.00" and strip.captions[-1] == "t = 1.00"
    x, y = chart_series(at)
    assert len(x) == len(y) == len(strip.value)
    assert x[0] == 0.0 and x[-1] == 1.0 and ((y >= 0) & (y <= 1)).all()
    assert any("GIF" in b.label for b in at.download_button)


def test_interpolate_steps_control_frames_and_url():
    at = open_page("interpolate")
    at.slider(key="ip_steps").set_value(4).run()

    assert len(at.image[0].value) == 4
    assert len(chart_series(at)[0]) == 4
    assert at.query_params["ip_steps"] == "4"
    reopened = open_page("interpolate", **at.query_params)
    assert image_urls(reopened) == image_urls(at)


def test_interpolate_cross_class_allowed_for_cgan():
    at = open_page("interpolate", ip_class_a="Uninfected", ip_class_b="Parasitized")

    assert at.subheader[0].value == "Uninfected → Parasitized"
    assert not at.radio(key="ip_class_b").disabled
    assert not [i for i in at.info if "same class" in i.value]


def test_interpolate_cross_class_refused_for_dcgan():
    at = open_page(
        "interpolate", ip_model="dcgan", ip_class_a="Uninfected", ip_class_b="Parasitized"
    )

    assert any("same class" in i.value for i in at.info)
    assert at.radio(key="ip_class_b").value == "Uninfected"
    assert at.radio(key="ip_class_b").disabled
    assert at.subheader[0].value == "Uninfected → Uninfected"
    assert at.query_params["ip_class_b"] == "Uninfected"


# malgan.explore.
def sidecar_directions(k: int = 3, *, infection: bool = True) -> dict:
    """A sidecar's ``directions`` entry: k principal rows, their sigmas, one infection vector."""
    rng = np.random.default_rng(0)
    principal = rng.standard_normal((k, Z_DIM))
    principal /= np.linalg.norm(principal, axis=1, keepdims=True)
    infection_dirs = {}
    if infection:
        vector = rng.standard_normal(Z_DIM)
        infection_dirs = {label: vector / np.linalg.norm(vector) for label in CLASSES}
    return {
        "principal": principal.astype(np.float32),
        "sigmas": np.arange(1, k + 1, dtype=np.float32),
        "infection": infection_dirs,
    }


def by_class(raw: dict) -> dict[str, Directions]:
    """A generator's ``.directions`` for a sidecar entry: one ``Directions`` per class."""
    return {label: Directions.from_sidecar(raw, label, Z_DIM) for label in CLASSES}


def test_directions_for_one_class_of_a_generator():
    raw = sidecar_directions(7)
    dirs = explore.directions_for(by_class(raw), "Parasitized")
    assert dirs.count == explore.MAX_PRINCIPAL
    assert dirs.infection is not None and dirs.infection.shape == (Z_DIM,)

    # A per-class pair: each class has the directions of the member that draws it.
    lone = sidecar_directions(2, infection=False)
    per_class = {
        "Uninfected": by_class(lone)["Uninfected"],
        "Parasitized": by_class(raw)["Parasitized"],
    }
    own = explore.directions_for(per_class, "Uninfected")
    assert own.count == 2 and own.infection is None
    np.testing.assert_array_equal(own.principal, lone["principal"])
    empty = explore.directions_for({}, "Parasitized")
    assert empty.count == 0 and empty.infection is None


def test_sidecar_directions_drop_unusable_vectors():
    raw = sidecar_directions(3)
    raw["sigmas"] = raw["sigmas"][:2]
    raw["infection"] = {"Parasitized": np.full(Z_DIM, np.nan), "Uninfected": np.zeros(Z_DIM)}
    for label in CLASSES:
        dirs = Directions.from_sidecar(raw, label, Z_DIM)
        assert dirs.count == 2 and dirs.infection is None
    wrong_length = Directions.from_sidecar(raw, "Parasitized", Z_DIM + 1)
    assert wrong_length.count == 0 and wrong_length.infection is None


def test_edit_latent_moves_in_sigma_units():
    dirs = explore.directions_for(by_class(sidecar_directions(3)), "Parasitized")
    z = latent.sample_z(1, 1, Z_DIM)[0]

    np.testing.assert_allclose(explore.edit_latent(z, dirs, (0.0, 0.0), 0.0), z)
    moved = explore.edit_latent(z, dirs, (0.0, 2.0))
    np.testing.assert_allclose(moved - z, 2.0 * dirs.sigmas[1] * dirs.principal[1], atol=1e-5)
    infected = explore.edit_latent(z, dirs, (), 1.5)
    step = 1.5 * explore.INFECTION_SIGMA * dirs.infection
    np.testing.assert_allclose(infected - z, step, atol=1e-5)
    assert moved.dtype == np.float32
    with pytest.raises(ValueError, match="amounts"):
        explore.edit_latent(z, dirs, (1.0, 1.0, 1.0, 1.0))


def test_class_weights_path_and_latent_path():
    weights = explore.class_weights_path(CLASSES, "Uninfected", "Parasitized", 5)
    np.testing.assert_array_equal(weights[0], [0, 1])
    np.testing.assert_array_equal(weights[-1], [1, 0])
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="Unknown class"):
        explore.class_weights_path(CLASSES, "Healthy", "Parasitized", 5)
    with pytest.raises(ValueError, match="steps"):
        explore.path_t(1)

    a, b = latent.sample_z(3, 2, Z_DIM)
    for method in explore.METHODS:
        path = explore.latent_path(a, b, 7, method)
        assert path.shape == (7, Z_DIM) and path.dtype == np.float32
        np.testing.assert_allclose(path[0], a)
        np.testing.assert_allclose(path[-1], b)


class RecordingGenerator:
    """A stand-in generator that records how it was called."""

    def __init__(self, *, conditional: bool):
        self.conditional = conditional
        self.classes = CLASSES
        self.display_name = "test generator"
        self.calls: list[tuple] = []

    def generate(self, z, label):
        self.calls.append(("generate", np.asarray(z), label))
        return np.zeros((len(z), 64, 64, 3), np.uint8)

    def generate_mix(self, z, weights):
        self.calls.append(("mix", np.asarray(z), np.asarray(weights)))
        return np.zeros((len(z), 64, 64, 3), np.uint8)


def test_interpolate_cells_uses_class_blend_only_when_conditional():
    a, b = latent.sample_z(5, 2, Z_DIM)
    conditional = RecordingGenerator(conditional=True)
    t, frames = explore.interpolate_cells(conditional, a, b, "Uninfected", "Parasitized", 4)
    assert frames.shape == (4, 64, 64, 3) and t[0] == 0.0 and t[-1] == 1.0
    kind, z, weights = conditional.calls[0]
    assert kind == "mix" and z.shape == (4, Z_DIM)
    np.testing.assert_allclose(weights[:, 0], t)

    explore.interpolate_cells(conditional, a, b, "Parasitized", "Parasitized", 3, "lerp")
    assert conditional.calls[-1][0] == "generate" and conditional.calls[-1][2] == "Parasitized"

    pair = RecordingGenerator(conditional=False)
    with pytest.raises(ValueError, match="same class"):
        explore.interpolate_cells(pair, a, b, "Uninfected", "Parasitized", 4)
    assert not pair.calls


def test_edit_latent_with_real_generator_directions():
    cgan = loading.cached_generator(artifacts.exported_dir(), "cgan")
    generator = loading.cached_generator(artifacts.exported_dir(), "dcgan")
    # Only the conditional GAN morphs a cell across classes; both give directions per class.
    assert cgan.conditional and not generator.conditional
    assert set(cgan.directions) == set(generator.directions) == set(CLASSES)
    for label in CLASSES:
        dirs = explore.directions_for(generator.directions, label)
        z = latent.sample_z(0, 1, generator.z_dim)[0]
        edited = explore.edit_latent(z, dirs, (1.0,) * dirs.count, 1.0)
        assert edited.shape == (generator.z_dim,) and np.isfinite(edited).all()


# Page helpers in malgan.app.
def test_verdicts_and_counts():
    proba = np.array([[0.97, 0.03], [0.12, 0.88], [0.5, 0.5]], np.float32)
    assert cells.verdict_caption(proba[0], "Parasitized") == "✓ Parasitized 0.97"
    assert cells.verdict_caption(proba[1], "Parasitized") == "✕ Uninfected 0.88"
    assert cells.verdict(proba[1], "Uninfected") == (True, pytest.approx(0.88))
    assert cells.recognised_count(proba, "Parasitized") == 2
    # One rule everywhere: the class of the largest probability, a tie going to the first class.
    predicted = [runtime.predicted_class(row) for row in proba]
    assert predicted == ["Parasitized", "Uninfected", "Parasitized"]
    shown = cells.verdict_markdown(proba[1])
    assert "Uninfected" in shown and shown.endswith("P(parasitized) 12.0%")
    assert cells.recognised_count(np.zeros((0, 2)), "Uninfected") == 0
    assert views.cell_file_names("cgan", "Uninfected", 7, 2) == [
        "cgan_Uninfected_seed7_00.png",
        "cgan_Uninfected_seed7_01.png",
    ]
    assert imaging.upscale(np.zeros((64, 64, 3), np.uint8), 3).shape == (192, 192, 3)
    assert "#b0306e" in cells.coloured("x", "Parasitized")


def test_page_title_and_points_delta():
    assert frame.page_title("Sample") == "Sample · malgan"
    assert cells.points_delta(0.123, "vs report") == {
        "delta": "12.3 pts vs report",
        "delta_color": "green",
        "delta_arrow": "up",
    }
    # A fall: the arrow points down and the number has no minus sign.
    assert cells.points_delta(-0.004, "vs reconstruction") == {
        "delta": "0.4 pts vs reconstruction",
        "delta_color": "red",
        "delta_arrow": "down",
    }
    assert cells.points_delta(-0.3, colour="inverse")["delta_color"] == "green"
    assert cells.points_delta(-0.3, colour="off")["delta"] == "30.0 pts"
    assert cells.points_delta(-0.3, colour="off")["delta_color"] == "off"
    # A change that rounds to zero is neutral: grey, no arrow.
    for tiny in (0.0, 0.0004, -0.0004):
        assert cells.points_delta(tiny, "vs reconstruction") == {
            "delta": "±0.0 pts vs reconstruction",
            "delta_color": "off",
            "delta_arrow": "off",
        }


def test_counting_generator_counts_cells_per_class():
    inner = RecordingGenerator(conditional=True)
    batches = []
    counting = views.CountingGenerator(inner, on_batch=lambda: batches.append(dict(counting.drawn)))
    z = latent.sample_z(1, 3, Z_DIM)
    assert counting.generate(z, "Parasitized").shape == (3, 64, 64, 3)
    counting.generate(z[:2], "Uninfected")
    assert counting.drawn == {"Parasitized": 3, "Uninfected": 2}
    assert batches == [{"Parasitized": 3, "Uninfected": 0}, {"Parasitized": 3, "Uninfected": 2}]
    # Everything else is the wrapped generator's.
    assert counting.display_name == "test generator" and counting.conditional


def test_headline_table_from_metrics_and_without():
    data = {
        "classifier": {"test_accuracy": 0.9512},
        "fd_real_floor": {"Parasitized": 2.0, "Uninfected": 4.0},
        "models": {
            "cgan": {
                "recovery": {
                    "Parasitized": {"rate": 0.8, "ci_low": 0.75, "ci_high": 0.85, "n": 100}
                },
                "fd": {"Parasitized": 5.0, "Uninfected": 6.0},
                "fd_ratio": {"Uninfected": 1.25},
                "tstr": {"accuracy": 0.9},
                "memorization": {
                    "Parasitized": {"share": 0.02, "n": 100},
                    "Uninfected": {"share": 0.0, "n": 300},
                },
            }
        },
    }
    rows = {row["Figure"]: row for row in tables.headline_table(data)}

    assert list(next(iter(rows.values()))) == list(tables.HEADLINE_COLUMNS)
    recovery = rows["Recovery, Parasitized (95% CI)"]
    assert recovery["The report"] == f"{report.REPORT_RECOVERY['Parasitized']:.1%}"
    assert recovery["malgan cGAN"] == "80.0% (75.0%–85.0%)"
    assert recovery["The report's DCGAN, reproduced"] == tables.MISSING
    assert rows["Recovery, Uninfected (95% CI)"]["malgan cGAN"] == tables.MISSING
    accuracy = rows["Classifier accuracy, held-out patients"]
    assert accuracy["The report"] == "94.9%" and accuracy["malgan cGAN"] == "95.1%"
    fd = [row for name, row in rows.items() if name.startswith("Fréchet")]
    assert [row["malgan cGAN"] for row in fd] == ["2.5× floor", "1.2× floor"]
    assert [row["The report"] for row in fd] == [tables.MISSING, tables.MISSING]
    others = [row["malgan cGAN"] for row in list(rows.values())[-2:]]
    assert others == ["90.0%", "0.5%"]

    empty = tables.headline_table(None)
    assert len(empty) == len(rows)
    assert all(row["malgan cGAN"] == tables.MISSING for row in empty)


def test_breakable_name_wraps_only_between_parts() -> None:
    name = "C100P61ThinF_IMG_20150918_144104_cell_124.png"
    shown = frame.breakable_name(name)
    assert shown.replace("<wbr>", "").replace("\\", "") == name
    # Break points after the underscores only: never inside "124.png".
    assert shown.endswith("cell\\_<wbr>124.png") and shown.count("<wbr>") == name.count("_")
    assert frame.breakable_name("<b>x</b>.png") == "\\<b\\>x\\</b\\>.png"


def test_balanced_row_leaves_no_half_empty_row() -> None:
    # Three grids of which three fit: one row, not two and one.
    assert cells.balanced_row(3, 3) == 3
    assert cells.balanced_row(4, 3) == 2  # two full rows rather than 3 + 1
    assert cells.balanced_row(5, 3) == 3  # 3 + 2: one empty place either way, the longer row
    assert cells.balanced_row(6, 3) == 3 and cells.balanced_row(1, 3) == 1
    assert cells.balanced_row(7, 0) == 1 and cells.balanced_row(0, 3) == 1


def test_table_html_escapes_its_cells_and_names_each_value() -> None:
    columns = [table_view.Column("a", "Name"), table_view.Column("b", "B<1", help='say "b"')]
    text = table_view.table_html([{"a": "x|y <i>", "b": "1\n2"}, {"a": "z"}], columns, label="t")
    assert "\n" not in text  # one Markdown block
    assert html_table(text) == [["Name", "B<1"], ["x|y <i>", "1 2"], ["z", tables.MISSING]]
    assert '<td data-label="B&lt;1">' in text and 'title="say &quot;b&quot;"' in text
    narrow = table_view.table_html([], columns, label="t", stack_below_px=300)
    assert "@container (max-width: 300px)" in narrow
