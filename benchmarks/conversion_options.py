"""Top-1 at every T of several conversions of one zoo model's ANN, with each conversion's one-off cost.

Every conversion is a ``NEURON:THRESHOLD[:INITIAL]`` spec (``rmp:trained:0.5`` is the published one of the ResNet-20
entries, ``signed:trained:0.5`` adds negative spikes); ``+bias`` after a spec also runs ``correct_bias`` at the
largest T on training images. Thresholds and corrections use training images only; accuracy is measured on the first
``--limit`` test images (all when omitted).

    python benchmarks/conversion_options.py resnet20-cifar10-rmp --data-root data --T 1,2,4,8,16,32 \
        --options rmp:trained:0.5,signed:trained:0.5 --out benchmarks/results/conversion_options_resnet20_cifar10
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from rmp_zoo import ConversionSettings, convert, evaluate, load_pair
from rmp_zoo.zoo.folder import CONFIG, read_json
from rmp_zoo.machine import machine
from rmp_zoo.zoo.measure import build_datamodule, calibration_batches


def build(ann, spec: str, datamodule, T_max: int, calibration_images: int):
    """The SNN for ``spec`` and the seconds its calibration (thresholds, bias correction) took."""
    base, _, extra = spec.partition("+")
    if extra not in ("", "bias"):
        raise ValueError(f"unknown option +{extra} in {spec!r}; the only one is +bias")
    settings = ConversionSettings.of(ConversionSettings.parse(base), bias_correction=T_max if extra else None)
    start = time.perf_counter()
    snn = convert(ann, calibration_batches(datamodule, ann, [settings], calibration_images), settings=settings)
    return snn, time.perf_counter() - start


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a Markdown table whose columns after the first are right-aligned numbers."""
    return ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1),
            *("| " + " | ".join(row) + " |" for row in rows)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name")
    p.add_argument("--data-root", default="data")
    p.add_argument("--T", default="1,2,4,8,16,32")
    p.add_argument("--options", default="rmp:trained:0.5,signed:trained:0.5")
    p.add_argument("--limit", type=int, default=None, help="first N test images (default all)")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--calibration-images", type=int, default=1024)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    steps = [int(t) for t in args.T.split(",")]
    ann, published = load_pair(args.name)
    config = read_json(Path(published.pretrained_cfg["folder"]) / CONFIG)
    datamodule = build_datamodule(config["dataset"], args.data_root, args.batch_size)
    datamodule.setup("fit")
    rows = []
    for spec in args.options.split(","):
        snn, calibration_s = build(ann, spec, datamodule, max(steps), args.calibration_images)
        start = time.perf_counter()
        result = evaluate(snn, datamodule.eval_batches("test", args.limit), T=steps, ann=ann)
        rows.append({"option": spec, "calibration_s": calibration_s, "eval_s": time.perf_counter() - start,
                     "ann_top1": result.ann_top1, "top1": {t: result.top1[t] for t in steps},
                     "spikes_per_image": {t: result.spikes_per_image[t] for t in steps},
                     "num_images": result.num_images})
        print(f"{spec}: " + ", ".join(f"T={t} {result.top1[t]:.2f}" for t in steps)
              + f" (ANN {result.ann_top1:.2f}, calibration {calibration_s:.1f} s)", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/conversion_options.py " + " ".join(
        [args.name, "--data-root", args.data_root, "--T", args.T, "--options", args.options,
         *(["--limit", str(args.limit)] if args.limit else []), "--batch-size", str(args.batch_size),
         "--calibration-images", str(args.calibration_images), "--threads", str(args.threads), "--out", args.out])
    (out / "results.json").write_text(json.dumps({"model": args.name, "command": command, "machine": machine(),
                                                   "rows": rows}, indent=1))
    n, ann_top1 = rows[0]["num_images"], rows[0]["ann_top1"]
    lines = [f"# Conversions of {args.name}", "", f"`{command}`", "",
             f"Top-1 (%) on {n} test images; the ANN scores {ann_top1:.2f} on them. Calibration: one-off seconds on "
             f"{args.threads} threads ({machine()['device']}).", "",
             *markdown_table(["option", *(f"T={t}" for t in steps), "calibration (s)"],
                             [[f"`{r['option']}`", *(f"{r['top1'][t]:.2f}" for t in steps), f"{r['calibration_s']:.1f}"]
                              for r in rows]),
             "", "Spikes per image (thousands, all spiking layers; a burst of k spikes counts k):", "",
             *markdown_table(["option", *(f"T={t}" for t in steps)],
                             [[f"`{r['option']}`", *(f"{r['spikes_per_image'][t] / 1e3:.1f}" for t in steps)]
                              for r in rows])]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
