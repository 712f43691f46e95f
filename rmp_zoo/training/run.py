"""Run one training recipe: build everything, check it, then fit, test and record the results.

Everything that can fail on bad input (names, data, class counts, missing logger packages) is checked before
training starts, and a run that fails to start leaves no output behind: Hydra has already written ``.hydra/`` and
``train.log`` into the run folder by then, so a folder that held nothing else is removed.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, Timer

from ..machine import machine


log = logging.getLogger(__name__)

# Loggers whose package is optional: named with its install command before anything is built.
_OPTIONAL_PACKAGES = {"WandbLogger": "wandb", "MLFlowLogger": "mlflow"}


def _instantiate_all(group: str, section: DictConfig | None) -> list:
    """Instantiate each entry of ``cfg.callbacks`` or ``cfg.logger``. An entry without ``_target_`` holds a recipe's
    options for a callback the chosen group left out (``callbacks=none``), so it is skipped."""
    objects = []
    for name, c in (section or {}).items():
        if c is None:
            continue
        if "_target_" not in c:
            log.warning("%s.%s has no _target_ (not in the chosen %s config): skipped", group, name, group)
            continue
        package = _OPTIONAL_PACKAGES.get(str(c._target_).rsplit(".", 1)[-1])
        if package and importlib.util.find_spec(package) is None:
            raise ModuleNotFoundError(f"{group}.{name} needs the {package} package: pip install {package} "
                                      f"(or leave it out, e.g. {group}=[csv,tensorboard])")
        objects.append(hydra.utils.instantiate(c, _convert_="all"))
    return objects


def _hydra_files() -> set[str]:
    """What Hydra writes into a run folder before ``train`` starts: ``.hydra/`` and the job's log file."""
    if not HydraConfig.initialized():
        return set()
    hc = HydraConfig.get()
    return {name for name in (hc.output_subdir, f"{hc.job.name}.log") if name}


def _holds_no_run(out: str) -> bool:
    """True when ``out`` is missing or holds nothing but Hydra's own files: no training has written to it."""
    return not os.path.isdir(out) or set(os.listdir(out)) <= _hydra_files()


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit ``cfg.model`` on ``cfg.data`` with ``cfg.trainer``; returns the final validation and test metrics.

    A run that fails before fitting removes its folder when no training had written to it before (a resumed run's
    folder stays), so an output folder always holds a run."""
    out = cfg.paths.output_dir
    fresh = _holds_no_run(out)
    try:
        pl.seed_everything(cfg.seed, workers=True)
        datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
        module = hydra.utils.instantiate(cfg.model, _convert_="all")
        if module.hparams.num_classes != datamodule.num_classes:
            raise ValueError(f"model.num_classes={module.hparams.num_classes} but dataset {datamodule.name} has "
                             f"{datamodule.num_classes} classes; drop the override or set both to match")
        datamodule.prepare_data()
        datamodule.setup("fit")
        split = getattr(datamodule, "monitor_split", "val")
        callbacks = _instantiate_all("callbacks", cfg.get("callbacks"))
        _check_monitor(callbacks, split)
        _check_optimized_metric(cfg.get("optimized_metric"), split)
        loggers = _instantiate_all("logger", cfg.get("logger"))
        if not loggers:  # logger=none: the LR monitor has nowhere to write (Lightning would fail at the first epoch)
            callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
        trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    except BaseException:
        if fresh and _holds_no_run(out) and os.path.isdir(out):
            shutil.rmtree(out)
        raise

    if trainer.is_global_zero:
        os.makedirs(out, exist_ok=True)
        OmegaConf.save(cfg, os.path.join(out, "config.yaml"), resolve=True)  # what `rmp-zoo export` reads
        log.info("Run folder: %s", os.path.abspath(out))
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path == "last" and not os.path.isfile(os.path.join(out, "checkpoints", "last.ckpt")):
        ckpt_path = None
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    training = _training_record(trainer)  # before testing: loading the best checkpoint restores the Timer's state
    results = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    if cfg.get("test"):
        best = "best" if trainer.checkpoint_callback and not trainer.fast_dev_run else None  # none: the last weights
        for k, v in trainer.test(module, datamodule=datamodule, ckpt_path=best, weights_only=True)[0].items():
            results[k] = float(v)
        for cb in trainer.callbacks:
            # the SNN evaluation callback's test record (a layer above: found by what it holds, not imported)
            snn = getattr(cb, "results", {}).get("test")
            if snn:
                results.update({f"snn/acc@{row['T']}": row["top1"] / 100 for row in snn["snn"]})
    if trainer.is_global_zero:
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
        with open(os.path.join(out, "training.json"), "w") as f:
            json.dump(training, f, indent=2)
    return results


def metric_value(results: dict[str, float], name: str | None) -> float | None:
    """The value ``main`` hands back to Hydra, which sweepers optimise; None when no metric is chosen."""
    if not name:
        return None
    if name not in results:
        raise ValueError(f"optimized_metric={name!r} is not among this run's metrics ({', '.join(sorted(results))}); "
                         "set optimized_metric to one of them, or to null")
    return results[name]


def _check_optimized_metric(name: str | None, split: str) -> None:
    """A sweep selects hyperparameters on its metric, so, like checkpoint selection, only on a held-out split; checked
    before training, not after it."""
    if name and not (name.startswith("val/") and split == "val"):
        raise ValueError(f"optimized_metric={name!r}: a sweep may tune only on the held-out validation split (val/*; "
                         f"this run's validation loop evaluates {split!r}, and test/* and snn/* are measured on the "
                         "test split). Set optimized_metric=null, or data.val_size>0 with optimized_metric=val/acc1.")


def _check_monitor(callbacks: list, split: str) -> None:
    """Never select on the test split, and never on a validation split the loop does not evaluate (that would fail
    after the first epoch)."""
    for cb in callbacks:
        monitor = getattr(cb, "monitor", None)
        if isinstance(cb, ModelCheckpoint) and monitor and (
                monitor.startswith("test/") or (monitor.startswith("val/") and split != "val")):
            raise ValueError(f"callbacks.checkpoint.monitor={monitor!r} would select checkpoints on the test split "
                             f"or on a split the validation loop does not evaluate (it evaluates {split!r}). Set "
                             "callbacks.checkpoint.monitor=null to keep the last epoch, or data.val_size>0 with "
                             "monitor=val/acc1 to select on a held-out split; never select on the test split.")


def _training_record(trainer: pl.Trainer) -> dict:
    """Where and how long the run trained, for the model card (the Timer's total survives resumes).

    Read it right after fitting: ``trainer.test(ckpt_path="best")`` loads the Timer's state from that checkpoint,
    which adds the checkpoint's elapsed time to the total once more.
    """
    timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)
    return {"train_time_s": timer.time_elapsed("train") if timer else None, "epochs": trainer.current_epoch,
            "global_step": trainer.global_step, "machine": machine()}
