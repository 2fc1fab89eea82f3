"""Tests for malgan.app.charts and malgan.tables: figures and tables from small metrics dicts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from malgan import artifacts, report, tables
from malgan.app import cells, charts, training_charts

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPORTED = REPO_ROOT / "exported"

METRICS = {
    "models": {
        "cgan": {
            "display_name": "malgan cGAN",
            "recovery": {
                "Parasitized": {"rate": 0.9, "ci_low": 0.85, "ci_high": 0.93, "n": 500},
                "Uninfected": {"rate": 0.95, "ci_low": 0.92, "ci_high": 0.97, "n": 500},
            },
            "confidence_histogram": {
                "Parasitized": {"counts": [1, 3], "edges": [0.0, 0.5, 1.0]},
                "Uninfected": {"counts": [0, 4], "edges": [0.0, 0.5, 1.0]},
            },
        },
        "dcgan": {
            "display_name": "report's DCGAN",
            "recovery": {"Parasitized": {"rate": 0.3, "ci_low": 0.26, "ci_high": 0.34, "n": 500}},
        },
    }
}


def bar(fig, name):
    return next(trace for trace in fig.data if trace.name == name)


# Recovery bars.


def test_recovery_bars_put_the_report_first_then_dcgan_then_cgan() -> None:
    fig = charts.recovery_bars(METRICS)
    para, uninf = bar(fig, "Parasitized"), bar(fig, "Uninfected")
    assert list(para.x) == [charts.REPORT_LABEL, "report's DCGAN", "malgan cGAN"]
    assert para.y[0] == pytest.approx(100 * report.REPORT_RECOVERY["Parasitized"])
    assert uninf.y[0] == pytest.approx(100 * report.REPORT_RECOVERY["Uninfected"])
    assert para.y[2] == pytest.approx(90.0)
    assert para.marker.color == charts.CLASS_COLOURS["Parasitized"]


def test_recovery_bars_error_bars_are_the_wilson_interval() -> None:
    para = bar(charts.recovery_bars(METRICS), "Parasitized")
    assert para.error_y.array[2] == pytest.approx(3.0)
    assert para.error_y.arrayminus[2] == pytest.approx(5.0)
    # The report published no interval.
    assert para.error_y.array[0] == 0.0 and para.error_y.arrayminus[0] == 0.0


def test_recovery_bars_leave_a_gap_for_a_missing_class() -> None:
    uninf = bar(charts.recovery_bars(METRICS), "Uninfected")
    assert uninf.y[1] is None
    assert uninf.text[1] == tables.MISSING


def test_recovery_bars_without_metrics_show_the_report_alone() -> None:
    for metrics in (None, {}, {"models": {}}, {"models": {"cgan": {"recovery": None}}}):
        fig = charts.recovery_bars(metrics)
        assert list(bar(fig, "Parasitized").x) == [charts.REPORT_LABEL]


def test_recovery_bars_append_extra_sources() -> None:
    live = {"Parasitized": {"rate": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 20}}
    fig = charts.recovery_bars(METRICS, extra=[("Live", live)])
    assert list(bar(fig, "Parasitized").x)[-1] == "Live"
    assert bar(fig, "Parasitized").y[-1] == pytest.approx(50.0)


def test_recovery_bars_label_each_value_above_its_whisker() -> None:
    metrics = {
        "models": {
            "cgan": {
                "display_name": "malgan cGAN",
                "recovery": {"Parasitized": {"rate": 0.0, "ci_low": 0.0, "ci_high": 0.2, "n": 16}},
            }
        }
    }
    fig = charts.recovery_bars(metrics)
    labels = bar(fig, f"Parasitized {charts.VALUE_LABEL_SUFFIX}")
    assert labels.mode == "text" and not labels.showlegend
    # A 0% bar still gets its label, above the top of its 95% interval rather than on the axis.
    assert labels.text[1] == "0.0%"
    assert labels.y[1] == pytest.approx(20.0 + charts.LABEL_LIFT)
    lifted = 100 * report.REPORT_RECOVERY["Parasitized"] + charts.LABEL_LIFT
    assert labels.y[0] == pytest.approx(lifted)
    # Labels line up with their bars, and a 0% bar is drawn as a coloured floor line.
    para = bar(fig, "Parasitized")
    assert labels.offsetgroup == para.offsetgroup and fig.layout.scattermode == "group"
    assert para.marker.line.width > 0 and para.marker.line.color == para.marker.color


# Confidence histograms.


def test_confidence_histograms_show_shares_per_class() -> None:
    fig = charts.confidence_histograms(METRICS, "cgan")
    para = bar(fig, "made as Parasitized")
    assert list(para.x) == [25.0, 75.0]
    assert list(para.y) == [25.0, 75.0]
    assert list(para.customdata) == [1, 3]
    assert bar(fig, "made as Uninfected").marker.color == charts.CLASS_COLOURS["Uninfected"]


def test_confidence_histograms_name_the_overlap_colour_in_the_legend() -> None:
    fig = charts.confidence_histograms(METRICS, "cgan")
    overlap = bar(fig, charts.OVERLAP_NAME)
    assert overlap.showlegend is not False and overlap.visible in (None, True)
    assert all(v is None for v in overlap.y)  # a legend entry, not a bar
    # Uninfected at 65% over Parasitized at 65% over white, channel by channel.
    assert overlap.marker.color == "#637db1"
    assert overlap.marker.color not in charts.CLASS_COLOURS.values()
    assert charts.blend(["#000000"], 0.5) == "#808080"
    # One class alone overlaps nothing: no overlap entry.
    histograms = METRICS["models"]["cgan"]["confidence_histogram"]
    alone = charts.histogram_figure({"Uninfected": histograms["Uninfected"]})
    assert [trace.name for trace in alone.data] == ["made as Uninfected"]


@pytest.mark.parametrize(
    "histograms",
    [
        None,
        {},
        {"Parasitized": {"counts": [1, 2], "edges": [0.0, 1.0]}},  # edges do not fit the counts
        {"Parasitized": {"counts": [1, math.nan], "edges": [0.0, 0.5, 1.0]}},
        {"Parasitized": {"counts": "x", "edges": None}},
    ],
)
def test_confidence_histograms_missing_or_bad_give_none(histograms) -> None:
    metrics = {"models": {"cgan": {"confidence_histogram": histograms}}}
    assert charts.confidence_histograms(metrics, "cgan") is None


def test_confidence_histograms_unknown_model_gives_none() -> None:
    assert charts.confidence_histograms(METRICS, "stylegan") is None
    assert charts.confidence_histograms(None, "cgan") is None


# Training histories.

DCGAN_HISTORY = {
    "losses": {
        "dcgan_parasitized": [
            {"iteration": 2, "d_real": 0.5, "g": 1.0},
            {"iteration": 1, "d_real": 0.7, "g": math.nan},
        ],
        "dcgan_uninfected": [{"iteration": 1, "d_real": 0.6, "g": 0.9}],
    },
    "probes": {
        "dcgan_parasitized": [
            {"iteration": 10, "Parasitized": 0.2},
            {"iteration": 5, "Parasitized": 0.1},
        ],
        "dcgan_uninfected": [{"iteration": 5, "Uninfected": 0.9}],
    },
}


def test_recovery_curve_one_line_per_class_in_order_with_report_lines() -> None:
    fig = training_charts.recovery_curve(DCGAN_HISTORY)
    para = bar(fig, "Parasitized")
    assert list(para.x) == [5, 10] and list(para.y) == pytest.approx([10.0, 20.0])
    assert para.line.color == charts.CLASS_COLOURS["Parasitized"]
    assert bar(fig, "Uninfected").y[0] == pytest.approx(90.0)
    lines = sorted(shape.y0 for shape in fig.layout.shapes)
    assert lines == pytest.approx(sorted(100 * r for r in report.REPORT_RECOVERY.values()))


def test_recovery_curve_names_runs_when_a_class_has_several() -> None:
    history = {
        "probes": {
            "a": [{"iteration": 1, "Uninfected": 1.0}],
            "b": DCGAN_HISTORY["probes"]["dcgan_uninfected"],
        }
    }
    names = {trace.name for trace in training_charts.recovery_curve(history).data}
    assert names == {"Uninfected (a)", "Uninfected (b)"}


@pytest.mark.parametrize(
    "history", [None, {}, [], {"probes": None}, {"probes": {"run": "x"}}, {"probes": {"r": []}}]
)
def test_recovery_curve_without_probes_gives_none(history) -> None:
    assert training_charts.recovery_curve(history) is None


def test_loss_curves_skip_non_finite_values_and_colour_runs_by_class() -> None:
    fig = training_charts.loss_curves(DCGAN_HISTORY)
    g = bar(fig, "DCGAN (Parasitized): Generator")
    assert list(g.x) == [2] and list(g.y) == [1.0]
    d_real = bar(fig, "DCGAN (Parasitized): Discriminator on real cells")
    assert list(d_real.x) == [1, 2]
    assert d_real.line.color == charts.CLASS_COLOURS["Parasitized"]
    uninfected = bar(fig, "DCGAN (Uninfected): Generator")
    assert uninfected.line.color == charts.CLASS_COLOURS["Uninfected"]
    assert g.line.dash != d_real.line.dash


def test_loss_curves_single_run_uses_readable_loss_names() -> None:
    history = {"losses": {"cgan": [{"iteration": 1, "d_hinge": 1.0, "g": 2.0, "r1_gp": 0.1}]}}
    names = {t.name for t in training_charts.loss_curves(history).data}
    assert names == {"Discriminator (hinge)", "Generator", "R1 gp"}
    # No legend entry is a logged key: every loss the training loops log has a name.
    assert not names & set(training_charts.LOSS_TITLES)


@pytest.mark.parametrize("history", [None, {}, {"losses": {}}, {"losses": {"r": [{"x": 1}]}}])
def test_loss_curves_without_losses_gives_none(history) -> None:
    assert training_charts.loss_curves(history) is None


def test_classifier_history_has_loss_and_accuracy() -> None:
    history = [
        {"epoch": 1, "train_loss": 0.7, "val_accuracy": 0.5},
        {"epoch": 2, "train_loss": 0.4, "val_accuracy": 0.9},
    ]
    fig = training_charts.classifier_history(history)
    assert list(bar(fig, "training loss").y) == [0.7, 0.4]
    assert list(bar(fig, "validation accuracy (%)").y) == pytest.approx([50.0, 90.0])
    # The accuracy axis has round ticks of its own from 0% to 100%.
    accuracy_axis = fig.layout.yaxis2
    assert list(accuracy_axis.range) == [0, 100] and accuracy_axis.tickmode == "linear"
    assert accuracy_axis.tick0 == 0 and accuracy_axis.dtick == training_charts.ACCURACY_TICK
    assert accuracy_axis.ticksuffix == "%"


def test_run_title_names_runs_for_people() -> None:
    assert training_charts.run_title("cgan") == "Conditional GAN"
    assert training_charts.run_title("dcgan_parasitized") == "DCGAN (Parasitized)"
    assert training_charts.run_title("dcgan_Uninfected") == "DCGAN (Uninfected)"
    assert training_charts.run_title("stylegan_uninfected") == "stylegan (Uninfected)"
    assert training_charts.run_title("my_run") == "my_run"
    assert training_charts.run_title("_parasitized") == "_parasitized"


@pytest.mark.parametrize("history", [None, {}, [], [{"epoch": 1}], ["x"]])
def test_classifier_history_without_epochs_gives_none(history) -> None:
    assert training_charts.classifier_history(history) is None


def test_exported_histories_all_draw() -> None:
    index = json.loads((EXPORTED / "index.json").read_text())
    for name, relative in index["history"].items():
        history = artifacts.load_history(EXPORTED, relative)
        if name == "classifier":
            assert training_charts.classifier_history(history) is not None
        else:
            assert training_charts.loss_curves(history) is not None
            # A run trained without a probe classifier (the CPU-trained DCGANs) has no curve.
            probed = any((history.get("probes") or {}).values())
            assert (training_charts.recovery_curve(history) is not None) == probed


# Classifier comparison.

ROWS = [
    {
        "name": "classifier",
        "display_name": "ResNet, our recipe",
        "accuracy": 0.97,
        "auc": 0.995,
        "sensitivity": 0.96,
        "specificity": 0.98,
        "parameters": 2149058,
        "cpu_latency_ms": 2.1,
        "tta": True,
        "recipe": "sound",
        "diverged_at_epoch": None,
    },
    {"name": "cnn_report", "accuracy": 0.5, "diverged_at_epoch": 3},
    {"name": "no_accuracy", "accuracy": None},
]


def test_classifier_table_formats_values_and_marks_missing_ones() -> None:
    table = tables.classifier_table(ROWS)
    assert [row["classifier"] for row in table] == [
        "ResNet, our recipe",
        "cnn_report",
        "no_accuracy",
        "Report's ResNet (3,4,6)",
        "Report's simple CNN",
    ]
    assert all(list(row) == list(tables.TABLE_COLUMNS) for row in table)
    first = table[0]
    assert first["accuracy"] == "97.0%" and first["AUC"] == "0.995"
    assert first["parameters"] == "2.15 M" and first["CPU latency, one cell"] == "2.10 ms"
    assert first["TTA"] == "yes" and first["diverged"] == tables.MISSING
    assert table[1]["diverged"] == "epoch 3" and table[1]["AUC"] == tables.MISSING
    assert table[2]["accuracy"] == tables.MISSING
    assert table[3]["accuracy"] == "94.9%" and table[3]["source"] == "report (published)"
    assert table[4]["accuracy"] == "52–55%"


def test_number_formatting_marks_missing_values() -> None:
    assert tables.percent(0.9489, 2) == "94.89%" and tables.percent(np.float32(0.5)) == "50.0%"
    assert [tables.percent(v) for v in (None, True, math.nan, "0.5")] == [tables.MISSING] * 4
    assert tables.number(2.1, ".2f", "ms") == "2.10 ms"
    assert tables.number(math.inf, ".2f") == tables.MISSING
    assert tables.percent_range(0.52, 0.55) == "52–55%"


def test_classifier_table_without_rows() -> None:
    assert tables.classifier_table(None, with_report=False) == []
    assert len(tables.classifier_table([], with_report=True)) == 2


def test_classifier_bars_reference_lines_and_diverged_colour() -> None:
    fig = charts.classifier_bars(ROWS)
    (trace,) = fig.data
    assert list(trace.y) == ["ResNet, our recipe", "cnn_report"]
    assert list(trace.x) == pytest.approx([97.0, 50.0])
    assert trace.marker.color[1] == charts.DIVERGED_COLOUR
    assert "diverged at epoch 3" in trace.text[1]
    shapes = {shape.type: shape for shape in fig.layout.shapes}
    low, high = report.REPORT_CNN_ACCURACY
    assert shapes["rect"].x0 == pytest.approx(100 * low)
    assert shapes["rect"].x1 == pytest.approx(100 * high)
    assert shapes["line"].x0 == pytest.approx(100 * report.REPORT_RESNET_ACCURACY)


def test_classifier_bars_without_accuracies_give_none() -> None:
    assert charts.classifier_bars(None) is None
    assert charts.classifier_bars([{"name": "x"}, "junk"]) is None


def test_probability_bar_html_widths() -> None:
    html = cells.probability_bar_html((0.25, 0.75))
    assert "width:25.00%;background:#b0306e" in html
    assert "width:75.00%;background:#2a7fba" in html
    assert "width:0.00%" in cells.probability_bar_html((math.nan, 1.0))


def test_probability_legend_html_puts_each_class_at_its_end() -> None:
    legend = cells.probability_legend_html((0.25, 0.75))
    assert legend.index("P(Parasitized) 25.0%") < legend.index("P(Uninfected) 75.0%")
    assert f"color:{charts.CLASS_COLOURS['Parasitized']}" in legend
    assert "justify-content:space-between" in legend and "white-space:nowrap" in legend
    assert f"P(Parasitized) {tables.MISSING}" in cells.probability_legend_html((math.nan, 1.0))


def test_diagnosis_rows_report_each_variant():
    diagnosis = {
        "variants": {
            "report": {
                "initial_logit_std": 47.1,
                "first_gradient_norm": 1217.0,
                "first_nonfinite_step": None,
                "epochs": [
                    {
                        "dead_relu_share": 1.0,
                        "predicted_parasitized_share": 0.0,
                        "test_accuracy": 0.345,
                    }
                ],
            },
            "unit": {"first_nonfinite_step": 5, "epochs": [{"test_accuracy": float("nan")}]},
        }
    }
    rows = tables.diagnosis_rows(diagnosis)
    accuracy = tables.diagnosis_accuracy_column(diagnosis)
    assert accuracy == "accuracy short run (not the table above)"
    assert [r["variant"] for r in rows] == ["report", "unit"]
    assert rows[0][tables.DIAGNOSIS_SILENT] == "100.0%" and rows[0][accuracy] == "34.5%"
    assert rows[0][tables.DIAGNOSIS_BROKE] == "never" and rows[1][tables.DIAGNOSIS_BROKE] == "5"
    assert rows[1][accuracy] == tables.MISSING
    assert tables.diagnosis_rows(None) == []


def test_diagnosis_speaks_plainly_of_the_released_figures():
    diagnosis = artifacts.load_metrics(EXPORTED)["cnn_diagnosis"]
    rows = tables.diagnosis_rows(diagnosis)
    words = " ".join(str(value) for row in rows for value in [*row, *row.values()])
    for jargon in ("NaN", "ReLU", "255^2", "logit", "gradient"):
        assert jargon not in words
    assert rows[0]["variant"] == "the report's way (pixels 0–255, learning rate 0.01)"
    assert rows[2]["variant"] == "pixels 0–255, learning rate 0.01 ÷ 65,025"
    epochs = diagnosis["epochs"]
    assert f"accuracy after {epochs} epochs (not the table above)" in rows[0]
    # The report's way predicts Parasitized for every cell: the heading says so, not "chance".
    assert rows[0]["predicted Parasitized"] == "100.0%"
    heading = tables.diagnosis_heading(diagnosis)
    assert heading.endswith("calls every cell Parasitized") and "chance" not in heading
    learning = {"variants": {"a": {"input_scale": "raw", "lr": 0.01, "epochs": [{"x": 1}]}}}
    assert "calls every cell" not in tables.diagnosis_heading(learning)
    # The footnote names each variant as the table does, in words, each figure with its meaning.
    notes = " ".join(tables.diagnosis_notes(diagnosis))
    for jargon in ("ReLU", "dead", "255^2", "SGD", "[0,1]", *diagnosis["variants"]):
        assert jargon not in notes, jargon
    assert f"“{rows[0]['variant']}” broke down at training step" in notes
    assert "its accuracy is only the share of Parasitized cells in the test set: " in notes
    assert "units never fire" in notes


def test_training_summary_states_runs_and_kept_checkpoints() -> None:
    one = {"cgan": {"iterations": 5200, "train_seconds": 1320.0, "selected_iteration": 4800}}
    assert tables.training_summary("cGAN", one) == (
        "cGAN: 5,200 iterations in 22.0 min (checkpoint kept: 4,800)"
    )
    last = {"cgan": {"iterations": 12, "train_seconds": 12.2, "selected_iteration": 12}}
    assert tables.training_summary("cGAN", last) == "cGAN: 12 iterations in 0.2 min"
    pair = {
        "dcgan_parasitized": {"iterations": 700, "train_seconds": 660.0},
        "dcgan_uninfected": {"iterations": 650, "train_seconds": None},
    }
    assert tables.training_summary("DCGAN", pair) == (
        "DCGAN: two runs, Parasitized 700 iterations in 11.0 min, Uninfected 650 iterations"
    )
    assert tables.training_summary("DCGAN", None) == tables.training_summary("x", {}) == ""
    assert tables.run_class("dcgan_uninfected") == "Uninfected"
    assert tables.run_class("cgan") is None and tables.run_class("_parasitized") is None


def diagnosis(dead: float, predicted: float, *, epochs: int = 1) -> dict:
    """A report's-CNN diagnosis of two variants, the first diverged at step 6."""
    last = {"dead_relu_share": dead, "predicted_parasitized_share": predicted}
    return {
        "test_parasitized_share": 0.5,
        "epochs": epochs,
        "variants": {
            "raw": {"first_nonfinite_step": 6, "epochs": [{**last, "dead_relu_share": 0.0}]},
            "unit": {"first_nonfinite_step": None, "epochs": [last]},
        },
    }


