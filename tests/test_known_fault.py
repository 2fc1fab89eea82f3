"""A model trained with a known fault: the export marks it, and every page says so beside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from malgan import artifacts, tables
from malgan.app import charts
from malgan.data import CLASSES

pytest.importorskip("torch")
from tests.support.pages import EXPORTED, app_page, html_table, models_copy
from train import export, release_metrics

FAULT = "A run with a known fault, not the report's method."


def metrics_with(**dcgan: object) -> dict:
    """A small metrics.json with a DCGAN pair and the conditional GAN."""
    rates = {c: {"rate": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 100} for c in CLASSES}
    return {
        "hardware": {"cpu_count": 16, "cuda": True, "gpu": "NVIDIA H200", "gpu_count": 1},
        "models": {
            "dcgan": {
                "display_name": "The report's DCGAN (one per class)",
                "recovery": rates,
                "training": {
                    "dcgan_parasitized": {"iterations": 2400},
                    "dcgan_uninfected": {"iterations": 2380},
                },
                **dcgan,
            },
            "cgan": {"display_name": "malgan conditional GAN", "recovery": rates},
        },
    }


@pytest.mark.parametrize(
    ("generator", "config", "faulty"),
    [
        ("dcgan", {}, True),  # a run from before the option existed ran the faulty way
        ("dcgan", {"frozen_bn": "inference"}, True),
        ("dcgan", {"frozen_bn": "batch"}, False),
        ("cgan", {}, False),
    ],
)
def test_the_export_finds_the_fault_in_the_run_config(generator, config, faulty) -> None:
    fault = export.run_fault(generator, config)
    assert (fault == export.DCGAN_BN_FAULT) is faulty
    if faulty:
        assert "BatchNorm" in fault and "not the report's method" in fault


def test_metrics_json_carries_the_fault_the_export_logged(tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    runs.mkdir()
    out.mkdir()
    lines = [
        {"kind": "generator", "name": name, "display_name": name, "cpu_latency_ms_one_cell": 1.0}
        for name in ("dcgan", "cgan")
    ]
    lines += [
        {"kind": "training", "name": "dcgan", "runs": {}, "known_fault": FAULT},
        {"kind": "training", "name": "cgan", "runs": {}},
    ]
    (runs / export.models.EXPORT_LOG).write_text("".join(json.dumps(x) + "\n" for x in lines))
    result = release_metrics.write_metrics(export.ExportConfig(runs=str(runs), out=str(out)))
    assert result["models"]["dcgan"]["known_fault"] == FAULT
    assert "known_fault" not in result["models"]["cgan"]


def test_a_faulty_model_is_labelled_and_left_out_of_the_headline() -> None:
    data = metrics_with(known_fault=FAULT)
    assert tables.known_fault(data, "dcgan") == FAULT
    assert tables.known_fault(data, "cgan") is None
    dcgan_column = next(c for c, n in tables.HEADLINE_MODELS.items() if n == "dcgan")
    assert dcgan_column not in tables.headline_columns(data)
    assert all(dcgan_column not in row for row in tables.headline_table(data))
    labels = [label for label, _ in charts.recovery_sources(data)]
    assert (
        labels[1] == "The report's DCGAN (one per class)<br>(faulty run, not the report's method)"
    )
    assert labels[2] == "malgan conditional GAN"


def test_a_sound_dcgan_states_its_iterations_and_machine() -> None:
    data = metrics_with(trained_on={"cpu_count": 2, "cuda": False})
    origin = "2,400 and 2,380 of the report's 15,000 iterations, on 2 CPU cores"
    assert tables.generator_origin(data, "dcgan") == origin
    assert tables.known_fault(data, "dcgan") is None
    dcgan_column = next(c for c, n in tables.HEADLINE_MODELS.items() if n == "dcgan")
    assert dcgan_column in tables.headline_columns(data)
    assert charts.recovery_sources(data)[1][0].endswith(f"({origin})")
    # Without a machine of its own, the release's.
    del data["models"]["dcgan"]["trained_on"]
    assert tables.generator_origin(data, "dcgan").endswith("on one NVIDIA H200")


@pytest.fixture
def faulty_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = models_copy(tmp_path / "exported", "gpu")
    path = root / "metrics.json"
    data = json.loads(path.read_text())
    data["models"]["dcgan"]["known_fault"] = FAULT
    data["models"]["dcgan"].pop("trained_on", None)
    path.write_text(json.dumps(data))
    monkeypatch.setenv("MALGAN_EXPORTED", str(root))
    return root


@pytest.mark.slow
def test_the_overview_states_where_the_sound_dcgans_trained() -> None:
    at = app_page("pages/overview.py")
    at.run()
    assert not at.exception
    origin = tables.generator_origin(artifacts.load_metrics(EXPORTED), "dcgan")
    assert origin and any(origin in c.value for c in at.caption)


def _warnings(at) -> list[str]:
    return [w.value for w in at.warning]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("page", "params"),
    [
        ("pages/overview.py", {}),
        ("pages/recovery.py", {"r_model": "dcgan"}),
        ("pages/sample.py", {"s_model": "dcgan"}),
        ("pages/training.py", {"t_model": "dcgan"}),
    ],
)
def test_every_page_showing_the_faulty_pair_says_so(faulty_models, page, params) -> None:
    at = app_page(page)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception
    assert any(FAULT in w for w in _warnings(at)), _warnings(at)
    if page.endswith("overview.py"):
        dcgan_column = next(c for c, n in tables.HEADLINE_MODELS.items() if n == "dcgan")
        table = next(m.value for m in at.markdown if 'aria-label="Headline figures"' in m.value)
        assert dcgan_column not in html_table(table)[0]
