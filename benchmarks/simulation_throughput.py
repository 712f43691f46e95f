"""Image-steps per second of rmp_zoo's SNN simulator next to the dense ANN forward, for any registered
architecture, at large batches, on any device (issue 6, goal 3: the same code path on a GPU as on the CPU).

Speed does not depend on the trained weights (every step runs dense convolutions, whatever the spikes), so each
architecture is built with seeded random weights and converted with max thresholds measured on one batch of random
images. Contenders take turns, round after round, after one untimed warm-up call each; the median of ``--repeats``
rounds is reported. The ANN runs in eval mode (BatchNorm as trained, not folded); the SNN has it folded.

    python benchmarks/simulation_throughput.py --arch resnet20,vgg16 --batch-sizes 256,1024 --steps 32 \
        --device cuda --out benchmarks/results/simulation_throughput_h100
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch
from timing import dense_forwards, median_seconds_per_item

import rmp_zoo
from rmp_zoo.machine import machine


def contenders(arch: str, num_classes: int, steps: int, device: torch.device, seed: int) -> dict:
    """The dense ANN (NCHW, channels-last) and its RMP SNN: ``name: (steps per call, fn of an image batch)``."""
    torch.manual_seed(seed)
    ann = rmp_zoo.create_model(arch, num_classes=num_classes).eval().to(device)
    calibration = [torch.randn(64, 3, 32, 32, device=device)]
    snn = rmp_zoo.convert(ann, calibration, neuron="rmp", threshold="max", initial_potential=0.5)
    return {**{name: (1, fn) for name, fn in dense_forwards(ann).items()},
            f"rmp_zoo SNN, T={steps}": (steps, lambda x: rmp_zoo.simulate(snn, x, [steps]))}


def measure(arch: str, num_classes: int, batch_sizes: list[int], steps: int, repeats: int, device: torch.device,
            seed: int) -> list[dict]:
    fns = contenders(arch, num_classes, steps, device, seed)
    images = torch.randn(max(batch_sizes), 3, 32, 32, device=device)
    seconds = median_seconds_per_item(fns, images, batch_sizes, repeats)
    return [{"arch": arch, "batch_size": b, "contender": name, "image_steps_per_s": 1.0 / seconds[b, name]}
            for b in batch_sizes for name in fns]


def report(rows: list[dict], args: argparse.Namespace, header: str) -> str:
    tf32 = f", TF32 convolutions {'on' if torch.backends.cudnn.allow_tf32 else 'off'}" if args.device == "cuda" else ""
    lines = [f"# Simulation throughput ({header})", "",
             f"Random-weight networks, 32×32 inputs, {args.repeats} rounds (median), T={args.steps} per SNN call{tf32}. "
             + "ANN rows: images/s; SNN rows: image-steps/s. Ratio: SNN image-steps/s over the faster ANN's images/s.",
             "", "| arch | batch | contender | images or image-steps / s | ratio to best ANN |", "|---|---:|---|---:|---:|"]
    for arch in dict.fromkeys(r["arch"] for r in rows):
        for b in dict.fromkeys(r["batch_size"] for r in rows):
            group = [r for r in rows if r["arch"] == arch and r["batch_size"] == b]
            best_ann = max(r["image_steps_per_s"] for r in group if r["contender"].startswith("ANN"))
            for r in group:
                lines.append(f"| {arch} | {b} | {r['contender']} | {r['image_steps_per_s']:,.0f} | "
                             f"{r['image_steps_per_s'] / best_ann:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet20,vgg16", help="comma-separated registered architectures")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--batch-sizes", default="256,1024")
    p.add_argument("--steps", type=int, default=32, help="time steps per timed SNN call")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/simulation_throughput")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    rows = [row for arch in args.arch.split(",")
            for row in measure(arch, args.num_classes, batch_sizes, args.steps, args.repeats, device, args.seed)]
    where = machine()
    header = f"{where['device']}, torch {where['torch']}, {torch.get_num_threads()} CPU threads"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "throughput.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "results.json").write_text(json.dumps({"machine": where, "args": vars(args), "rows": rows}, indent=2))
    text = report(rows, args, header)
    (out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