def test_diagnosis_notes_follow_the_figures() -> None:
    notes = tables.diagnosis_notes(diagnosis(0.1875, 1.0))
    assert notes[0] == "Each variant trained for 1 epoch (passes over the training cells)."
    assert notes[1] == (
        "The variant “raw” broke down at training step 6: from then on its loss was no longer a "
        "number."
    )
    assert notes[2].startswith("The variants “raw” and “unit” predict Parasitized for every")
    assert notes[2].endswith(
        "their accuracy is only the share of Parasitized cells in the test set: 50.0%."
    )
    # The silent share is the table's: no claim that every unit stopped firing.
    assert notes[3] == (
        "Units that never fire do not explain that: after training, at most 18.8% of any "
        "variant's units never fire."
    )
    silent = tables.diagnosis_notes(diagnosis(1.0, 0.0, epochs=3))
    assert silent[0] == "Each variant trained for 3 epochs (passes over the training cells)."
    assert "The variants “raw” and “unit” predict Uninfected for every test cell" in silent[2]
    assert silent[3] == "After training, no unit of the variant “unit” ever fires."
    mixed = tables.diagnosis_notes(diagnosis(0.05, 0.4))
    assert mixed[2] == "After training, at most 5.0% of any variant's units never fire."
    learning = {
        "variants": {
            "unit": {"epochs": [{"dead_relu_share": 0.1, "predicted_parasitized_share": 0.4}]}
        }
    }
    assert tables.diagnosis_notes(learning) == [
        "After training, at most 10.0% of any variant's units never fire."
    ]
    assert tables.diagnosis_notes(None) == []
