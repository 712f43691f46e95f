"""Top-1 at every T of rmp_zoo's ANN→SNN conversion next to SpikingJelly 2.x's, on the same trained weights.

Every contender converts the same ANN, calibrated on the same training images, and is evaluated on the same first
``--images`` test images, at all T from one simulation of max(T) steps per batch. Contenders:

* rmp_zoo: IF (reset to zero) + max, RMP (reset by subtraction) + max, RMP + 99.9%, RMP + 99.9% + θ/2 initial
  potential;
* SpikingJelly (``ann2snn.Converter`` with ``ann2snn.RateCodingRecipe``; its IFNode resets by subtraction, i.e. is
  an RMP neuron): ``mode="Max"``, ``mode="99.9%"``, and ``mode="99.9%"`` with ``neuron.HalfThresholdIFNode`` (θ/2
  initial potential) given as the recipe's ``neuron_factory``.

SpikingJelly's converter cannot trace ResNet-20's parameter-free shortcut (``PadShortcut``: subsample, then
``F.pad`` the channels), so its copy of the ANN has each one replaced by a fixed 1×1 stride-2 convolution with 0/1
weights, which computes the same tensor; the script checks that both ANNs give the same logits. Simulation times
are measured per batch with the contenders interleaved, so that changing machine load hits all of them alike.

    pip install spikingjelly==2.0.0   # benchmark-only; rmp_zoo never imports it
    python benchmarks/spikingjelly_compare.py --ckpt RUN_DIR/checkpoints/best.ckpt --data-root data \\
        --images 1000 --T 16,32,64,128,256 --batch-size 100 --threads 4 --out benchmarks/results/spikingjelly
"""
from __future__ import annotations

import argparse
import copy
import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import version
from pathlib import Path

import torch
from spikingjelly.activation_based import ann2snn, functional, neuron
from spikingjelly.activation_based.ann2snn.modules import VoltageScaler
from timing import synchronize
from torch import nn

import rmp_zoo
from rmp_zoo.data import create_datamodule
from rmp_zoo.models.resnet import BasicBlock, PadShortcut
from rmp_zoo.training import ClassificationModule
from rmp_zoo.machine import machine as zoo_machine

Batches = list[tuple[torch.Tensor, torch.Tensor]]
Simulator = Callable[[torch.Tensor, list[int]], dict[int, torch.Tensor]]  # (x, T list) -> {T: mean output}


@dataclass
class Contender:
    """One converted network and how to simulate it; ``seconds`` sums its timed simulations."""

    name: str
    simulate: Simulator
    thresholds: list[float]  # per spiking layer, in execution order
    correct: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0


def load_ann(ckpt: str) -> nn.Module:
    """The ANN of a training run's Lightning checkpoint, rebuilt with the create_model constraints it recorded."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    hp = state["hyper_parameters"]
    ann = rmp_zoo.create_model(hp["arch"], num_classes=hp["num_classes"],
                               **ClassificationModule.model_constraints(hp))
    ann.load_state_dict({k.removeprefix("model."): v for k, v in state["state_dict"].items()
                         if k.startswith("model.")})
    return ann.eval()


def load_batches(dataset: str, root: str, images: int, batch_size: int, calib_images: int,
                 calib_batch_size: int) -> tuple[Batches, list[torch.Tensor]]:
    """The first ``images`` test images in batches, and the first ``calib_images`` training images as calibration
    batches; held in memory so data loading never falls inside a timed simulation."""
    dm = create_datamodule(dataset, root=root, download=False, eval_batch_size=batch_size, num_workers=0)
    dm.setup()
    test = list(dm.eval_batches("test", limit=images))
    train = torch.cat([x for x, _ in dm.eval_batches("train", limit=calib_images)])
    return test, list(train.split(calib_batch_size))


def spikingjelly_compatible(ann: nn.Module) -> nn.Module:
    """A copy of ``ann`` whose ``PadShortcut``s are fixed 1×1 stride-2 convolutions with 0/1 weights.

    SpikingJelly's step-mode graph rejects ``F.pad``. The convolution takes the same every-other pixel and puts
    input channel c on output channel c + pad_before, with zeros elsewhere, so it computes the same tensor from
    modules SpikingJelly knows; with one nonzero term per sum it is exact in floating point.
    """
    swapped = copy.deepcopy(ann)
    for block in swapped.modules():
        if isinstance(block, BasicBlock) and isinstance(block.downsample, PadShortcut):
            cin, extra = block.conv1.in_channels, block.downsample.extra
            conv = nn.Conv2d(cin, cin + extra, kernel_size=1, stride=2, bias=False)
            conv.weight.data.zero_()
            conv.weight.data[extra // 2: extra // 2 + cin, :, 0, 0] = torch.eye(cin)
            conv.weight.requires_grad_(False)
            block.downsample = conv.to(block.conv1.weight.device)
    return swapped.eval()


@torch.no_grad()
def ann_top1(ann: nn.Module, reference: nn.Module, batches: Batches) -> float:
    """Top-1 (percent) of ``ann``; raises unless ``reference`` (the swapped copy) gives the same logits."""
    correct = images = 0
    for x, y in batches:
        out, ref = ann(x), reference(x)
        if not torch.allclose(out, ref, rtol=1e-4, atol=1e-4):
            raise RuntimeError(f"the SpikingJelly-compatible ANN differs from the original by "
                               f"{(out - ref).abs().max().item():.3g} in the logits")
        correct += int((out.argmax(1) == y).sum())
        images += len(y)
    return 100 * correct / images


def rmp_zoo_contenders(ann: nn.Module, calibration: list[torch.Tensor]) -> list[Contender]:
    """rmp_zoo's conversions of ``ann``."""
    settings = [("rmp_zoo IF max", "if", "max", 0.0), ("rmp_zoo RMP max", "rmp", "max", 0.0),
                ("rmp_zoo RMP 99.9%", "rmp", "99.9%", 0.0), ("rmp_zoo RMP 99.9% +θ/2", "rmp", "99.9%", 0.5)]
    contenders = []
    for name, kind, threshold, v0 in settings:
        snn = rmp_zoo.convert(ann, calibration, neuron=kind, threshold=threshold, initial_potential=v0)
        contenders.append(Contender(name, partial(rmp_zoo.simulate, snn), list(snn.thresholds().values())))
    return contenders


