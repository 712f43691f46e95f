"""Simulation speed in fresh processes, with and without ``cpu_memory.keep_freed_memory`` (``RMP_ZOO_KEEP_MEMORY``).

How fast memory comes back depends on what the process did before: glibc's malloc adjusts its thresholds to the
blocks it has seen. ``simulation_throughput.py`` runs all contenders in one long process, so it cannot show what a
user's first simulations pay. Here every round is a new process that builds the network, converts it, simulates once
untimed (compiling the kernels), then alternates ``--calls`` timed simulations with as many dense forwards of the same
images (the BN-folded channels-last ANN, as in ``simulation_throughput.py``), counting minor page faults. Processes
with ``RMP_ZOO_KEEP_MEMORY=1`` (the default) and ``=0`` take turns; medians over ``--rounds`` processes each.

    python benchmarks/page_faults.py --arch resnet20 --batch-size 128 --steps 32 --rounds 3 --threads 2 \\
        --out benchmarks/results/page_faults_cpu_resnet20
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from simulation_throughput import converted, folded_forward
from timing import command, minor_faults, save_results

from rmp_zoo.machine import machine

SETTINGS = {"1": "freed memory kept (default)", "0": "RMP_ZOO_KEEP_MEMORY=0: glibc trims freed memory"}


@torch.no_grad()
def child(args: argparse.Namespace) -> dict:
    """One process: µs per image-step and page faults per image-step of the SNN and of the dense forward."""
    torch.set_num_threads(args.threads)
    ann, snn, _ = converted(args.arch, seed=args.seed)
    dense = folded_forward(ann)
    x = torch.randn(args.batch_size, 3, 32, 32)
    snn.run(x, [args.steps])
    dense(x)
    spent = {"snn": [], "dense": []}
    faulted = {"snn": 0, "dense": 0}
    for _ in range(args.calls):
        for name, call in (("snn", lambda: snn.run(x, [args.steps])),
                           ("dense", lambda: [dense(x) for _ in range(args.steps)])):
            before, start = minor_faults(), time.perf_counter()
            call()
            spent[name].append((time.perf_counter() - start) / (args.batch_size * args.steps))
            faulted[name] += minor_faults() - before
    per = args.calls * args.batch_size * args.steps
    return {f"{name}_us": 1e6 * statistics.median(spent[name]) for name in spent} | {
        f"{name}_faults": faulted[name] / per for name in faulted}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=32, help="time steps per simulation")
    p.add_argument("--calls", type=int, default=5, help="timed simulations per process")
    p.add_argument("--rounds", type=int, default=3, help="processes per setting")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default="benchmarks/results/page_faults")
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    runs = {setting: [] for setting in SETTINGS}
    for _ in range(args.rounds):
        for setting in SETTINGS:
            env = {**os.environ, "RMP_ZOO_KEEP_MEMORY": setting}
            done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child"], env=env, check=True,
                                  capture_output=True, text=True)
            runs[setting].append(json.loads(done.stdout.strip().splitlines()[-1]))
    rows = [{"setting": SETTINGS[s], **{k: statistics.median(r[k] for r in runs[s]) for k in runs[s][0]}}
            for s in SETTINGS]
    where = machine()
    lines = [f"# Simulation in fresh processes ({where['device']}, torch {where['torch']}, {args.threads} threads)", "",
             f"Command: `{command()}`", "",
             f"{args.arch}, random weights, batch {args.batch_size}, T = {args.steps}; per process one untimed "
             f"simulation, then {args.calls} simulations alternating with {args.steps} dense forwards each (BN "
             f"folded, channels-last); medians over {args.rounds} processes per setting. µs and minor page faults per "
             "image-step (SNN) or image (ANN).", "",
             "| setting | SNN µs | SNN faults | dense µs | dense faults | SNN / dense |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['snn_us']:.1f} | {r['snn_faults']:.2f} | {r['dense_us']:.1f} | "
                     f"{r['dense_faults']:.2f} | {r['snn_us'] / r['dense_us']:.2f} |")
    save_results(args.out, "\n".join(lines) + "\n", args, where, rows=rows, processes=runs)


if __name__ == "__main__":
    main()
