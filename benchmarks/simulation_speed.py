"""Simulation speed and time-to-accuracy of rmp_zoo's SNN simulator next to SpikingJelly 2.x and the dense ANN.

Part 1, cost per image-step: on the first test images at each ``--batch-sizes`` value, the dense ANN forward (NCHW
and channels-last with BatchNorm as trained, and channels-last with BatchNorm folded as in the SNN), rmp_zoo's
simulator (step by step or multi-step, neuron updates op by op or fused; "rmp_zoo SNN" is the default, multi-step
and fused) and SpikingJelly's converted network (single-step mode, as its converter returns it) are timed in turn,
round after round, after one untimed warm-up call each; the median of ``--repeats`` rounds is reported.

Part 2, time to accuracy: every contender simulates the first ``--images`` test images for ``--T-max`` steps with
top-1 read out at every step, timed as in ``spikingjelly_compare.py``. The time to reach ANN - 1% is the measured
time per step times the first T from which a contender stays at or above it. rmp_zoo's bias correction
(``correct_bias``, a one-off cost per network, timed separately) is one of its contenders.

A ClipReLU/QCFS ANN (a zoo recipe's low-latency ANN) adds rmp_zoo's trained thresholds with a θ/2 start, which bias
correction then starts from. SpikingJelly converts only ``nn.ReLU``, so it gets a copy with those activations
swapped for ReLU and calibrates its thresholds on that copy, as a SpikingJelly user would have to.

    pip install -e ".[bench]"
    python benchmarks/simulation_speed.py --ckpt RUN_DIR/checkpoints/best.ckpt --data-root data \\
        --out benchmarks/results/simulation_speed
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
from functools import partial
from pathlib import Path

import matplotlib
import torch
from simulation_throughput import DEFAULT, FOLDED, folded_forward, snn_contenders
from spikingjelly_compare import (Contender, load_ann, load_batches, machine, run, simulate_spikingjelly,
                                  spikingjelly_compatible, spikingjelly_contenders, spikingjelly_thresholds)
from timing import dense_forwards, median_seconds_per_item, timed
from torch import nn

import rmp_zoo
from rmp_zoo.models.activations import QCFS, ClipReLU

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)


def has_trained_thresholds(ann: nn.Module) -> bool:
    return any(isinstance(m, (ClipReLU, QCFS)) for m in ann.modules())


def with_relu(ann: nn.Module) -> nn.Module:
    """A copy of ``ann`` with every ClipReLU/QCFS replaced by ``nn.ReLU``: what SpikingJelly's converter accepts."""
    swapped = copy.deepcopy(ann)
    for parent in list(swapped.modules()):
        for name, child in parent.named_children():
            if isinstance(child, (ClipReLU, QCFS)):
                setattr(parent, name, nn.ReLU())
    return swapped.eval()


@torch.no_grad()
def cost_per_image_step(ann: nn.Module, snn: rmp_zoo.SpikingNetwork, sj_snn: nn.Module, images: torch.Tensor,
                        batch_sizes: list[int], steps: int, repeats: int) -> list[dict]:
    """Median seconds per image (ANN) or per image-step (SNNs) of every contender at every batch size: the dense ANN
    (BatchNorm as trained, and folded as in the SNN), rmp_zoo's simulator with each speed lever on or off
    (``simulation_throughput.py``; "rmp_zoo SNN" is the default path) and SpikingJelly's."""
    contenders = {
        **{name: (1, fn) for name, fn in dense_forwards(ann).items()}, FOLDED: (1, folded_forward(ann)),
        **{name.replace(DEFAULT, "rmp_zoo SNN"): c for name, c in snn_contenders(snn, steps).items()},
        "SpikingJelly SNN": (steps, lambda x: simulate_spikingjelly(sj_snn, x, [steps])),
    }
    seconds = median_seconds_per_item(contenders, images, batch_sizes, repeats)
    return [{"batch_size": b, "contender": name, "ms_per_image_step": 1e3 * seconds[b, name]}
            for b in batch_sizes for name in contenders]