def spikingjelly_contenders(ann: nn.Module, calibration: list[torch.Tensor]) -> list[Contender]:
    """SpikingJelly's rate-coding conversions of ``ann`` (already made SpikingJelly-compatible)."""
    settings = [("SpikingJelly max", "Max", None), ("SpikingJelly 99.9%", "99.9%", None),
                ("SpikingJelly 99.9% +θ/2", "99.9%", lambda scale: neuron.HalfThresholdIFNode())]
    contenders = []
    for name, mode, factory in settings:
        recipe = ann2snn.RateCodingRecipe(dataloader=calibration, mode=mode, neuron_factory=factory)
        snn = ann2snn.Converter(recipe).convert(copy.deepcopy(ann)).eval()
        contenders.append(Contender(name, partial(simulate_spikingjelly, snn), spikingjelly_thresholds(snn)))
    return contenders


def spikingjelly_thresholds(snn: nn.Module) -> list[float]:
    """Each spiking layer's θ in input units (the scale the recipe puts after its neuron), in execution order."""
    modules = dict(snn.named_modules())  # in registration order, which puts top-level neurons last: use the graph
    return [float(modules[n.target].scale) for n in snn.graph.nodes
            if n.op == "call_module" and n.target.endswith("scaler1") and isinstance(modules[n.target], VoltageScaler)]


@torch.no_grad()
def simulate_spikingjelly(snn: nn.Module, x: torch.Tensor, T: list[int]) -> dict[int, torch.Tensor]:
    """``{T: output averaged over T steps}`` from one run of max(T) single steps, state reset before and after."""
    steps, outputs, total = sorted(set(T)), {}, None
    functional.reset_net(snn)
    try:
        for t in range(1, steps[-1] + 1):
            out = snn(x)
            total = out.clone() if total is None else total.add_(out)
            if t in steps:
                outputs[t] = total / t
    finally:
        functional.reset_net(snn)
    return outputs


def check_same_layers(contenders: list[Contender]) -> None:
    """Every contender must have turned the same number of activations into neurons (SpikingJelly silently leaves
    activations other than ``nn.ReLU`` analog, which would make it a hybrid network)."""
    counts = {c.name: len(c.thresholds) for c in contenders}
    if len(set(counts.values())) != 1:
        raise RuntimeError(f"contenders have different numbers of spiking layers: {counts}")


def run(contenders: list[Contender], batches: Batches, T: list[int], device: torch.device) -> None:
    """Simulate every contender on every batch, batch by batch in turn, counting correct answers and seconds."""
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        for c in contenders:
            synchronize(device)
            start = time.perf_counter()
            outputs = c.simulate(x, T)
            synchronize(device)
            c.seconds += time.perf_counter() - start
            for t, out in outputs.items():
                c.correct[t] = c.correct.get(t, 0) + int((out.argmax(1) == y).sum())


