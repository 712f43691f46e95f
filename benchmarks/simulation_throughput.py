"""Image-steps per second of rmp_zoo's SNN simulator next to the dense ANN forward and SpikingJelly, for any
registered architecture, on any device (CPU or GPU: the same code paths).

Speed does not depend on the trained weights (every step runs dense convolutions, whatever the spikes), so each
architecture is built with seeded random weights (ReLU activations) and converted with max thresholds measured on one
batch of random images. Contenders, each lever on its own:

* the dense ANN: NCHW and channels-last with BatchNorm as trained, and channels-last with BatchNorm folded into the
  convolutions (as the SNN has it: the real limit a time step is held against);
* rmp_zoo's SNN (RMP neurons, θ/2 start): step by step or multi-step (``SpikingNetwork.run(mode=...)``), each with
  the neuron update op by op or as one fused compiled kernel (``neuron_kernel``), and spike-fed convolutions in fp32
  (``float_convs()``) or integer arithmetic (``spike_conv``): the levers one at a time from the step-by-step, op by op,
  fp32 simulator, and all three together (the default: multi-step, fused, integer);
* SpikingJelly 2.x's converted network (99.9% thresholds, single-step mode as its converter returns it), when
  spikingjelly is installed.

Contenders take turns, round after round, after one untimed warm-up call each; the median of ``--repeats`` rounds is
reported. The first call of each SNN contender at each batch size is timed too: what it takes beyond a steady call is
the one-off cost of compiling its kernels (from torch's on-disk cache when they were compiled before: set
``TORCHINDUCTOR_CACHE_DIR`` to an empty folder for a cold compile).

    python benchmarks/simulation_throughput.py --arch resnet20,vgg16 --batch-sizes 256,2048 --steps 32 \\
        --device cuda --out benchmarks/results/simulation_throughput_h100
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import time
from pathlib import Path

import torch
from timing import command, dense_forwards, median_seconds_per_item, minor_faults, save_results, timed
from torch import nn

import rmp_zoo
from rmp_zoo.conversion import neuron_kernel
from rmp_zoo.conversion.fold import fold_batchnorm
from rmp_zoo.conversion.spike_conv import float_convs
from rmp_zoo.conversion.trace import prepare
from rmp_zoo.machine import machine

DEFAULT = "rmp_zoo SNN, multi-step, fused (default)"
FOLDED = "ANN BN folded, channels_last"
SPIKINGJELLY = "SpikingJelly SNN"


def folded_forward(ann: nn.Module):
    """The dense forward with BatchNorm folded into the convolutions (the traced graph conversion starts from),
    channels-last."""
    gm = prepare(copy.deepcopy(ann).eval(), maxpool="gate")
    fold_batchnorm(gm)
    gm = gm.to(memory_format=torch.channels_last)
    return lambda x: gm(x.contiguous(memory_format=torch.channels_last))


def snn_contenders(snn: rmp_zoo.SpikingNetwork, steps: int) -> dict:
    def simulate(mode: str, fused: bool, integer: bool):
        def fn(x: torch.Tensor):
            with contextlib.ExitStack() as levers:
                if not fused:
                    levers.enter_context(neuron_kernel.op_by_op())
                if not integer:
                    levers.enter_context(float_convs())
                return snn.run(x, [steps], mode=mode)
        return fn

    integer = {  # integer spike convolutions exist on CPUs only: elsewhere these would repeat other rows
        "rmp_zoo SNN, step by step, integer spike convolutions": (steps, simulate("step", False, True)),
        "rmp_zoo SNN, multi-step, fused, fp32 spike convolutions": (steps, simulate("multi", True, False)),
    } if next(snn.parameters()).device.type == "cpu" else {}
    return {"rmp_zoo SNN, step by step, op by op": (steps, simulate("step", False, False)),
            "rmp_zoo SNN, step by step, fused": (steps, simulate("step", True, False)),
            "rmp_zoo SNN, multi-step, op by op": (steps, simulate("multi", False, False)),
            **integer, DEFAULT: (steps, simulate("multi", True, True))}


def spikingjelly_contender(ann: nn.Module, calibration: list[torch.Tensor], steps: int) -> dict:
    """SpikingJelly's conversion of ``ann`` (99.9%), or nothing when spikingjelly is not installed."""
    try:
        from spikingjelly.activation_based import ann2snn
        from spikingjelly_compare import simulate_spikingjelly, spikingjelly_compatible
    except ImportError:
        return {}
    recipe = ann2snn.RateCodingRecipe(dataloader=calibration, mode="99.9%")
    sj = ann2snn.Converter(recipe).convert(spikingjelly_compatible(ann)).eval()
    return {SPIKINGJELLY: (steps, lambda x: simulate_spikingjelly(sj, x, [steps]))}


def converted(arch: str, num_classes: int = 10, device: torch.device = torch.device("cpu"),
              seed: int = 0) -> tuple[nn.Module, rmp_zoo.SpikingNetwork, list[torch.Tensor]]:
    """(ANN, SNN, calibration batches): ``arch`` with seeded random weights, converted to RMP neurons with max
    thresholds from one batch of random images and θ/2 initial potentials, as every simulation benchmark times it."""
    torch.manual_seed(seed)
    ann = rmp_zoo.create_model(arch, num_classes=num_classes).eval().to(device)
    calibration = [torch.randn(64, 3, 32, 32, device=device)]
    return ann, rmp_zoo.convert(ann, calibration, neuron="rmp", threshold="max", initial_potential=0.5), calibration


