"""Evaluation results for people: a terminal table, a CSV file and the accuracy-vs-T plot."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping

from rich.table import Table

from .layer_error import OUTPUT, ConversionError
from .record import conversion_label, top1_by_T

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


def layer_error_table(result: ConversionError, title: str) -> Table:
    """Share of neurons off by ≥ 1 spike per layer (rows) and T (columns); at the smallest T > 1, how that share
    splits into over- and under-firing; the readout's class agreement with the ANN in the last row."""
    steps = sorted({r.T for r in result.rows})
    split_T = next((t for t in steps if t > 1), steps[0])
    table = Table(title=f"{title}: % of neurons off by ≥ 1 spike from the ANN")
    for col in ("layer", "θ", *(f"T={t}" for t in steps), f"over/under T={split_T}"):
        table.add_column(col, justify="right", no_wrap=True)
    by_key = {(r.layer, r.T): r for r in result.rows}
    for layer in result.layers:
        split = by_key[layer, split_T]
        table.add_row(layer, f"{split.threshold:.3g}", *(f"{100 * by_key[layer, t].off_by_spike:.1f}" for t in steps),
                      f"{100 * split.over:.1f}/{100 * split.under:.1f}")
    table.add_row("class = ANN's", "", *(f"{100 * by_key[OUTPUT, t].agreement:.1f}" for t in steps), "")
    return table


def write_layer_error_csv(result: ConversionError, path: str | Path) -> None:
    rows = result.as_dicts()
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot_layer_error(result: ConversionError, path: str | Path, title: str) -> None:
    """Share of neurons off by ≥ 1 spike and MSE along the network, one line per T."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=120)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    x = range(len(result.layers))
    for t in sorted({r.T for r in result.rows}):
        rows = {r.layer: r for r in result.at(t)}
        axes[0].plot(x, [100 * rows[n].off_by_spike for n in result.layers], "o-", ms=3, label=f"T={t}")
        axes[1].plot(x, [rows[n].mse for n in result.layers], "o-", ms=3, label=f"T={t}")
    axes[0].set_ylabel("neurons off by ≥ 1 spike (%)")
    axes[1].set_ylabel("MSE (activation units²)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xticks(list(x), result.layers, rotation=90, fontsize="x-small")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path)
