"""Display tables of metrics.json and the number formatting they share (plain strings)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from malgan import release, report
from malgan.data import CLASSES

# Shown where a value is missing or not a finite number.
MISSING = "—"
# Decimals of every percentage the app shows: one convention on every page.
PERCENT_DIGITS = 1
# The "source" of the classifier table's rows.
MEASURED_SOURCE = "malgan (measured)"
PUBLISHED_SOURCE = "report (published)"
PARAMETER_UNIT = 1e6
TABLE_COLUMNS = (
    "classifier",
    "source",
    "accuracy",
    "AUC",
    "sensitivity (Parasitized)",
    "specificity",
    "parameters",
    "CPU latency, one cell",
    "TTA",
    "recipe",
    "diverged",
)
HEADLINE_COLUMNS = ("Figure", "The report", "The report's DCGAN, reproduced", "malgan cGAN")
HEADLINE_MODELS = {"The report's DCGAN, reproduced": "dcgan", "malgan cGAN": "cgan"}


# Numbers.


def finite(value: Any) -> bool:
    """Whether ``value`` is a finite real number, numpy's included (booleans are not)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def percent(value: Any, digits: int = PERCENT_DIGITS) -> str:
    """A fraction as a percentage, e.g. ``percent(0.9489)`` -> "94.9%" ("—" if missing)."""
    return f"{100 * float(value):.{digits}f}%" if finite(value) else MISSING


def percent_range(low: float, high: float) -> str:
    """Two fractions as a range of whole percentages, e.g. "52–55%"."""
    return f"{100 * low:.0f}–{100 * high:.0f}%"


def alternatives(phrases: Sequence[str]) -> str:
    """Phrases joined as alternatives: "a", "a or b", "a, b or c"."""
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + f" or {phrases[-1]}"


def number(value: Any, fmt: str, unit: str = "") -> str:
    """``value`` in a format spec, with a unit after a space ("—" if missing)."""
    if not finite(value):
        return MISSING
    return f"{format(value, fmt)} {unit}" if unit else format(value, fmt)


# The overview's headline table.


def _recovery_text(entry: Any) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("rate"), int | float):
        return MISSING
    text = percent(entry["rate"])
    low, high = entry.get("ci_low"), entry.get("ci_high")
    if finite(low) and finite(high):
        text += f" ({percent(low)}–{percent(high)})"
    return text


def _fd_ratio_text(model: dict[str, Any], floor: dict[str, Any], label: str) -> str:
    ratio = (model.get(release.FD_RATIO) or {}).get(label)
    if not isinstance(ratio, int | float):
        fd = (model.get(release.FD) or {}).get(label)
        base = (model.get(release.FD_REAL_FLOOR) or floor).get(label)
        if not (isinstance(fd, int | float) and isinstance(base, int | float) and base > 0):
            return MISSING
        ratio = fd / base
    return f"{ratio:.1f}× floor"


def _memorisation_text(model: dict[str, Any]) -> str:
    entries = [e for e in (model.get(release.MEMORIZATION) or {}).values() if isinstance(e, dict)]
    entries = [e for e in entries if isinstance(e.get("share"), int | float) and e.get("n")]
    total = sum(int(e["n"]) for e in entries)
    if not total:
        return MISSING
    return percent(sum(float(e["share"]) * int(e["n"]) for e in entries) / total)


def diversity_entry(model: Mapping[str, Any] | None, label: str) -> dict[str, Any]:
    """One class's k-NN figures of a generator (its ``release.DIVERSITY`` entry): the
    generated cells' and the reference's figures, ``n`` and ``n_real``; empty when not measured."""
    entry = ((model or {}).get(release.DIVERSITY) or {}).get(label)
    return entry if isinstance(entry, dict) else {}


