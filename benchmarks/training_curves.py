"""Training curves of a run folder: per-epoch train and held-out top-1 and loss, merged across every
invocation of a resumed run (each writes its own ``csv/<start time>/metrics.csv``), as a CSV, a plot and a summary.

Why: a zoo entry's run folder is deleted when the entry is published, and "the ANN has plateaued" is a claim about
the curve, so the curve is kept here with the command that drew it.

    python benchmarks/training_curves.py runs_in_progress/resnet20-cifar10-rmp \
        --out benchmarks/results/training_resnet20_cifar10
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLUMNS = {"train_top1": "train/acc1", "train_loss": "train/loss_epoch", "heldout_top1": ("val/acc1", "test/acc1"),
           "heldout_loss": ("val/loss", "test/loss")}


def metrics_files(run_dir: Path) -> list[Path]:
    """Every metrics.csv of the run, oldest invocation first (folders are named by start time, so they sort)."""
    files = sorted((run_dir / "csv").glob("*/metrics.csv")) + sorted((run_dir / "csv").glob("metrics.csv"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no csv/*/metrics.csv; is it the folder of a `python train.py` run "
                                "with the csv logger (logger=default or logger=csv)?")
    return files


def _value(row: dict[str, str], keys: str | tuple[str, ...]) -> float | None:
    for key in (keys,) if isinstance(keys, str) else keys:
        if row.get(key):
            return float(row[key])
    return None


def read_curves(run_dir: Path) -> tuple[list[dict[str, float]], str]:
    """One row per completed epoch; a later invocation's value for an epoch replaces an earlier one's. Returns the
    rows and the held-out split's name (``val`` or ``test``)."""
    epochs: dict[int, dict[str, float]] = {}
    split = "val"
    for path in metrics_files(run_dir):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                if not row.get("epoch"):
                    continue
                epoch = int(float(row["epoch"]))
                if row.get("test/acc1") and not row.get("val/acc1"):
                    split = "test"
                for name, keys in COLUMNS.items():
                    value = _value(row, keys)
                    if value is not None:
                        epochs.setdefault(epoch, {})[name] = value
    rows = [{"epoch": e, **values} for e, values in sorted(epochs.items()) if "train_top1" in values]
    if not rows:
        raise ValueError(f"{run_dir}: the metrics hold no completed training epoch yet")
    return rows, split


def summary(rows: list[dict[str, float]], split: str, last: int = 10) -> dict[str, float]:
    """Final, best and mean-of-the-last-``last`` held-out top-1 (percent), and the train/held-out gap at the end."""
    heldout = [(r["epoch"], r["heldout_top1"]) for r in rows if "heldout_top1" in r]
    tail = [acc for _, acc in heldout[-last:]]
    best_epoch, best = max(heldout, key=lambda p: p[1])
    final = rows[-1]
    return {"epochs": len(rows), f"final_{split}_top1": 100 * heldout[-1][1], f"best_{split}_top1": 100 * best,
            f"best_{split}_epoch": best_epoch, f"mean_last_{last}_{split}_top1": 100 * sum(tail) / len(tail),
            "final_train_top1": 100 * final["train_top1"], "final_train_loss": final["train_loss"]}


def plot(rows: list[dict[str, float]], split: str, path: Path, title: str) -> None:
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [r["epoch"] for r in rows]
    for key, label in (("train_top1", "train (augmented)"), ("heldout_top1", split)):
        acc_ax.plot(epochs, [100 * r.get(key, math.nan) for r in rows], label=label)
        loss_key = key.replace("top1", "loss")
        loss_ax.plot(epochs, [r.get(loss_key, math.nan) for r in rows], label=label)
    acc_ax.set(xlabel="epoch", ylabel="top-1 (%)", title=title)
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy (train: with label smoothing)")
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows, split = read_curves(args.run_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    fields = ["epoch", "train_loss", "train_top1", "heldout_loss", "heldout_top1"]
    with (args.out / "curves.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, split, args.out / "curves.png", args.run_dir.name)
    record = args.run_dir / "training.json"  # train.py's record of the finished run: wall time, machine
    result = {"run": str(args.run_dir), "heldout_split": split, **summary(rows, split),
              "training": json.loads(record.read_text()) if record.exists() else None,
              "files": [str(p) for p in metrics_files(args.run_dir)]}
    (args.out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