def machine() -> str:
    """The device (GPU name, else CPU model and cores) and library versions, for the table's header."""
    return (f"{zoo_machine()['device']}; torch {torch.__version__}, spikingjelly {version('spikingjelly')}, "
            f"rmp_zoo {rmp_zoo.__version__}")


def threshold_ratios(contenders: list[Contender]) -> dict[str, float]:
    """Geometric mean over layers of SpikingJelly's θ over rmp_zoo's for the same statistic: calibration differs
    (SpikingJelly averages per-batch statistics with momentum and keeps zeros in its percentile)."""
    by_name = {c.name: c.thresholds for c in contenders}
    pairs = {"max": ("SpikingJelly max", "rmp_zoo RMP max"), "99.9%": ("SpikingJelly 99.9%", "rmp_zoo RMP 99.9%")}
    return {stat: torch.tensor(by_name[sj]).div(torch.tensor(by_name[us])).log().mean().exp().item()
            for stat, (sj, us) in pairs.items()}


def report(contenders: list[Contender], ann_acc: float, images: int, T: list[int], header: str,
           out: Path) -> str:
    """Write ``results.csv`` (method, T, top1, s_per_image_step) and ``results.md`` into ``out``; return the table."""
    steps = max(T)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "T", "top1", "s_per_image_step"])
        writer.writerow(["ANN", "", f"{ann_acc:.2f}", ""])
        for c in contenders:
            for t in T:
                writer.writerow([c.name, t, f"{100 * c.correct[t] / images:.2f}",
                                 f"{c.seconds / (images * steps):.3g}"])
    lines = [header, "", f"ANN top-1: {ann_acc:.2f}%", "",
             "| method | " + " | ".join(f"T={t}" for t in T) + " | s / image-step |",
             "|---|" + "---:|" * (len(T) + 1)]
    for c in contenders:
        accs = " | ".join(f"{100 * c.correct[t] / images:.2f}" for t in T)
        lines.append(f"| {c.name} | {accs} | {c.seconds / (images * steps):.3g} |")
    lines += ["", "Top-1 in percent."]
    if len({c.name.split()[0] for c in contenders}) == 2:
        ratios = threshold_ratios(contenders)
        lines[-1] += (" SpikingJelly θ / rmp_zoo θ (geometric mean over layers): "
                      + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()) + ".")
    table = "\n".join(lines) + "\n"
    (out / "results.md").write_text(table)
    return table


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a training run's checkpoints/best.ckpt (ReLU model)")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--data-root", default="data")
    p.add_argument("--images", type=int, default=1000, help="the first N test images")
    p.add_argument("--T", default="16,32,64,128,256", help="comma-separated; one simulation of max(T) steps")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--calib-images", type=int, default=1024, help="the first N (unaugmented) training images")
    p.add_argument("--calib-batch-size", type=int, default=128,
                   help="SpikingJelly takes each batch's percentile with torch.quantile, which accepts at most 2^24 "
                        "values: at most 1024 for ResNet-20 on CIFAR")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu")
    p.add_argument("--contenders", choices=("all", "rmp_zoo", "spikingjelly"), default="all",
                   help="run one library's contenders only (the table is then split over two runs)")
    p.add_argument("--out", default="benchmarks/results/spikingjelly_compare")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    T, device = sorted({int(t) for t in args.T.split(",")}), torch.device(args.device)
    test, calibration = load_batches(args.dataset, args.data_root, args.images, args.batch_size, args.calib_images,
                                     args.calib_batch_size)
    ann = load_ann(args.ckpt).to(device)
    sj_ann = spikingjelly_compatible(ann)
    calibration = [x.to(device) for x in calibration]
    ann_acc = ann_top1(ann, sj_ann, [(x.to(device), y.to(device)) for x, y in test])
    contenders = ((rmp_zoo_contenders(ann, calibration) if args.contenders != "spikingjelly" else [])
                  + (spikingjelly_contenders(sj_ann, calibration) if args.contenders != "rmp_zoo" else []))
    check_same_layers(contenders)
    run(contenders, test, T, device)
    images = sum(len(y) for _, y in test)
    header = (f"{args.ckpt}: {images} {args.dataset} test images, batch size {args.batch_size}, threads {args.threads}, "
              f"device {device}; calibration: first {args.calib_images} training images in batches of "
              f"{args.calib_batch_size}\nmachine: {machine()}")
    print(report(contenders, ann_acc, images, T, header, Path(args.out)), end="")


if __name__ == "__main__":
    main()
