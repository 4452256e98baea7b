"""curves.png: the training history in metrics.csv, one panel per quantity against epoch.

The first panel holds the losses (train/loss and val/loss); every other epoch-level metric gets
its own panel, and a metric that a task declares a Baseline for carries that baseline (its
latest logged value) as a dashed horizontal line on the same axes. curve_panels returns what
the figure draws, so it can be checked without reading pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recon.pipelines.common.settings import Baseline

LOSSES = ("train/loss", "val/loss")


@dataclass
class Panel:
    """One axes of curves.png: series name -> [(epoch, value)], and (label, value) lines."""

    title: str
    series: dict[str, list[tuple[float, float]]]
    baselines: list[tuple[str, float]] = field(default_factory=list)


def read_history(metrics_csv: Path) -> dict[str, list[tuple[float, float]]]:
    """Every epoch-level value in metrics.csv: name -> [(epoch, value)] (step-level `_step`
    columns are left out; an `_epoch` suffix is dropped)."""
    import csv

    series: dict[str, list[tuple[float, float]]] = {}
    if not Path(metrics_csv).is_file():
        return series
    with Path(metrics_csv).open(newline="") as handle:
        for row in csv.DictReader(handle):
            epoch = row.get("epoch")
            if epoch in ("", None):
                continue
            for key, value in row.items():
                if key in (None, "epoch", "step") or value in ("", None) or key.endswith("_step"):
                    continue
                name = key.removesuffix("_epoch")
                series.setdefault(name, []).append((float(epoch), float(value)))
    return series


def curve_panels(
    history: dict[str, list[tuple[float, float]]], baselines: tuple[Baseline, ...] = ()
) -> list[Panel]:
    """The panels of curves.png (see module doc): losses first, then metrics with a baseline,
    then the other validation metrics, then the other training values."""
    baseline_names = {b.baseline for b in baselines}
    panels = []
    losses = {name: history[name] for name in LOSSES if name in history}
    if losses:
        panels.append(Panel("loss", losses, _lines(history, baselines, losses)))
    rest = [n for n in history if n not in losses and n not in baseline_names]
    with_baseline = [b.metric for b in baselines if b.metric in rest]
    others = sorted(n for n in rest if n not in with_baseline)
    ordered = with_baseline + [n for n in others if n.startswith("val")]
    ordered += [n for n in others if not n.startswith("val")]
    for name in dict.fromkeys(ordered):
        panels.append(Panel(name, {name: history[name]}, _lines(history, baselines, [name])))
    return panels


def _lines(history, baselines: tuple[Baseline, ...], names) -> list[tuple[str, float]]:
    """(label, latest value) of the logged baselines of the metrics names."""
    return [
        (b.label, history[b.baseline][-1][1])
        for b in baselines
        if b.metric in names and b.baseline in history
    ]


def baseline_summary(
    metrics: dict[str, float], baselines: tuple[Baseline, ...]
) -> dict[str, dict[str, Any]]:
    """For run.json: per declared metric, its final value, the baseline's, and whether it beats
    it (higher is better unless the Baseline says mode "min"); None where either is missing."""
    summary = {}
    for b in baselines:
        value, base = metrics.get(b.metric), metrics.get(b.baseline)
        beaten = None
        if value is not None and base is not None:
            beaten = value > base if b.mode == "max" else value < base
        summary[b.metric] = {
            "baseline": b.baseline,
            "label": b.label,
            "value": value,
            "baseline_value": base,
            "beats_baseline": beaten,
        }
    return summary


def plot_curves(metrics_csv: Path, png: Path, baselines: tuple[Baseline, ...] = ()) -> None:
    """curves.png from metrics.csv (see module doc); nothing when there is no history."""
    from recon.pipelines.common.outputs import atomic_file

    panels = curve_panels(read_history(metrics_csv), baselines)
    if not panels:
        return
    figure = curves_figure(panels)
    with atomic_file(png) as tmp:
        figure.savefig(tmp, dpi=80)


def curves_figure(panels: list[Panel]):
    """The matplotlib Figure of curves.png: one axes per panel, whole epochs on the x axes
    (also for a one-epoch run, whose single point left only fractional ticks)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    columns = min(3, len(panels))
    rows = (len(panels) + columns - 1) // columns
    figure = Figure(figsize=(4 * columns, 3 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis, panel in zip(axes.flat, panels, strict=False):
        for name, points in panel.series.items():
            xs, ys = zip(*points, strict=True)
            axis.plot(xs, ys, marker="o", markersize=2, label=name)
        for label, value in panel.baselines:
            axis.axhline(value, linestyle="--", color="grey", label=f"{label} {value:.3g}")
        if len(panel.series) > 1 or panel.baselines:
            axis.legend(fontsize=7)
        axis.set_title(panel.title)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axis.ticklabel_format(axis="y", useOffset=False)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    figure.tight_layout()
    return figure
