"""The class filter's recheck: one view for every cell, all 8 for verdicts close to the line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from malgan import artifacts, latent, runtime
from malgan.data import CLASSES
from malgan.errors import SynthError
from malgan.synth import datasheet, files, writer

EXPORTED = Path(__file__).resolve().parents[1] / "exported"
CELLS = 24


@pytest.fixture(scope="module")
def models() -> tuple[runtime.CellGenerator, runtime.Classifier]:
    return artifacts.load_generator(EXPORTED, "cgan"), artifacts.load_classifier(EXPORTED)


def test_close_verdicts_take_the_eight_view_average_and_the_others_one_view(models) -> None:
    gen, clf = models
    cells = gen.generate(latent.sample_z(5, CELLS, gen.z_dim), CLASSES[0])
    one = clf.predict(cells, views=1)
    eight = clf.predict(cells, views=8)[0]
    distance = np.abs(one[0][:, 0].astype(np.float64) - 0.5)
    margin = float(np.median(distance))  # about half the cells are close
    proba, feats, used = clf.predict_rechecked(cells, views=1, margin=margin, batch=7)
    close = distance < margin
    assert 0 < close.sum() < CELLS
    np.testing.assert_array_equal(used, np.where(close, 8, 1))
    np.testing.assert_array_equal(proba[close], eight[close])
    np.testing.assert_array_equal(proba[~close], one[0][~close])
    np.testing.assert_array_equal(feats, one[1])


def test_no_margin_rechecks_nothing_and_eight_views_need_no_recheck(models) -> None:
    gen, clf = models
    cells = gen.generate(latent.sample_z(6, 8, gen.z_dim), CLASSES[1])
    proba, _, used = clf.predict_rechecked(cells, views=2, margin=0.0)
    np.testing.assert_array_equal(proba, clf.predict(cells, views=2)[0])
    assert set(used.tolist()) == {2}
    proba, _, used = clf.predict_rechecked(cells, views=8, margin=0.5)
    np.testing.assert_array_equal(proba, clf.predict(cells, views=8)[0])
    assert set(used.tolist()) == {8}
    # One cell alone, as the pages pass it.
    proba, _, used = clf.predict_rechecked(cells[0], views=1, margin=0.5)
    np.testing.assert_array_equal(proba, clf.predict(cells[:1], views=8)[0])


def test_export_rechecks_the_cells_near_its_threshold_and_records_each_cells_views(
    models, tmp_path: Path
) -> None:
    gen, clf = models
    reference = artifacts.load_reference(EXPORTED)
    n = 4
    config = writer.SynthConfig(n_per_class=n, seed=9, batch=5, views=1, recheck_margin=0.45)
    summary = writer.export_dataset(
        tmp_path / "set", config, generator=gen, classifier=clf, reference=reference
    )
    rows = files.read_manifest(tmp_path / "set")
    for label in CLASSES:
        tried = summary.attempts[label]
        cells = gen.generate(latent.sample_z(9, tried, gen.z_dim), label)
        p_one = clf.predict(cells, views=1)[0][:, clf.classes.index(label)]
        close = np.abs(p_one.astype(np.float64) - config.class_threshold) < 0.45
        assert summary.rechecked[label] == int(close.sum())
        by_index = {int(r["latent_index"]): r for r in rows if r["class"] == label}
        assert len(by_index) == n
        for index, row in by_index.items():
            assert row["classifier_views"] == ("8" if close[index] else "1")
    saved = json.loads((tmp_path / "set" / files.SUMMARY_NAME).read_text())
    assert saved["recheck_margin"] == 0.45 and saved["rechecked"] == summary.rechecked
    assert "(8 for the" in summary.describe()
    sheet = datasheet.datasheet_markdown(summary.to_dict(), None, None, cell_size=gen.img_size)
    rechecked, drawn = sum(summary.rechecked.values()), sum(summary.attempts.values())
    assert f"within 0.45 of the threshold ({rechecked} of the {drawn} cells drawn)" in sheet


def test_without_the_class_filter_nothing_is_rechecked(models, tmp_path: Path) -> None:
    gen, clf = models
    config = writer.SynthConfig(n_per_class=2, class_filter=False, privacy_filter=False)
    summary = writer.export_dataset(
        tmp_path / "set", config, generator=gen, classifier=clf, reference=None
    )
    assert summary.recheck_margin == 0 and summary.rechecked == dict.fromkeys(CLASSES, 0)
    rows = files.read_manifest(tmp_path / "set")
    assert {r["classifier_views"] for r in rows} == {str(writer.DEFAULT_VIEWS)}


@pytest.mark.parametrize("margin", [-0.1, 0.6, float("nan")])
def test_config_refuses_a_margin_outside_the_probability_band(margin: float) -> None:
    with pytest.raises(SynthError, match="recheck margin"):
        writer.SynthConfig(n_per_class=1, recheck_margin=margin)


def test_threshold_is_the_larger_of_the_confidence_and_one_half() -> None:
    assert writer.SynthConfig(n_per_class=1, min_confidence=0.2).class_threshold == 0.5
    assert writer.SynthConfig(n_per_class=1, min_confidence=0.8).class_threshold == 0.8