def _coverage_text(model: dict[str, Any], label: str) -> str:
    entry = diversity_entry(model, label)
    ours = (entry.get(release.GENERATED) or {}).get("coverage")
    real = (entry.get(release.REFERENCE) or {}).get("coverage")
    if not finite(ours):
        return MISSING
    return f"{percent(ours)} (real: {percent(real)})" if finite(real) else percent(ours)


def membership_text(model: Mapping[str, Any] | None, label: str) -> str:
    """E.g. "57% (real cells of unseen patients: 62%)": how often a class's nearest real cell
    is a training cell, beside the reference ("—" when not measured)."""
    entry = ((model or {}).get(release.MEMBERSHIP) or {}).get(label)
    entry = entry if isinstance(entry, dict) else {}
    if not finite(entry.get(release.GENERATED)):
        return MISSING
    real = entry.get(release.REFERENCE)
    tail = f" (real cells of unseen patients: {percent(real)})" if finite(real) else ""
    return percent(entry[release.GENERATED]) + tail


def _tstr_text(model: dict[str, Any]) -> str:
    value = model.get(release.TSTR_ACCURACY)
    if not isinstance(value, int | float):
        value = (model.get(release.TSTR) or {}).get(release.ACCURACY)
    return percent(value)


def headline_table(metrics_data: dict[str, Any] | None) -> list[dict[str, str]]:
    """The overview's comparison: the report's figures next to both of malgan's generators.

    Args:
        metrics_data: ``metrics.json`` (None or partial data gives "—" where values are missing).

    Returns:
        One dict per row, keyed by ``HEADLINE_COLUMNS``.
    """
    metrics_data = metrics_data or {}
    models = release.all_model_metrics(metrics_data)
    floor = release.real_floor(metrics_data)
    accuracy = percent(release.main_classifier(metrics_data).get(release.TEST_ACCURACY))
    rows: list[dict[str, str]] = []
    shown = {
        column: name
        for column, name in HEADLINE_MODELS.items()
        if known_fault(metrics_data, name) is None
    }

    def add(figure: str, reported: str, ours: Callable[[dict[str, Any]], str]) -> None:
        row = {"Figure": figure, "The report": reported}
        for column, name in shown.items():
            model = models.get(name)
            row[column] = ours(model) if isinstance(model, dict) else MISSING
        rows.append(row)

    for label in CLASSES:
        add(
            f"Recovery, {label} (95% CI)",
            percent(report.REPORT_RECOVERY.get(label)),
            lambda m, label=label: _recovery_text((m.get(release.RECOVERY) or {}).get(label)),
        )
    add(
        "Classifier accuracy, held-out patients",
        percent(report.REPORT_RESNET_ACCURACY),
        lambda m: accuracy,
    )
    for label in CLASSES:
        add(
            f"Fréchet distance, {label} (× real-vs-real floor)",
            MISSING,
            lambda m, label=label: _fd_ratio_text(m, floor, label),
        )
    for label in CLASSES:
        add(
            f"Coverage of real variety, {label} (real cells of other patients)",
            MISSING,
            lambda m, label=label: _coverage_text(m, label),
        )
    add("Train on synthetic, test on real: accuracy", MISSING, _tstr_text)
    add("Memorisation share (near-copies of training cells)", MISSING, _memorisation_text)
    return rows


