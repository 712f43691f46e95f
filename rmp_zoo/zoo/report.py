"""Evaluation results for people: a terminal table, a CSV file and the accuracy-vs-T plot."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping

from rich.table import Table

from .measure import conversion_label, top1_by_T

CSV_FIELDS = ("T", "top1", "spikes_per_image", "synops_per_image", "energy_uJ_per_image")


def results_table(metrics: Mapping[str, Any], title: str, published: Mapping[str, Any] | None = None) -> Table:
    """Per-T results; with ``published`` metrics, a column to compare top-1 against."""
    table = Table(title=f"{title}: ANN top-1 {metrics['ann_top1']:.2f}% on {metrics['num_images']} test images")
    compare = metrics.get("compare", [])
    for col in ("T", "SNN top-1 %", *(("published %",) if published else ()), *(f"{c['label']} %" for c in compare),
                "spikes / image", "SynOps / image", "energy µJ / image"):
        table.add_column(col, justify="right")
    reference = top1_by_T(published) if published else {}
    others = [top1_by_T(c) for c in compare]
    for row in metrics["snn"]:
        ref = (f"{reference[row['T']]:.2f}" if row["T"] in reference else "–",) if published else ()
        table.add_row(str(row["T"]), f"{row['top1']:.2f}", *ref, *(f"{o[row['T']]:.2f}" for o in others),
                      f"{row['spikes_per_image']:.4g}", f"{row['synops_per_image']:.4g}",
                      f"{row['energy_uJ_per_image']:.4g}")
    return table


def write_csv(metrics: Mapping[str, Any], path: str | Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(metrics["snn"])


def plot_accuracy(metrics: Mapping[str, Any], path: str | Path, title: str) -> None:
    """SNN top-1 against T (log axis) with the ANN's top-1 as the line it approaches."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for other in metrics.get("compare", []):
        ax.plot(*zip(*top1_by_T(other).items()), ".--", label=other["label"])
    steps, acc = zip(*top1_by_T(metrics).items())
    ax.plot(steps, acc, "o-", label=conversion_label(metrics["conversion"]) if metrics.get("compare") else "SNN")
    ax.axhline(metrics["ann_top1"], color="gray", linestyle="--", label="ANN")
    ax.set_xscale("log", base=2)
    ax.set_xticks(steps, [str(t) for t in steps])
    ax.set_xlabel("time steps T")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
