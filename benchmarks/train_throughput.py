"""Training throughput (images/s) of a recipe under Lightning, next to a plain PyTorch loop.

Both contenders train the same architecture on the same batches (the recipe's datamodule, with its batched
augmentation), with the same optimizer and memory format. They alternate, each round timing ``--batches`` steps
after ``--warmup`` untimed ones, and the median over ``--repeats`` rounds is reported, with the ratio.

    python benchmarks/train_throughput.py --recipe resnet20_cifar10 --data-root data --batches 40 --repeats 3
"""
from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def load_recipe(recipe: str, data_root: str, batch_size: int | None) -> tuple:
    """The recipe's datamodule and LightningModule, exactly as ``train.py`` builds them."""
    overrides = [f"recipe={recipe}", f"data.root={data_root}", "paths.output_dir=/tmp/throughput"]
    if batch_size:
        overrides.append(f"data.batch_size={batch_size}")
    with initialize_config_dir(config_dir=str(RECIPES), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup("fit")
    return dm, lambda: instantiate(cfg.model, _convert_="all")


def time_lightning(dm, make_module, batches: int, warmup: int) -> float:
    """Seconds per image for ``batches`` training steps of ``Trainer.fit`` (warm-up steps excluded)."""
    module = make_module()

    class Timer(pl.Callback):
        def on_train_batch_start(self, trainer, *_):
            if trainer.global_step == warmup:
                self.start = time.perf_counter()

        def on_train_end(self, trainer, *_):
            self.elapsed = time.perf_counter() - self.start

    timer = Timer()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=warmup + batches, limit_val_batches=0,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[timer])
    trainer.fit(module, datamodule=dm)
    return timer.elapsed / (batches * dm.batch_size)


def time_plain(dm, make_module, batches: int, warmup: int) -> float:
    """Seconds per image of a hand-written loop: same model, optimizer, batches, augmentation and loss."""
    module = make_module()
    model, hp = module.model.train(), module.hparams
    opt = torch.optim.SGD(model.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay,
                          nesterov=True)
    loader = itertools.islice(iter(dm.train_dataloader()), warmup + batches)
    start = 0.0
    for i, (x, y) in enumerate(loader):
        if i == warmup:
            start = time.perf_counter()
        x = dm.transform(x, train=True)
        x = x.contiguous(memory_format=torch.channels_last) if hp.channels_last else x
        loss = F.cross_entropy(model(x), y, label_smoothing=hp.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / (batches * dm.batch_size)


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
    dm, make_module = load_recipe(args.recipe, args.data_root, args.batch_size)
    times: dict[str, list[float]] = {"lightning": [], "plain": []}
    for _ in range(args.repeats):  # alternate, so drifting machine load hits both alike
        times["lightning"].append(time_lightning(dm, make_module, args.batches, args.warmup))
        times["plain"].append(time_plain(dm, make_module, args.batches, args.warmup))
    result = {
        "recipe": args.recipe, "batch_size": dm.batch_size, "batches": args.batches, "repeats": args.repeats,
        "threads": args.threads, "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
        **{f"{k}_images_per_s": 1 / statistics.median(v) for k, v in times.items()},
    }
    result["lightning_over_plain"] = result["lightning_images_per_s"] / result["plain_images_per_s"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{args.recipe}, batch {dm.batch_size}, {args.threads} threads, median of {args.repeats}x{args.batches} "
          f"batches:\n  Lightning  {result['lightning_images_per_s']:8.1f} images/s\n"
          f"  plain loop {result['plain_images_per_s']:8.1f} images/s\n"
          f"  ratio      {result['lightning_over_plain']:8.3f}")


if __name__ == "__main__":
    main()
