"""Lightning callback that converts the model being trained and reports its SNN accuracy at several T."""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import pytorch_lightning as pl
import torch

from .conversion import ConversionSettings, convert
from .conversion.record import Sharding, measure
from .conversion.report import plot_accuracy, write_csv

class SNNEvaluation(pl.Callback):
    """Convert on calibration batches of the training data, evaluate on validation or test data, log ``snn/acc@T``.

    Runs every ``every_n_epochs`` validation epochs on the validation split and, with ``at_end``, after
    ``trainer.test`` on the test split with the tested weights; each time on the first ``limit`` images (None: all).
    ``conversion`` is a ``ConversionSettings`` (or a dict of its fields): ``rmp-zoo export`` of the run converts the
    same way. Under DDP each rank evaluates its shard of every batch and the counts are summed over ranks, as
    torchmetrics does. Results go to the loggers and, as CSV and an accuracy-vs-T plot, into ``<run dir>/snn/``.
    """

    def __init__(self, T: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
                 conversion: ConversionSettings | Mapping[str, Any] | None = None, every_n_epochs: int | None = None,
                 at_end: bool = True, limit: int | None = 2000, calibration_images: int = 1024) -> None:
        self.T = sorted(T)
        self.conversion = ConversionSettings.of(conversion)  # bad settings fail now, not after training
        self.every_n_epochs, self.at_end, self.limit = every_n_epochs, at_end, limit
        self.calibration_images = calibration_images
        self.results: dict[str, dict[str, Any]] = {}

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (self.every_n_epochs and not trainer.sanity_checking and not trainer.fast_dev_run
                and (trainer.current_epoch + 1) % self.every_n_epochs == 0):
            split = getattr(trainer.datamodule, "monitor_split", "val")  # "test" when no split is held out
            self._run(trainer, pl_module, split, f"epoch{trainer.current_epoch}")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.at_end:
            self._run(trainer, pl_module, "test", "test")

    @torch.no_grad()
    def _run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str, tag: str) -> None:
        dm = trainer.datamodule
        ann = pl_module.model
        quick = dm.eval_batch_size if trainer.fast_dev_run else None  # a check run: one batch each
        calibration = None
        if self.conversion.needs_data(ann):
            calibration = [x.to(pl_module.device) for x, _ in dm.eval_batches("train", quick or self.calibration_images)]
        snn = convert(ann, calibration, settings=self.conversion)
        metrics = measure(snn, ann, dm.eval_batches(split, limit=quick or self.limit), self.T, dataset=dm.name,
                          batch_size=dm.eval_batch_size, command="SNNEvaluation callback",
                          sharding=Sharding(trainer.global_rank, trainer.world_size,
                                            lambda v: trainer.strategy.reduce(v, reduce_op="sum")))
        metrics["split"] = split
        self.results[tag] = metrics
        logged = {f"snn/acc@{row['T']}": row["top1"] for row in metrics["snn"]}
        last = metrics["snn"][-1]
        logged.update({f"snn/firing_rate@{last['T']}/{layer}": rate for layer, rate in last["firing_rate"].items()})
        logged[f"snn/ann_acc_{split}"] = metrics["ann_top1"]
        for logger in trainer.loggers:
            logger.log_metrics(logged, step=trainer.global_step)
        if trainer.is_global_zero:
            out = os.path.join(trainer.default_root_dir, "snn")
            os.makedirs(out, exist_ok=True)
            write_csv(metrics, os.path.join(out, f"{tag}.csv"))
            plot_accuracy(metrics, os.path.join(out, f"{tag}.png"),
                          f"{dm.name} {split}: {snn.settings.neuron.upper()} SNN vs ANN")
            with open(os.path.join(out, f"{tag}.json"), "w") as f:
                json.dump(metrics, f, indent=2)
