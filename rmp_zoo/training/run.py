"""Run one training recipe: build everything, check it, then fit, test and record the results.

Everything that can fail on bad input (names, data, class counts) is checked before anything is written, so a run
that fails to start leaves no output behind.
"""
from __future__ import annotations

import json
import os
import shutil

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint, Timer

from ..callbacks import SNNEvaluation
from ..zoo.measure import machine


def _instantiate_all(section: DictConfig | None) -> list:
    return [hydra.utils.instantiate(c, _convert_="all") for c in (section or {}).values() if c is not None]


def train(cfg: DictConfig) -> dict:
    """Fit ``cfg.model`` on ``cfg.data`` with ``cfg.trainer``; returns the final validation and test metrics."""
    out = cfg.paths.output_dir
    existed = os.path.isdir(out) and bool(os.listdir(out))
    try:
        pl.seed_everything(cfg.seed, workers=True)
        datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
        module = hydra.utils.instantiate(cfg.model, _convert_="all")
        if module.hparams.num_classes != datamodule.num_classes:
            raise ValueError(f"model.num_classes={module.hparams.num_classes} but dataset {datamodule.name} has "
                             f"{datamodule.num_classes} classes; drop the override or set both to match")
        datamodule.prepare_data()
        datamodule.setup("fit")
        callbacks = _instantiate_all(cfg.get("callbacks"))
        _check_monitor(callbacks, getattr(datamodule, "monitor_split", "val"))
        trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks,
                                                      logger=_instantiate_all(cfg.get("logger")))
    except BaseException:
        if not existed and os.path.isdir(out) and not os.listdir(out):
            shutil.rmtree(out)
        raise

    if trainer.is_global_zero:
        os.makedirs(out, exist_ok=True)
        OmegaConf.save(cfg, os.path.join(out, "config.yaml"), resolve=True)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path == "last" and not os.path.isfile(os.path.join(out, "checkpoints", "last.ckpt")):
        ckpt_path = None
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    training = _training_record(trainer)  # before testing: loading the best checkpoint restores the Timer's state
    results = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    if cfg.get("test"):
        best = None if trainer.fast_dev_run else "best"
        for k, v in trainer.test(module, datamodule=datamodule, ckpt_path=best, weights_only=True)[0].items():
            results[k] = float(v)
        for cb in trainer.callbacks:
            if isinstance(cb, SNNEvaluation) and "test" in cb.results:
                results.update({f"snn/acc@{row['T']}": row["top1"] / 100 for row in cb.results["test"]["snn"]})
    if trainer.is_global_zero:
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
        with open(os.path.join(out, "training.json"), "w") as f:
            json.dump(training, f, indent=2)
    return results


def _check_monitor(callbacks: list, split: str) -> None:
    """Never select on the test split, and never on a validation split the loop does not evaluate (that would fail
    after the first epoch)."""
    for cb in callbacks:
        monitor = getattr(cb, "monitor", None)
        if isinstance(cb, ModelCheckpoint) and monitor and (
                monitor.startswith("test/") or (monitor.startswith("val/") and split != "val")):
            raise ValueError(f"callbacks.checkpoint.monitor={monitor!r} would select checkpoints on the test split "
                             f"or on a split the validation loop does not evaluate (it evaluates {split!r}). Set callbacks.checkpoint.monitor=null to keep the last epoch, or data.val_size>0 with "
                             "monitor=val/acc1 to select on a held-out split; never select on the test split.")


def _training_record(trainer: pl.Trainer) -> dict:
    """Where and how long the run trained, for the model card (the Timer's total survives resumes).

    Read it right after fitting: ``trainer.test(ckpt_path="best")`` loads the Timer's state from that checkpoint,
    which adds the checkpoint's elapsed time to the total once more (an H100 run of 330 s was recorded as 642 s).
    """
    timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)
    return {"train_time_s": timer.time_elapsed("train") if timer else None, "epochs": trainer.current_epoch,
            "global_step": trainer.global_step, "machine": machine()}
