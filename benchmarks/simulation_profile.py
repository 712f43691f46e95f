"""Where a time step's cost goes: the default simulation path next to the BN-folded dense forward, op by op.

``simulation_throughput.py`` says how fast; this says what the difference to the dense forward is made of. One call
of each (the SNN over ``--steps`` steps, the dense forward ``--steps`` times) runs under ``torch.profiler`` after two
untimed ones; each op's self time goes into a category, and what the profiler does not see (Python: the fx
walk, the glue around each kernel) is the wall time minus the ops'. Profiling slows small ops down, so the
categories are a guide to what to cut, not a measurement of speed: that is ``simulation_throughput.py``'s job.

    python benchmarks/simulation_profile.py --arch resnet20 --batch-size 128 --steps 32 --threads 2 \\
        --out benchmarks/results/simulation_profile_cpu_resnet20
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from simulation_throughput import converted, folded_forward
from timing import command, save_results
from torch.profiler import ProfilerActivity, profile

from rmp_zoo.machine import machine

CATEGORIES = {  # the first category whose prefix an op's name starts with
    "fp32 convolution and linear": ("aten::mkldnn_convolution", "aten::addmm", "aten::mm"),
    "integer spike convolutions": ("onednn::qconv",),
    "fused neuron kernels": ("## Call CompiledFxGraph",),
    "torch.compile guards and wrappers": ("TorchDynamo", "Torch-Compiled Region", "AOTDispatcher", "Pregraph"),
    "ReLU and residual additions": ("aten::relu", "aten::clamp_min", "aten::add"),
}
OTHER = "other tensor ops (copies, fills, views, pooling)"
UNSEEN = "not seen by the profiler (Python)"


def category(name: str) -> str:
    return next((c for c, prefixes in CATEGORIES.items() if name.startswith(prefixes)), OTHER)


@torch.no_grad()
def breakdown(fn, items: int) -> dict[str, float]:
    """µs per item of each category in one profiled call of ``fn``."""
    fn()
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        fn()
        wall = time.perf_counter() - start
    spent = defaultdict(float)
    for event in prof.key_averages():
        spent[category(event.key)] += event.self_cpu_time_total  # µs
    spent[UNSEEN] = max(0.0, 1e6 * wall - sum(spent.values()))
    return {c: spent[c] / items for c in [*CATEGORIES, OTHER, UNSEEN]} | {"total": 1e6 * wall / items}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/simulation_profile")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ann, snn, _ = converted(args.arch, seed=args.seed)
    dense = folded_forward(ann)
    x = torch.randn(args.batch_size, 3, 32, 32)
    items = args.batch_size * args.steps
    columns = {"rmp_zoo SNN, default path (per image-step)": breakdown(lambda: snn.run(x, [args.steps]), items),
               "dense ANN, BN folded, channels_last (per image)":
                   breakdown(lambda: [dense(x) for _ in range(args.steps)], items)}
    where = machine()
    names = list(columns)
    lines = [f"# Where a time step goes ({where['device']}, torch {where['torch']}, {args.threads} threads)", "",
             f"Command: `{command()}`", "",
             f"{args.arch}, random weights, batch {args.batch_size}, T = {args.steps}; one profiled call each, µs of "
             "self time per image-step (SNN) or image (dense). Profiling slows small ops: a guide, not a speed.", "",
             f"| category | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
    for c in [*CATEGORIES, OTHER, UNSEEN, "total"]:
        lines.append(f"| {c} | " + " | ".join(f"{columns[n][c]:.1f}" for n in names) + " |")
    save_results(args.out, "\n".join(lines) + "\n", args, where, columns=columns)


if __name__ == "__main__":
    main()