@torch.no_grad()
def agreement(ann: nn.Module, snn: rmp_zoo.SpikingNetwork, sj_snn: nn.Module, x: torch.Tensor,
              steps: int) -> dict[str, float]:
    """``ann`` converted by rmp_zoo with SpikingJelly's thresholds (keyed by ``snn``'s layer names) and a θ/2 start,
    against SpikingJelly's own network: the share of images with the same prediction, and the largest output
    difference, after ``steps`` steps. Both reset by subtraction; SpikingJelly integrates x/θ against 1 where rmp_zoo
    integrates x against θ, so rounding differs and an occasional spike flips."""
    names = snn.neurons()  # in execution order, like SpikingJelly's list
    snn = rmp_zoo.convert(ann, threshold=dict(zip(names, spikingjelly_thresholds(sj_snn))), initial_potential=0.5)
    ours, theirs = rmp_zoo.simulate(snn, x, [steps])[steps], simulate_spikingjelly(sj_snn, x, [steps])[steps]
    return {"same_prediction": float((ours.argmax(1) == theirs.argmax(1)).float().mean()),
            "max_output_difference": float((ours - theirs).abs().max()), "steps": steps, "images": len(x)}


def time_to_accuracy_contenders(ann: nn.Module, sj_ann: nn.Module, calibration: list[torch.Tensor],
                                correction_images: int, correction_T: int) -> tuple[list[Contender], float]:
    """SpikingJelly's max and best (99.9% + θ/2) recipes; rmp_zoo's max, 99.9% + θ/2 and, for a ClipReLU/QCFS ANN,
    trained + θ/2; the last of these also with bias correction at ``correction_T``; and the seconds that correction
    took."""
    sj = [c for c in spikingjelly_contenders(sj_ann, calibration) if c.name != "SpikingJelly 99.9%"]
    settings = [("max", 0.0), ("99.9%", 0.5), *((("trained", 0.5),) if has_trained_thresholds(ann) else ())]
    ours = []
    for threshold, v0 in settings:
        snn = rmp_zoo.convert(ann, calibration, threshold=threshold, initial_potential=v0)
        ours.append(Contender(contender_name(threshold, v0), partial(rmp_zoo.simulate, snn),
                              list(snn.thresholds().values())))
    threshold, v0 = settings[-1]
    snn = rmp_zoo.convert(ann, calibration, threshold=threshold, initial_potential=v0)
    images = torch.cat(calibration)[:correction_images]
    seconds = timed(rmp_zoo.correct_bias, snn, [images], correction_T)
    ours.append(Contender(f"{contender_name(threshold, v0)} +bias correction (T={correction_T})",
                          partial(rmp_zoo.simulate, snn), list(snn.thresholds().values())))
    return sj + ours, seconds


def contender_name(threshold: str, initial_potential: float) -> str:
    return f"rmp_zoo RMP {threshold}" + (" +θ/2" if initial_potential == 0.5 else "")


