"""LightningModule that trains a registered architecture as an image classifier.

All hyper-parameters are plain values, so Lightning checkpoints stay loadable with ``weights_only=True`` and the
architecture can be rebuilt from a checkpoint alone (``rmp-zoo export`` relies on this).
"""
from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from ..models import create_model
from ..models.activations import QCFS, ClipReLU
from ..models.constraints import Constraints

OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("cosine", "onecycle", "none")


class ClassificationModule(pl.LightningModule):
    def __init__(
        self,
        arch: str,
        num_classes: int,
        arch_kwargs: dict[str, Any] | None = None,
        optimizer: str = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        scheduler: str = "onecycle",
        warmup_fraction: float = 0.15,
        label_smoothing: float = 0.0,
        channels_last: bool = True,
        **constraints: Any,
    ) -> None:
        """``constraints`` are the conversion-friendly model options of ``rmp_zoo.models.Constraints``."""
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
        unknown = set(constraints) - set(Constraints.names())
        if unknown:
            raise ValueError(f"unknown model options {sorted(unknown)}; model constraints are "
                             f"{', '.join(Constraints.names())}")
        self.save_hyperparameters()
        self.model = create_model(arch, num_classes=num_classes, **self.model_constraints(self.hparams))
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.metrics = nn.ModuleDict({
            f"{stage}_acc{k}": torchmetrics.Accuracy(task="multiclass", num_classes=num_classes, top_k=k)
            for stage in ("train", "val", "test") for k in (1, 5) if k <= num_classes
        })

    @staticmethod
    def model_constraints(hparams: Any) -> dict[str, Any]:
        """The ``create_model`` keyword arguments recorded in ``hparams`` (a checkpoint's hyper_parameters)."""
        return {**{k: hparams[k] for k in Constraints.names() if k in hparams}, **(hparams.get("arch_kwargs") or {})}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing if stage == "train" else 0.0)
        self.log(f"{stage}/loss", loss, prog_bar=stage != "test", on_epoch=True, on_step=stage == "train",
                 sync_dist=stage != "train")
        for k in (1, 5):
            name = f"{stage}_acc{k}"
            if name in self.metrics:
                self.metrics[name](logits, y)
                self.log(f"{stage}/acc{k}", self.metrics[name], prog_bar=k == 1, on_epoch=True, on_step=False)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def on_train_epoch_end(self) -> None:
        """Log every trained threshold: a θ that collapses towards zero starves its layer, and the curve shows when."""
        for name, module in self.model.named_modules():
            if isinstance(module, (ClipReLU, QCFS)):
                self.log(f"theta/{name}", module.threshold.detach(), on_epoch=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, getattr(self.trainer.datamodule, "monitor_split", "val"))

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self):
        hp = self.hparams
        # Weight decay on conv/linear weights only: BN, biases and activation thresholds are left free.
        decay = [p for p in self.parameters() if p.ndim > 1]
        no_decay = [p for p in self.parameters() if p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=hp.momentum > 0)
        else:
            opt = torch.optim.AdamW(groups, lr=hp.lr)
        if hp.scheduler == "none":
            return opt
        steps = self.trainer.estimated_stepping_batches
        if hp.scheduler == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp.lr, total_steps=steps,
                                                        pct_start=hp.warmup_fraction, div_factor=25.0,
                                                        final_div_factor=1e3)
        else:
            warmup = max(1, int(hp.warmup_fraction * steps))
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
