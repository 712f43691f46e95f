"""Integer spike convolutions against fp32 ones, layer shape by layer shape: time and error against the exact sum.

For each convolution shape fed by spiking neurons in ResNet-20 and VGG-16 on CIFAR (a chunk of 8 steps of 32 images
stacked, as the multi-step simulation calls them), it times the fp32 convolution of the spikes θ·s and the integer
one (``SpikeConv2d.terms``: its digit-pair convolutions on the uint8 spike codes, which the neuron kernels write; the
addition of the halves, which the neuron kernel makes, is timed with it), and measures both results' largest error
against the float64 convolution, in units of 2^-24 of the summed magnitudes Σ|w·x| + |b|. Binary spikes (RMP, rate
0.2) and signed bursts of 2 (the zoo's neurons). Contenders alternate; medians of ``--repeats`` rounds.

    python benchmarks/spike_conv.py --threads 2 --out benchmarks/results/spike_conv_cpu
"""
from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F
from timing import command, save_results, timed
from torch import nn

from rmp_zoo.conversion import SpikeConv2d, SpikingNeuron, float_convs
from rmp_zoo.conversion.spike_conv import spike_codes, spike_coding
from rmp_zoo.machine import machine

SHAPES = [  # (network, in channels, out channels, image size, kernel, stride)
    ("resnet20", 16, 16, 32, 3, 1), ("resnet20", 16, 32, 32, 3, 2), ("resnet20", 32, 32, 16, 3, 1),
    ("resnet20", 64, 64, 8, 3, 1), ("vgg16", 128, 128, 16, 3, 1), ("vgg16", 256, 256, 8, 3, 1),
    ("vgg16", 512, 512, 4, 3, 1),
]
NEURONS = {"rmp": ("rmp", 1), "signed, burst 2": ("signed", 2)}


def layer(c_in: int, c_out: int, kernel: int, stride: int, neuron: str, burst: int) -> SpikeConv2d:
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2)
    nn.init.kaiming_normal_(conv.weight)
    return SpikeConv2d.of(conv, SpikingNeuron(0.75, neuron, burst=burst)).eval()


def spikes(conv: SpikeConv2d, batch: int, size: int, rate: float = 0.2) -> torch.Tensor:
    source = conv.source
    shape = (batch, conv.in_channels, size, size)
    low = -source.burst if source.neuron == "signed" else 0
    s = torch.randint(low, source.burst + 1, shape) * (torch.rand(shape) < rate)
    return (s * source.threshold).contiguous(memory_format=torch.channels_last)


def integer(conv: SpikeConv2d, codes: torch.Tensor) -> torch.Tensor:
    first, *rest = conv.terms(codes)
    for term in rest:
        first.add_(term)
    return first


@torch.no_grad()
def measure(args: argparse.Namespace) -> list[dict]:
    rows = []
    for net, c_in, c_out, size, kernel, stride in SHAPES:
        for label, (neuron, burst) in NEURONS.items():
            torch.manual_seed(args.seed)
            conv = layer(c_in, c_out, kernel, stride, neuron, burst)
            x = spikes(conv, args.batch, size)
            codes = spike_codes(x, float(conv.source.threshold), *spike_coding(conv.source))
            with float_convs():
                fp32 = conv(x)
            exact = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), stride, kernel // 2)
            scale = 2.0**-24 * F.conv2d(x.double().abs(), conv.weight.double().abs(), conv.bias.double().abs(),
                                        stride, kernel // 2)
            err = {name: float(((out - exact).abs() / scale).max()) for name, out in
                   (("fp32", fp32), ("integer", integer(conv, codes)))}
            times = {"fp32": [], "integer": []}
            for _ in range(args.repeats):
                with float_convs():
                    times["fp32"].append(timed(conv, x))
                times["integer"].append(timed(integer, conv, codes))
            fp32_ms, int_ms = (1e3 * statistics.median(times[k]) for k in ("fp32", "integer"))
            rows.append({"network": net, "in": c_in, "out": c_out, "size": size, "kernel": kernel, "stride": stride,
                         "fan_in": c_in * kernel * kernel, "spikes": label, "fp32_ms": fp32_ms,
                         "integer_ms": int_ms, "speedup": fp32_ms / int_ms, "fp32_error": err["fp32"],
                         "integer_error": err["integer"], "used_by_default": conv.integer(x)})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=256, help="stacked images per call (8 steps of 32 images)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/spike_conv")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = measure(args)
    where = machine()
    lines = [f"# Integer spike convolutions ({where['device']}, torch {where['torch']}, {args.threads} threads)", "",
             f"Command: `{command()}`", "",
             f"Batch {args.batch} (stacked steps × images), median of {args.repeats}; errors: largest |result − exact| "
             "in units of 2^-24·(Σ|w·x| + |b|).", "",
             "| network | in → out, size, kernel/stride | fan-in | spikes | fp32 ms | integer ms | speed-up | "
             "fp32 error | integer error | integer by default |", "|---|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['network']} | {r['in']} → {r['out']}, {r['size']}², {r['kernel']}/{r['stride']} | "
                     f"{r['fan_in']} | {r['spikes']} | {r['fp32_ms']:.2f} | {r['integer_ms']:.2f} | "
                     f"{r['speedup']:.2f}× | {r['fp32_error']:.2f} | {r['integer_error']:.2f} | "
                     f"{'yes' if r['used_by_default'] else 'no'} |")
    save_results(args.out, "\n".join(lines) + "\n", args, where, rows=rows)


if __name__ == "__main__":
    main()
