"""Tests for the recipe tries' figures and table (benchmarks.recipe_tries)."""

import json

import pytest

pytest.importorskip("torch")

from benchmarks import recipe_tries


def _write_log(run, records):
    run.mkdir(parents=True)
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_a_try_reports_its_last_probe_and_speed(tmp_path):
    early = {"iteration": 500, "Parasitized": 0.1, "Uninfected": 0.2}
    last = {
        "iteration": 1000,
        "Parasitized": 0.97,
        "Uninfected": 0.99,
        "fd": {"Parasitized": 3.5, "Uninfected": 2.25},
        "recall": {"Parasitized": 0.3, "Uninfected": 0.4},
        "coverage": {"Parasitized": 0.5, "Uninfected": 0.6},
    }
    done = {"event": "done", "iterations": 1000, "iterations_per_second": 2.5}
    _write_log(tmp_path / "a", [{"iteration": 1}, {"probe": early}, {"probe": last}, done])
    row = {"try": "a", "change": "x", **recipe_tries.figures(tmp_path / "a")}
    assert row["iteration"] == 1000 and row["iterations_per_second"] == 2.5
    assert row["Parasitized"] == {"recovery": 0.97, "fd": 3.5, "recall": 0.3, "coverage": 0.5}
    line = recipe_tries.table([row]).splitlines()[-1]
    assert "| 2.50 | 97.0% / 99.0% | 3.50 / 2.25 | 0.300 / 0.400 | 0.500 / 0.600 |" in line


def test_an_unfinished_try_shows_dashes(tmp_path):
    assert recipe_tries.figures(tmp_path / "never") == {}
    _write_log(tmp_path / "b", [{"iteration": 1}])
    row = {"try": "b", "change": "y", **recipe_tries.figures(tmp_path / "b")}
    assert (
        recipe_tries.table([row]).splitlines()[-1]
        == "| b | y | – | – / – | – / – | – / – | – / – |"
    )


def test_every_try_changes_only_what_it_names_from_the_cpu_recipe(tmp_path):
    args = recipe_tries.parse_args(
        ["--data", "d", "--guide", "g.pt", "--classifier", "c.onnx", "--out", str(tmp_path)]
    )
    base = recipe_tries.try_config(recipe_tries.TRIES[0], args, tmp_path)
    assert base.guide == "g.pt" and base.classifier == "c.onnx" and base.iterations == 1000
    # The baseline is the recipe before the tries, whatever the profile took from them.
    assert base.mode_seeking == 0.0 and base.guide_weight == 0.5 and base.ch == 16
    names = [t.name for t in recipe_tries.TRIES]
    assert len(set(names)) == len(names)
    for item in recipe_tries.TRIES[1:]:
        cfg = recipe_tries.try_config(item, args, tmp_path)
        changed = {k for k in item.overrides if getattr(cfg, k) != getattr(base, k)}
        assert changed == set(item.overrides) and cfg.out.endswith(item.name)
