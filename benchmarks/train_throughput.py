"""Training throughput (images/s) of ``python train.py recipe=R`` against a plain eager PyTorch loop, and of each
speed lever on its own.

Contenders, all on the same architecture, batch size, optimizer, memory format and batches of the recipe's data:

- ``plain eager``: a hand-written loop on in-memory tensors (augmentation batched, as the recipe does), float32,
  QCFS written op by op with a straight-through floor (what the activation was before the fused kernels): the
  baseline.
- ``plain + fused QCFS``: the same loop with rmp_zoo's fused QCFS kernels (``torch.compile``).
- ``plain + bf16``: the baseline loop under bf16 autocast.
- ``plain + fused + bf16``: both levers.
- ``train.py``: the recipe's own Trainer (its precision, callbacks and loggers, data pipeline included), as
  ``train.py`` builds it; validation off.

They take turns, each round timing ``--batches`` steps after ``--warmup`` untimed ones; the median over
``--repeats`` rounds is reported, with each contender's ratio to the baseline. The first round's warm-up time,
which holds the one-off ``torch.compile`` cost, is reported separately.

    python benchmarks/train_throughput.py --recipe resnet20_cifar10 --data-root data --batches 40 --repeats 3
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from rmp_zoo.models import QCFS
from rmp_zoo.machine import machine

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def load_recipe(recipe: str, data_root: str, output_dir: str, batch_size: int | None):
    """The recipe's composed config and datamodule, exactly as ``train.py`` builds them."""
    overrides = [f"recipe={recipe}", f"data.root={data_root}", f"paths.output_dir={output_dir}"]
    if batch_size:
        overrides.append(f"data.batch_size={batch_size}")
    with initialize_config_dir(config_dir=str(RECIPES), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup("fit")
    return cfg, dm


def op_by_op_qcfs(module: QCFS, x: torch.Tensor) -> torch.Tensor:
    """QCFS as separate autograd ops: the unfused baseline."""
    z = x * (module.levels / module.threshold) + 0.5
    z = z + (torch.floor(z) - z).detach()
    return torch.clamp(z, 0, module.levels) * (module.threshold / module.levels)


class StepTimer(pl.Callback):
    """Wall time of the steps after ``warmup``, and of the warm-up itself."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup

    def on_train_batch_start(self, trainer, *_):
        if trainer.global_step == 0:
            self.begin = time.perf_counter()
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, *_):
        self.elapsed = time.perf_counter() - self.start
        self.warmup_s = self.start - self.begin


def time_train_py(cfg, dm, batches: int, warmup: int) -> tuple[float, float]:
    """(seconds per image, warm-up seconds) of the recipe's Trainer, built from its config as train.py does."""
    module = instantiate(cfg.model, _convert_="all")
    timer = StepTimer(warmup)
    callbacks = [instantiate(c, _convert_="all") for k, c in cfg.callbacks.items()
                 if c is not None and k not in ("snn", "progress")]  # no SNN evaluation, no progress bar
    loggers = [instantiate(c, _convert_="all") for c in cfg.logger.values() if c is not None]
    trainer = instantiate(cfg.trainer, callbacks=[*callbacks, timer], logger=loggers, max_steps=warmup + batches,
                          limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    return timer.elapsed / (batches * dm.batch_size), timer.warmup_s


def time_plain(cfg, dm, batches: int, warmup: int, fused: bool, bf16: bool) -> tuple[float, float]:
    """(seconds per image, warm-up seconds) of a hand-written loop: same model, optimizer, batches, augmentation
    and loss as the recipe."""
    module = instantiate(cfg.model, _convert_="all")
    model, hp = module.model.train(), module.hparams
    if not fused:
        for m in model.modules():
            if isinstance(m, QCFS):
                m.forward = lambda x, m=m: op_by_op_qcfs(m, x)
    opt = torch.optim.SGD(model.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay,
                          nesterov=True)
    begin = time.perf_counter()
    start = begin
    for i, (x, y) in enumerate(itertools.islice(iter(dm.train_dataloader()), warmup + batches)):
        if i == warmup:
            start = time.perf_counter()
        x = dm.transform(x, train=True)
        x = x.contiguous(memory_format=torch.channels_last) if hp.channels_last else x
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y, label_smoothing=hp.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / (batches * dm.batch_size), start - begin


CONTENDERS = {
    "plain eager": lambda *a: time_plain(*a, fused=False, bf16=False),
    "plain + fused QCFS": lambda *a: time_plain(*a, fused=True, bf16=False),
    "plain + bf16": lambda *a: time_plain(*a, fused=False, bf16=True),
    "plain + fused + bf16": lambda *a: time_plain(*a, fused=True, bf16=True),
    "train.py": time_train_py,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="resnet20_cifar10")
    p.add_argument("--data-root", default="data")
    p.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", default="benchmarks/results/train_throughput.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg, dm = load_recipe(args.recipe, args.data_root, tmp, args.batch_size)
        times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        first_warmup: dict[str, float] = {}
        for _ in range(args.repeats):  # take turns, so drifting machine load hits all alike
            for name, run in CONTENDERS.items():
                seconds, warmup_s = run(cfg, dm, args.batches, args.warmup)
                times[name].append(seconds)
                first_warmup.setdefault(name, warmup_s)
    rates = {name: 1 / statistics.median(t) for name, t in times.items()}
    base = rates["plain eager"]
    result = {
        "command": "python benchmarks/train_throughput.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "recipe": args.recipe, "batch_size": dm.batch_size, "precision": cfg.trainer.precision,
        "batches": args.batches, "warmup": args.warmup, "repeats": args.repeats, "threads": args.threads,
        "machine": machine(),
        "images_per_s": rates, "over_plain_eager": {name: r / base for name, r in rates.items()},
        "first_warmup_s": first_warmup,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{args.recipe}, batch {dm.batch_size}, {args.threads} threads, median of {args.repeats}x{args.batches} "
          f"batches, {result['machine']['device']}:")
    print(f"  {'contender':22s} {'images/s':>9s} {'× plain eager':>14s} {'first warm-up (s)':>18s}")
    for name, rate in rates.items():
        print(f"  {name:22s} {rate:9.1f} {rate / base:14.2f} {first_warmup[name]:18.1f}")


if __name__ == "__main__":
    main()