def headline_columns(metrics_data: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The overview's columns: a model whose run has a known fault is left out."""
    return tuple(
        column
        for column in HEADLINE_COLUMNS
        if known_fault(metrics_data, HEADLINE_MODELS.get(column, "")) is None
    )


# Where a model comes from, and what is known to be wrong with it.
def known_fault(metrics_data: Mapping[str, Any] | None, name: str) -> str | None:
    """The sentence ``metrics.json`` gives for a model trained with a known fault, or None."""
    fault = release.model_metrics(metrics_data, name).get(release.KNOWN_FAULT)
    return fault if isinstance(fault, str) and fault else None


def machine_text(hardware: Any) -> str | None:
    """A machine in words: "one NVIDIA H200", "2 CPU cores"; None when unknown."""
    if not isinstance(hardware, Mapping):
        return None
    gpu, count = hardware.get("gpu"), hardware.get("gpu_count")
    if isinstance(gpu, str) and gpu:
        return f"{counted(count, gpu) if isinstance(count, int) and count > 1 else 'one ' + gpu}"
    cores = hardware.get("cpu_count")
    return counted(cores, "CPU core") if isinstance(cores, int) else None


def generator_origin(metrics_data: Mapping[str, Any] | None, name: str) -> str:
    """How much a generator trained and on what, e.g. "2,400 and 2,380 of the report's 15,000
    iterations, on 2 CPU cores" for the report's DCGAN pair; "" when unknown.

    The machine is the model's own ``trained_on`` where it was trained apart from the rest of
    the release, else the release's ``hardware``.
    """
    metrics_data = metrics_data or {}
    model = release.model_metrics(metrics_data, name)
    runs = model.get(release.TRAINING)
    runs = runs if isinstance(runs, Mapping) else {}
    counts = [info.get("iterations") for info in runs.values() if isinstance(info, Mapping)]
    counts = [c for c in counts if isinstance(c, int)]
    if not counts:
        return ""
    its = " and ".join(f"{c:,}" for c in counts)
    if name == "dcgan":
        its += f" of the report's {report.REPORT_DCGAN_ITERATIONS:,} iterations"
    else:
        its += " iterations"
    machine = machine_text(model.get(release.TRAINED_ON) or metrics_data.get(release.HARDWARE))
    return f"{its}, on {machine}" if machine else its


def generator_label(metrics_data: Mapping[str, Any] | None, name: str, display: str) -> str:
    """A generator's name on a chart: its display name, and either that its run has a known
    fault or how much it trained and on what."""
    # A chart's axis label: the second line under the name keeps the bars wide.
    if known_fault(metrics_data, name):
        return f"{display}<br>(faulty run, not the report's method)"
    origin = generator_origin(metrics_data, name)
    return f"{display}<br>({origin})" if origin and name == "dcgan" else display


# Training runs.


def kept_iteration(info: Mapping[str, Any]) -> int | None:
    """The iteration a run's exported model comes from, when it is not the run's last."""
    kept = info.get("selected_iteration")
    return kept if isinstance(kept, int) and kept != info.get("iterations") else None


def _run_text(info: Mapping[str, Any]) -> str:
    """One run's length, e.g. "5,200 iterations in 22.0 min (checkpoint kept: 4,800)"."""
    iterations, seconds = info.get("iterations"), info.get("train_seconds")
    text = f"{iterations:,} iterations" if isinstance(iterations, int) else "? iterations"
    if finite(seconds):
        text += f" in {seconds / 60:.1f} min"
    kept = kept_iteration(info)
    if kept is not None:
        text += f" (checkpoint kept: {kept:,})"
    return text


def run_class(run: str) -> str | None:
    """The class a per-class training run learned (``dcgan_parasitized`` -> "Parasitized")."""
    for label in CLASSES:
        suffix = f"_{label.lower()}"
        if run.lower().endswith(suffix) and len(run) > len(suffix):
            return label
    return None


def training_summary(display_name: str, runs: Mapping[str, Any] | None) -> str:
    """How long a generator trained, from its ``release.TRAINING`` entry in ``metrics.json``.

    Args:
        display_name: The generator's name shown to people.
        runs: Run name -> ``{"iterations", "train_seconds", "selected_iteration", ...}``; a
            per-class pair has one run per class.

    Returns:
        E.g. "malgan conditional GAN: 5,200 iterations in 22.0 min (checkpoint kept: 4,800)",
        or for a pair "The report's DCGAN: two runs, Parasitized 700 iterations in 11.0 min,
        Uninfected 690 iterations in 11.0 min; 22.0 min in all"; "" without runs.
    """
    runs = {k: v for k, v in (runs or {}).items() if isinstance(v, Mapping)}
    if not runs:
        return ""
    if len(runs) == 1:
        return f"{display_name}: {_run_text(next(iter(runs.values())))}"
    parts = [f"{run_class(run) or run} {_run_text(info)}" for run, info in runs.items()]
    seconds = [info.get("train_seconds") for info in runs.values()]
    total = f"; {sum(seconds) / 60:.1f} min in all" if all(finite(s) for s in seconds) else ""
    count = {2: "two", 3: "three"}.get(len(runs), str(len(runs)))
    return f"{display_name}: {count} runs, {', '.join(parts)}{total}"


# The classifiers.


def shown_name(row: Mapping[str, Any]) -> str | None:
    """A model's name as people see it: its display name, else its name (None: neither)."""
    return row.get(release.DISPLAY_NAME) or row.get(release.NAME)


def classifier_table(
    rows: Sequence[Mapping[str, Any]] | None, *, with_report: bool = True
) -> list[dict[str, str]]:
    """The classifiers' comparison rows (``release.comparison_rows``) for display, missing values
    shown as "—".

    Args:
        rows: The classifier records.
        with_report: Append the report's published ResNet and simple-CNN accuracies.

    Returns:
        One dict per classifier with the keys of ``TABLE_COLUMNS``, all values strings.
    """
    table = []
    for row in rows or []:
        if not isinstance(row, Mapping):
            continue
        diverged = row.get(release.DIVERGED_AT_EPOCH)
        tta = row.get(release.TTA)
        params = row.get(release.PARAMETERS)
        millions = params / PARAMETER_UNIT if finite(params) else None
        table.append(
            {
                "classifier": str(shown_name(row) or MISSING),
                "source": MEASURED_SOURCE,
                "accuracy": percent(row.get(release.ACCURACY)),
                "AUC": number(row.get(release.AUC), ".3f"),
                "sensitivity (Parasitized)": percent(row.get(release.SENSITIVITY)),
                "specificity": percent(row.get(release.SPECIFICITY)),
                "parameters": number(millions, ".2f", "M"),
                "CPU latency, one cell": number(row.get(release.CPU_LATENCY_MS), ".2f", "ms"),
                "TTA": ("yes" if tta else "no") if isinstance(tta, bool) else MISSING,
                "recipe": str(row.get(release.RECIPE) or MISSING),
                "diverged": f"epoch {diverged}" if finite(diverged) else MISSING,
            }
        )
    if with_report:
        for name, accuracy in (
            ("Report's ResNet (3,4,6)", percent(report.REPORT_RESNET_ACCURACY)),
            ("Report's simple CNN", percent_range(*report.REPORT_CNN_ACCURACY)),
        ):
            row = dict.fromkeys(TABLE_COLUMNS, MISSING)
            row.update(classifier=name, source=PUBLISHED_SOURCE, accuracy=accuracy)
            table.append(row)
    return table


# A predicted share this close to 0 or 1 means the network gives one class for every cell.
ONE_CLASS_MARGIN = 0.01
# A dead-ReLU share from which a network is called all dead.
ALL_DEAD = 0.99


def counted(count: int, noun: str) -> str:
    """A count with its noun, singular for one: "1 epoch", "3 epochs"."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _variants(labels: Sequence[str]) -> str:
    """Variants as the diagnosis table names them: 'the variant “a”', 'the variants “a” and “b”'."""
    quoted = [f"“{label}”" for label in labels]
    if len(quoted) == 1:
        return f"the variant {quoted[0]}"
    return "the variants " + ", ".join(quoted[:-1]) + f" and {quoted[-1]}"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def diagnosis_notes(diagnosis: dict[str, Any] | None) -> list[str]:
    """What the report's-CNN diagnosis shows, in sentences computed from its figures.

    Which variants broke down, which give one class for every test cell (and so score that
    class's share of the test set), and how many of their units never fire. Variants are named
    as the diagnosis table names them (``diagnosis_rows``), each figure with what it measures.

    Args:
        diagnosis: The ``release.CNN_DIAGNOSIS`` entry of ``metrics.json``.

    Returns:
        The sentences, in reading order; empty without a diagnosis.
    """
    variants = {
        name: rec
        for name, rec in ((diagnosis or {}).get("variants") or {}).items()
        if isinstance(rec, Mapping)
    }
    last = {name: (rec.get("epochs") or [{}])[-1] for name, rec in variants.items()}
    if not last:
        return []
    top_lr = max((r.get("lr") for r in variants.values() if finite(r.get("lr"))), default=None)
    label = {name: _variant_label(name, rec, top_lr) for name, rec in variants.items()}
    notes = []
    epochs = (diagnosis or {}).get("epochs")
    if isinstance(epochs, int):
        notes.append(
            f"Each variant trained for {counted(epochs, 'epoch')} (passes over the training cells)."
        )
    for name, rec in variants.items():
        step = rec.get("first_nonfinite_step")
        if isinstance(step, int):
            notes.append(
                f"{_sentence(_variants([label[name]]))} broke down at training step {step:,}: "
                "from then on its loss was no longer a number."
            )
    one_class: dict[str, list[str]] = {}
    for name, epoch in last.items():
        share = epoch.get("predicted_parasitized_share")
        if finite(share) and min(share, 1 - share) <= ONE_CLASS_MARGIN:
            one_class.setdefault(CLASSES[0] if share > 0.5 else CLASSES[1], []).append(label[name])
    test_share = (diagnosis or {}).get("test_parasitized_share")
    for cls, labels in one_class.items():
        share = None
        if finite(test_share):
            share = test_share if cls == CLASSES[0] else 1 - test_share
        of_set = f": {percent(share)}" if finite(share) else ""
        verb, its = ("predicts", "its") if len(labels) == 1 else ("predict", "their")
        notes.append(
            f"{_sentence(_variants(labels))} {verb} {cls} for every test cell, so {its} accuracy "
            f"is only the share of {cls} cells in the test set{of_set}."
        )
    silent = {n: e["dead_relu_share"] for n, e in last.items() if finite(e.get("dead_relu_share"))}
    if silent:
        all_silent = [label[name] for name, share in silent.items() if share >= ALL_DEAD]
        most = f"at most {percent(max(silent.values()))} of any variant's units never fire"
        if all_silent:
            notes.append(f"After training, no unit of {_variants(all_silent)} ever fires.")
        elif one_class:
            notes.append(f"Units that never fire do not explain that: after training, {most}.")
        else:
            notes.append(f"After training, {most}.")
    return notes


# Pixels of each input scale of the diagnosis, in words.
PIXEL_WORDS = {"raw": "pixels 0–255", "unit": "pixels 0–1"}
DIAGNOSIS_BROKE = "training broke down at step"
DIAGNOSIS_SILENT = "units that never fire"


def diagnosis_accuracy_column(diagnosis: Mapping[str, Any] | None) -> str:
    """The diagnosis table's accuracy column, which says how short the experiment was."""
    epochs = (diagnosis or {}).get("epochs")
    trained = f"after {counted(epochs, 'epoch')}" if isinstance(epochs, int) else "short run"
    return f"accuracy {trained} (not the table above)"


def _variant_label(name: str, rec: Mapping[str, Any], top_lr: float | None) -> str:
    """A variant in words: its pixels and its learning rate, as a fraction of the largest."""
    pixels, lr = PIXEL_WORDS.get(str(rec.get("input_scale"))), rec.get("lr")
    if pixels is None or not finite(lr) or not finite(top_lr):
        return name
    rate = f"{lr:g}" if lr == top_lr else f"{top_lr:g} ÷ {top_lr / lr:,.0f}"
    words = f"{pixels}, learning rate {rate}"
    return f"the report's way ({words})" if _reports_way(rec, top_lr) else words


def _reports_way(rec: Mapping[str, Any], top_lr: float | None) -> bool:
    """Whether a variant is the report's recipe: raw pixels at the full learning rate."""
    return rec.get("input_scale") == "raw" and finite(top_lr) and rec.get("lr") == top_lr


def diagnosis_rows(diagnosis: dict[str, Any] | None) -> list[dict[str, str]]:
    """One row per variant of the report's-CNN diagnosis (``release.CNN_DIAGNOSIS``).

    Each row gives the variant in words, the spread of the untrained network's outputs, the
    size of its first update, the step at which training broke down (its loss no longer a
    number), the share of dense units that output zero for every cell after training, the
    share of cells predicted Parasitized and the accuracy of this short experiment on held-out
    patients; an empty list when there is no diagnosis.
    """
    if not diagnosis:
        return []
    variants = diagnosis.get("variants") or {}
    rates = [r.get("lr") for r in variants.values() if finite(r.get("lr"))]
    top_lr = max(rates, default=None)
    accuracy = diagnosis_accuracy_column(diagnosis)
    rows = []
    for name, rec in variants.items():
        last = (rec.get("epochs") or [{}])[-1]
        step = rec.get("first_nonfinite_step")
        rows.append(
            {
                "variant": _variant_label(name, rec, top_lr),
                "spread of first outputs": number(rec.get("initial_logit_std"), ".3g"),
                "size of first update": number(rec.get("first_gradient_norm"), ".3g"),
                DIAGNOSIS_BROKE: f"{step:,}" if isinstance(step, int) else "never",
                DIAGNOSIS_SILENT: percent(last.get("dead_relu_share")),
                "predicted Parasitized": percent(last.get("predicted_parasitized_share")),
                accuracy: percent(last.get("test_accuracy")),
            }
        )
    return rows


def diagnosis_heading(diagnosis: Mapping[str, Any] | None) -> str:
    """The diagnosis's heading: what the report's way does, when its figures say it plainly."""
    variants = ((diagnosis or {}).get("variants") or {}).values()
    top_lr = max((r.get("lr") for r in variants if finite(r.get("lr"))), default=None)
    for rec in variants:
        share = ((rec.get("epochs") or [{}])[-1]).get("predicted_parasitized_share")
        if (
            _reports_way(rec, top_lr)
            and finite(share)
            and min(share, 1 - share) <= ONE_CLASS_MARGIN
        ):
            label = CLASSES[0] if share > 0.5 else CLASSES[1]
            return f"Why the report's CNN, trained the report's way, calls every cell {label}"
    return "What happens when the report's CNN is trained the report's way"


# Per-generator figures: the C2ST and the list a synthetic set's datasheet states.

# Shown for a figure that metrics.json does not hold.
NOT_MEASURED = "not measured"
C2ST_COLUMNS = (
    "class",
    "C2ST accuracy: generated vs real",
    "AUC",
    "reference: real vs real, other patients",
    "reference AUC",
    "cells per side",
)


def _model(metrics_data: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    return dict(release.model_metrics(metrics_data, name))


def c2st_figures(metrics_data: Mapping[str, Any] | None, name: str) -> dict[str, dict[str, Any]]:
    """A generator's classifier two-sample test per class, where ``metrics.json`` has it.

    Returns:
        ``{label: {"accuracy", "auc", "reference_accuracy", "reference_auc", "n"}}`` for the
        classes measured (a value is None where the file lacks it); empty when not measured.
    """
    entry = _model(metrics_data, name).get(release.C2ST)
    out: dict[str, dict[str, Any]] = {}
    for label in CLASSES:
        figures = (entry or {}).get(label) if isinstance(entry, dict) else None
        if not isinstance(figures, dict):
            continue
        generated = figures.get(release.GENERATED) or {}
        reference = figures.get(release.REFERENCE) or {}
        out[label] = {
            "accuracy": generated.get(release.ACCURACY),
            "auc": generated.get(release.AUC),
            "reference_accuracy": reference.get(release.ACCURACY),
            "reference_auc": reference.get(release.AUC),
            "n": figures.get("n"),
        }
    return out


def c2st_rows(metrics_data: Mapping[str, Any] | None, name: str) -> list[dict[str, str]]:
    """The C2ST of a generator as display rows (``C2ST_COLUMNS``), one per class measured."""
    rows = []
    for label, f in c2st_figures(metrics_data, name).items():
        values = (
            label,
            percent(f["accuracy"]),
            number(f["auc"], ".3f"),
            percent(f["reference_accuracy"]),
            number(f["reference_auc"], ".3f"),
            number(f["n"], ","),
        )
        rows.append(dict(zip(C2ST_COLUMNS, values, strict=True)))
    return rows


def _per_class(entry: Any, text: Callable[[Any], str]) -> str:
    """ "Parasitized X; Uninfected Y" of a per-class entry, or "not measured"."""
    if not isinstance(entry, Mapping) or not any(label in entry for label in CLASSES):
        return NOT_MEASURED
    return "; ".join(f"{label} {text(entry.get(label))}" for label in CLASSES if label in entry)


def _generated_and_reference(key: str, fmt: Callable[[Any], str]) -> Callable[[Any], str]:
    def text(value: Any) -> str:
        value = value if isinstance(value, Mapping) else {}
        generated, reference = value.get(release.GENERATED), value.get(release.REFERENCE)
        if key:
            generated = (generated or {}).get(key) if isinstance(generated, Mapping) else None
            reference = (reference or {}).get(key) if isinstance(reference, Mapping) else None
        return f"{fmt(generated)} (real reference {fmt(reference)})"

    return text


def generator_figures(metrics_data: Mapping[str, Any] | None, name: str) -> list[tuple[str, str]]:
    """What ``metrics.json`` says of a generator, as ``(figure, text)`` in reading order.

    Recovery, Fréchet distance with its real-vs-real floor, coverage, TSTR, memorisation and
    the C2ST, each with its real reference where it has one; "not measured" for a figure the
    file lacks.
    """
    model = _model(metrics_data, name)
    floor = release.real_floor(metrics_data)
    fd = model.get(release.FD)
    fd_text = NOT_MEASURED
    if isinstance(fd, Mapping) and fd:
        fd_text = "; ".join(
            f"{label} {number(fd.get(label), '.2f')} "
            f"(real floor {number(release.real_floor(metrics_data, model).get(label), '.2f')}, "
            f"{_fd_ratio_text(model, floor, label)})"
            for label in CLASSES
            if label in fd
        )
    memorisation = _memorisation_text(model)
    tstr = _tstr_text(model)
    return [
        (
            "Recovery by the classifier (95% CI)",
            _per_class(model.get(release.RECOVERY), _recovery_text),
        ),
        ("Fréchet distance", fd_text),
        (
            "Coverage (k-NN)",
            _per_class(model.get(release.DIVERSITY), _generated_and_reference("coverage", percent)),
        ),
        ("Train on synthetic, test on real: accuracy", NOT_MEASURED if tstr == MISSING else tstr),
        (
            "Memorisation share (near-copies of training cells)",
            NOT_MEASURED if memorisation == MISSING else memorisation,
        ),
        (
            "Nearest-training-cell share",
            _per_class(model.get(release.MEMBERSHIP), _generated_and_reference("", percent)),
        ),
        (
            "C2ST accuracy, generated vs real (0.5: indistinguishable)",
            _per_class(
                model.get(release.C2ST), _generated_and_reference(release.ACCURACY, percent)
            ),
        ),
        (
            "C2ST AUC",
            _per_class(
                model.get(release.C2ST),
                _generated_and_reference(release.AUC, lambda v: number(v, ".3f")),
            ),
        ),
    ]