@torch.no_grad()
def top1(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    return 100 * sum(int((model(x).argmax(1) == y).sum()) for x, y in batches) / sum(len(y) for _, y in batches)


def first_reaching(accuracy: dict[int, float], target: float) -> int | None:
    """The first T from which top-1 stays at or above ``target`` up to the last T simulated (a lucky early touch
    followed by a dip does not count)."""
    reached = None
    for t in sorted(accuracy, reverse=True):
        if accuracy[t] < target:
            break
        reached = t
    return reached


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    test, calibration = load_batches(args.dataset, args.data_root, args.images, args.batch_size, args.calib_images,
                                     args.calib_batch_size)
    device = torch.device(args.device)
    test = [(x.to(device), y.to(device)) for x, y in test]
    calibration = [x.to(device) for x in calibration]
    ann = load_ann(args.ckpt).to(device)
    sj_ann = spikingjelly_compatible(with_relu(ann))
    ann_acc, sj_ann_acc = top1(ann, test), top1(sj_ann, test)

    # Part 1: cost per image-step, with the rmp_zoo and SpikingJelly recipes that convert best (99.9% + θ/2).
    contenders, correction_seconds = time_to_accuracy_contenders(ann, sj_ann, calibration, args.correction_images,
                                                                 args.correction_T)
    by_name = {c.name: c for c in contenders}
    snn = by_name["rmp_zoo RMP 99.9% +θ/2"].simulate.args[0]
    sj_snn = by_name["SpikingJelly 99.9% +θ/2"].simulate.args[0]
    speed_images = torch.cat([x for x, _ in test])[:max(batch_sizes)]
    speed = cost_per_image_step(ann, snn, sj_snn, speed_images, batch_sizes, args.steps, args.repeats)
    same = agreement(ann, snn, sj_snn, speed_images[:64], args.steps)

    # Part 2: time to ANN - 1%, after an untimed call of each contender (rmp_zoo's compiles its kernels for the
    # chunk length this batch size gets).
    T = list(range(1, args.T_max + 1))
    for c in contenders:
        c.simulate(test[0][0], [min(args.T_max, 16)])
    run(contenders, test, T, device)
    images = sum(len(y) for _, y in test)
    rows = []
    for c in contenders:
        accuracy = {t: 100 * c.correct[t] / images for t in T}
        t_star = first_reaching(accuracy, ann_acc - 1)
        step_seconds = c.seconds / args.T_max
        rows.append({"contender": c.name, "T_to_ann_minus_1": t_star, "ms_per_image_step": 1e3 * step_seconds / images,
                     "seconds_to_ann_minus_1": step_seconds * t_star if t_star else None,
                     **{f"top1@{t}": round(accuracy[t], 2) for t in (8, 16, 32, 64, 128, 256) if t in accuracy},
                     "curve": accuracy, "step_seconds": step_seconds})
    plot(rows, ann_acc, images, out / "accuracy_vs_time.png")
    with open(out / "cost_per_image_step.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(speed[0]))
        writer.writeheader()
        writer.writerows(speed)
    with open(out / "time_to_accuracy.csv", "w", newline="") as f:
        fields = [k for k in rows[0] if k not in ("curve", "step_seconds")]
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    header = (f"{args.ckpt}: {args.dataset}, threads {args.threads}, device {device}; machine: {machine()}\n"
              f"ANN top-1 on the {images}-image subset: {ann_acc:.2f}%"
              + (f" (with its ClipReLU/QCFS swapped for ReLU, as SpikingJelly converts it: {sj_ann_acc:.2f}%)"
                 if has_trained_thresholds(ann) else ""))
    table = report(speed, rows, header, images, args, correction_seconds, same)
    (out / "results.md").write_text(table)
    (out / "results.json").write_text(json.dumps({"ann_top1": ann_acc, "spikingjelly_ann_top1": sj_ann_acc,
                                                  "images": images, "speed": speed,
                                                  "time_to_accuracy": [{k: v for k, v in r.items() if k != "curve"}
                                                                       for r in rows],
                                                  "bias_correction_seconds": correction_seconds,
                                                  "agreement_with_spikingjelly": same}, indent=1))
    print(table, end="")


def report(speed: list[dict], rows: list[dict], header: str, images: int, args: argparse.Namespace,
           correction_seconds: float, same: dict[str, float]) -> str:
    """The two tables as markdown, with the ratios the issue asks for."""
    names = list(dict.fromkeys(r["contender"] for r in speed))
    cost = {(r["batch_size"], r["contender"]): r["ms_per_image_step"] for r in speed}
    batches = sorted({r["batch_size"] for r in speed})
    best_dense = min(v for (b, n), v in cost.items() if n.startswith("ANN"))
    best = {n: min(cost[b, n] for b in batches) for n in names}
    lines = [header, "", f"### Cost per image-step (ms; ANN: per image), {args.steps} steps per SNN call, "
             f"median of {args.repeats} rounds", "",
             "| contender | " + " | ".join(f"batch {b}" for b in batches) + " | best | best / best dense ANN |",
             "|---|" + "---:|" * (len(batches) + 2)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{cost[b, n]:.3f}" for b in batches)
                     + f" | {best[n]:.3f} | {best[n] / best_dense:.2f} |")
    lines += ["", f"SpikingJelly / rmp_zoo per image-step at the best batch size of each: "
              f"{best['SpikingJelly SNN'] / best['rmp_zoo SNN']:.2f}x. Given SpikingJelly's thresholds, rmp_zoo's "
              f"network predicts the same class for {100 * same['same_prediction']:.1f}% of {same['images']} images "
              f"after {same['steps']} steps (largest output difference {same['max_output_difference']:.3g}).", "",
              f"### Time to ANN - 1% on the first {images} test images, batch {args.batch_size}, T up to {args.T_max}",
              "", "| contender | T to ANN-1% | ms / image-step | s to ANN-1% | top-1 @16 | @32 | @64 | @128 | @256 |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        accs = " | ".join(f"{r.get(f'top1@{t}', float('nan')):.2f}" for t in (16, 32, 64, 128, 256))
        reach = r["seconds_to_ann_minus_1"]
        lines.append(f"| {r['contender']} | {r['T_to_ann_minus_1'] or 'not reached'} | {r['ms_per_image_step']:.3f} | "
                     f"{f'{reach:.1f}' if reach else '-'} | {accs} |")
    sj = [r["seconds_to_ann_minus_1"] for r in rows if r["contender"].startswith("SpikingJelly")
          and r["seconds_to_ann_minus_1"]]
    ours = [r["seconds_to_ann_minus_1"] for r in rows if r["contender"].startswith("rmp_zoo")
            and r["seconds_to_ann_minus_1"]]
    if sj and ours:
        lines += ["", f"Best SpikingJelly time / best rmp_zoo time: {min(sj) / min(ours):.2f}x"]
    lines += [f"Bias correction (one-off, {args.correction_images} training images, T={args.correction_T}): "
              f"{correction_seconds:.1f} s, not included above."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], ann_acc: float, images: int, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        T = sorted(r["curve"])
        ax.plot([t * r["step_seconds"] for t in T], [r["curve"][t] for t in T], label=r["contender"])
    ax.axhline(ann_acc - 1, color="k", ls="--", lw=1, label=f"ANN - 1% ({ann_acc - 1:.2f}%)")
    ax.set_xscale("log")
    ax.set_xlabel(f"wall time to simulate {images} images (s)")
    ax.set_ylabel("top-1 (%)")
    ax.set_ylim(max(0, ann_acc - 30), min(100, ann_acc + 3))
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a training run's checkpoints/best.ckpt (a ResNet-20)")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--data-root", default="data")
    p.add_argument("--batch-sizes", default="32,64,128", help="part 1: comma-separated batch sizes")
    p.add_argument("--steps", type=int, default=16, help="part 1: time steps per timed SNN call")
    p.add_argument("--repeats", type=int, default=5, help="part 1: rounds; the median is reported")
    p.add_argument("--images", type=int, default=500, help="part 2: the first N test images")
    p.add_argument("--batch-size", type=int, default=100, help="part 2")
    p.add_argument("--T-max", type=int, default=256, help="part 2: steps simulated, top-1 read at every one")
    p.add_argument("--calib-images", type=int, default=1024, help="the first N training images set thresholds")
    p.add_argument("--calib-batch-size", type=int, default=128)
    p.add_argument("--correction-images", type=int, default=128, help="bias correction: the first N training images")
    p.add_argument("--correction-T", type=int, default=32, help="bias correction: the T it corrects for")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu", help="cpu or cuda: every contender runs there")
    p.add_argument("--out", default="benchmarks/results/simulation_speed")
    return p.parse_args()


if __name__ == "__main__":
    main()
