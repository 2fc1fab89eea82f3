"""The app's helpers that the pages call, tested without Streamlit running a page."""

import pytest

pytest.importorskip("plotly")

from malgan.app import cells, charts, controls, dataset
from malgan.data import CLASSES
from malgan.synth import filters


@pytest.mark.parametrize(("text", "value"), [("True", True), (" on ", True), ("0", False)])
def test_parse_flag_reads_the_url_spellings(text, value):
    assert controls.parse_flag(text) is value


def test_parse_flag_refuses_other_words():
    with pytest.raises(ValueError):
        controls.parse_flag("maybe")


@pytest.mark.parametrize(
    ("n_bytes", "text"), [(10, "1 kB"), (2_400, "2 kB"), (3_250_000, "3.2 MB")]
)
def test_size_text_in_kilo_or_megabytes(n_bytes, text):
    assert dataset.size_text(n_bytes) == text


def test_remedy_names_the_page_controls_of_the_filters_that_rejected():
    rejected = {label: {filters.PRIVACY: 3} for label in CLASSES}
    err = filters.FiltersExhaustedError(
        "stopped", label=CLASSES[0], accepted={}, attempts={}, rejected=rejected
    )
    text = dataset.remedy(err)
    assert "**Privacy filter**" in text and "**Attempts per cell**" in text
    assert "Minimum confidence" not in text


def test_rejection_figure_has_one_bar_trace_per_class_with_the_counts():
    rejected = {CLASSES[0]: {filters.PRIVACY: 2}, CLASSES[1]: {filters.WRONG_CLASS: 5}}
    fig = dataset.rejection_figure(rejected)
    assert [trace.name for trace in fig.data] == list(CLASSES)
    assert sum(sum(trace.y) for trace in fig.data) == 7


def test_snapshot_rows_balance_the_grids_that_fit():
    # 320 px grids at 90% with 16 px gaps: three fit in 960 px, so 4 grids make rows of 2.
    assert cells.snapshots_per_row(4, 320) == 2
    assert cells.snapshots_per_row(3, 320) == 3
    assert cells.snapshots_per_row(0, 320) == 1


def test_path_probability_draws_the_curve_and_the_threshold():
    fig = charts.path_probability([0.0, 0.5, 1.0], [0.1, 0.4, 0.9])
    assert list(fig.data[0].y) == [0.1, 0.4, 0.9]
    assert fig.layout.shapes[0].y0 == charts.DECISION_LINE