def contenders(arch: str, num_classes: int, steps: int, device: torch.device, seed: int,
               spikingjelly: bool) -> dict:
    """Every contender as ``name: (steps per call, fn of an image batch)``."""
    ann, snn, calibration = converted(arch, num_classes, device, seed)
    return {**{name: (1, fn) for name, fn in dense_forwards(ann).items()}, FOLDED: (1, folded_forward(ann)),
            **snn_contenders(snn, steps), **(spikingjelly_contender(ann, calibration, steps) if spikingjelly else {})}


def measure(arch: str, num_classes: int, batch_sizes: list[int], steps: int, repeats: int, device: torch.device,
            seed: int, spikingjelly: bool) -> list[dict]:
    fns = contenders(arch, num_classes, steps, device, seed, spikingjelly)
    images = torch.randn(max(batch_sizes), 3, 32, 32, device=device)
    first = {(b, name): timed(fn, images[:b]) for b in batch_sizes for name, (_, fn) in fns.items()}
    seconds = median_seconds_per_item(fns, images, batch_sizes, repeats)
    faults = {(b, name): page_faults(fn, images[:b]) / (b * fns[name][0]) for b in batch_sizes
              for name, (_, fn) in fns.items()}
    return [{"arch": arch, "batch_size": b, "contender": name, "image_steps_per_s": 1.0 / seconds[b, name],
             "us_per_image_step": 1e6 * seconds[b, name],
             "first_call_extra_s": max(0.0, first[b, name] - seconds[b, name] * b * fns[name][0]),
             "page_faults_per_image_step": faults[b, name]}
            for b in batch_sizes for name in fns]


@torch.no_grad()
def page_faults(fn, x: torch.Tensor) -> int:
    """Minor page faults of this process during one steady call of ``fn(x)``."""
    before = minor_faults()
    fn(x)
    return minor_faults() - before


def report(rows: list[dict], args: argparse.Namespace, header: str) -> str:
    tf32 = f", TF32 convolutions {'on' if torch.backends.cudnn.allow_tf32 else 'off'}" if args.device == "cuda" else ""
    lines = [f"# Simulation throughput ({header})", "",
             f"Command: `{command()}`", "",
             f"Random-weight networks, 32×32 inputs, median of {args.repeats} rounds, T={args.steps} per SNN call"
             f"{tf32}. ANN rows: per image; SNN rows: per image-step. Ratio: cost over the BN-folded channels-last "
             "ANN's at the same batch size. First call: seconds the first call took beyond a steady one (compiling "
             "the neuron kernels). Page faults: minor faults of the process per image(-step) in one more steady "
             "call.", "",
             "| arch | batch | contender | µs / image(-step) | images or image-steps / s | ratio to folded ANN "
             "| first call +s | page faults / image(-step) |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for arch in dict.fromkeys(r["arch"] for r in rows):
        for b in dict.fromkeys(r["batch_size"] for r in rows):
            group = [r for r in rows if r["arch"] == arch and r["batch_size"] == b]
            folded = next(r["us_per_image_step"] for r in group if r["contender"] == FOLDED)
            for r in group:
                lines.append(f"| {arch} | {b} | {r['contender']} | {r['us_per_image_step']:,.1f} | "
                             f"{r['image_steps_per_s']:,.0f} | {r['us_per_image_step'] / folded:.2f} | "
                             f"{r['first_call_extra_s']:.1f} | {r['page_faults_per_image_step']:.1f} |")
    lines += ["", "Best batch size of each (lowest cost per image or image-step):", ""]
    for arch in dict.fromkeys(r["arch"] for r in rows):
        best = {}
        for r in rows:
            if r["arch"] == arch and (r["contender"] not in best
                                      or r["us_per_image_step"] < best[r["contender"]]["us_per_image_step"]):
                best[r["contender"]] = r
        folded = best[FOLDED]["us_per_image_step"]
        ours = best[DEFAULT]["us_per_image_step"]
        for name, r in best.items():
            cost = r["us_per_image_step"]
            versus = f", {cost / ours:.2f}× rmp_zoo's default" if name == SPIKINGJELLY else ""
            lines.append(f"- {arch}, {name}: {cost:,.1f} µs at batch {r['batch_size']} ({cost / folded:.2f}× the "
                         f"folded ANN's best{versus})")
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
    p.add_argument("--no-spikingjelly", action="store_true", help="leave SpikingJelly out even when installed")
    p.add_argument("--out", default="benchmarks/results/simulation_throughput")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    start = time.perf_counter()
    rows = [row for arch in args.arch.split(",")
            for row in measure(arch, args.num_classes, batch_sizes, args.steps, args.repeats, device, args.seed,
                               not args.no_spikingjelly)]
    where = machine()
    header = f"{where['device']}, torch {where['torch']}, {torch.get_num_threads()} CPU threads"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "throughput.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    save_results(out, report(rows, args, header), args, where, threads=torch.get_num_threads(),
                 seconds=time.perf_counter() - start, rows=rows)


if __name__ == "__main__":
    main()
