"""The Hydra side of training: every recipe composes to the callbacks and loggers it has always had and builds on
CPU without data; loggers and callbacks are config groups; every run folder keeps Hydra's ``.hydra/`` and
``train.log``; a run that fails to start leaves no folder; ``main`` hands the optimised metric back to sweepers."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import hydra
import pytest
import yaml
from omegaconf import OmegaConf

from conftest import RECIPES, ROOT, run_train
from rmp_zoo.training import run

RECIPE_NAMES = sorted(p.stem for p in (RECIPES / "recipe").glob("*.yaml"))

# The callbacks and loggers of recipes/train.yaml before they became config groups (recipes/callbacks/,
# recipes/logger/). Resumed runs and recipe overrides (callbacks.checkpoint.monitor, ...) rely on these keys: change
# them here only together with recipes/callbacks/*.yaml and the recipes. The SNN evaluation's defaults are
# recipes/callbacks/snn.yaml's (tests/test_conversion_settings.py keeps them equal to ConversionSettings).
DEFAULTS = yaml.safe_load("""
callbacks:
  checkpoint: {_target_: pytorch_lightning.callbacks.ModelCheckpoint, dirpath: '${paths.output_dir}/checkpoints',
               filename: best, monitor: val/acc1, mode: max, save_top_k: 1, save_last: true}
  lr_monitor: {_target_: pytorch_lightning.callbacks.LearningRateMonitor, logging_interval: epoch}
  rng: {_target_: rmp_zoo.training.RNGState}
  timer: {_target_: pytorch_lightning.callbacks.Timer}
  progress: {_target_: pytorch_lightning.callbacks.TQDMProgressBar, refresh_rate: 20}
logger:
  csv: {_target_: pytorch_lightning.loggers.CSVLogger, save_dir: '${paths.output_dir}', name: '', version: 'csv/${now:%Y-%m-%d_%H-%M-%S_%f}'}
  tensorboard: {_target_: pytorch_lightning.loggers.TensorBoardLogger, save_dir: '${paths.output_dir}', name: '',
                version: tensorboard}
""")
DEFAULTS["callbacks"].update(yaml.safe_load((RECIPES / "callbacks" / "snn.yaml").read_text()))
T_CIFAR, T_IMAGENET = [1, 2, 4, 8, 16, 32, 64, 128], [8, 16, 32, 64, 128, 256]
ZOO = {"checkpoint": {"monitor": None}, "snn": {"T": T_CIFAR, "conversion": {"neuron": "signed", "burst": 2}}}
RECIPE_CALLBACKS = {"smoke": {}, "resnet20_cifar10": ZOO, "resnet20_cifar100": ZOO,
                    "resnet34_imagenet": {"snn": {"T": T_IMAGENET, "limit": 10000}},
                    "vgg16_imagenet": {"snn": {"T": T_IMAGENET, "limit": 10000}},
                    "vgg16_cifar10": {"snn": {"T": T_CIFAR}}, "vgg16_cifar100": {"snn": {"T": T_CIFAR}}}


def _no_data(recipe: str, tmp_path: Path) -> list[str]:
    """Overrides that build a recipe on CPU into tmp_path, pointing its data at an empty folder (nothing is read)."""
    overrides = [f"recipe={recipe}", "trainer.accelerator=cpu"]
    if recipe != "smoke":  # generated images
        overrides.append(f"data.root={tmp_path / 'nodata'}")
    return overrides + (["data.download=false"] if "cifar" in recipe else [])


def test_every_recipe_is_covered():
    assert sorted(RECIPE_CALLBACKS) == RECIPE_NAMES


@pytest.mark.parametrize("recipe", RECIPE_NAMES)
def test_recipe_keeps_its_callbacks_and_loggers(recipe, compose_recipe):
    cfg = compose_recipe(f"recipe={recipe}")
    expected = OmegaConf.to_container(OmegaConf.merge(DEFAULTS, {"callbacks": RECIPE_CALLBACKS[recipe]}))
    for group in ("callbacks", "logger"):
        got = OmegaConf.to_container(cfg[group])
        assert got == expected[group] and list(got) == list(expected[group])  # order: callbacks run in it


@pytest.mark.parametrize("recipe", RECIPE_NAMES)
def test_recipe_builds_on_cpu_without_data(recipe, compose_recipe, tmp_path):
    cfg = compose_recipe(*_no_data(recipe, tmp_path))
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    module = hydra.utils.instantiate(cfg.model, _convert_="all")
    assert module.hparams.num_classes == datamodule.num_classes
    callbacks = run._instantiate_all("callbacks", cfg.callbacks)
    loggers = run._instantiate_all("logger", cfg.logger)
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    assert [type(cb).__name__ for cb in callbacks] == ["ModelCheckpoint", "LearningRateMonitor", "RNGState", "Timer",
                                                        "TQDMProgressBar", "SNNEvaluation"]
    assert [type(lg).__name__ for lg in trainer.loggers] == ["CSVLogger", "TensorBoardLogger"]
    assert trainer.default_root_dir == cfg.paths.output_dir
    assert not (tmp_path / "nodata").exists()  # nothing downloaded


def test_logger_and_callback_groups(compose_recipe):
    assert list(compose_recipe("logger=csv").logger) == ["csv"]
    assert list(compose_recipe("logger=[tensorboard,csv]").logger) == ["tensorboard", "csv"]
    assert list(compose_recipe("logger=[csv,tensorboard,wandb,mlflow]").logger) == ["csv", "tensorboard", "wandb",
                                                                                     "mlflow"]
    assert not compose_recipe("logger=none").get("logger")
    cfg = compose_recipe("callbacks=none")
    assert not cfg.get("callbacks") and cfg.optimized_metric is None
    # A recipe's options for callbacks that are not selected have no _target_ and are skipped.
    cfg = compose_recipe("recipe=resnet20_cifar10", "callbacks=none")
    assert set(cfg.callbacks) == {"checkpoint", "snn"} and run._instantiate_all("callbacks", cfg.callbacks) == []
    callbacks = run._instantiate_all("callbacks", compose_recipe("callbacks.snn=null").callbacks)
    assert [type(cb).__name__ for cb in callbacks][-1] == "TQDMProgressBar"


@pytest.mark.parametrize("package", ["wandb", "mlflow"])
def test_missing_logger_package_names_the_install(package, compose_recipe, monkeypatch, tmp_path):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else find_spec(name, *a))
    cfg = compose_recipe(f"logger=[csv,{package}]")
    with pytest.raises(ModuleNotFoundError, match=f"logger.{package} needs the {package} package: pip install "
                                                  f"{package}"):
        run.train(cfg)
    assert not Path(cfg.paths.output_dir).exists()


def test_failed_start_removes_a_fresh_folder_and_keeps_a_run(compose_recipe):
    """Hydra writes .hydra/ and the job log before train() runs: a folder with nothing else goes when the run fails
    before fitting; one that holds an earlier run (a resume) stays as it was."""
    cfg = compose_recipe("model.num_classes=7")
    out = Path(cfg.paths.output_dir)
    hydra_files = run._hydra_files()
    assert hydra_files == {".hydra", "app.log"}  # compose() names the job "app"; train.py's is "train"
    (out / ".hydra").mkdir(parents=True)
    (out / "app.log").touch()
    with pytest.raises(ValueError, match="model.num_classes=7"):
        run.train(cfg)
    assert not out.exists()

    (out / ".hydra").mkdir(parents=True)
    (out / "config.yaml").touch()
    with pytest.raises(ValueError, match="model.num_classes=7"):
        run.train(cfg)
    assert sorted(p.name for p in out.iterdir()) == [".hydra", "config.yaml"]


def test_optimized_metric(compose_recipe):
    assert compose_recipe().optimized_metric == "val/acc1"  # the checkpoint's monitor
    assert compose_recipe("recipe=resnet20_cifar10").optimized_metric is None  # no held-out split: nothing to tune on
    assert compose_recipe("callbacks.checkpoint.monitor=val/loss").optimized_metric == "val/loss"
    assert run.metric_value({"val/acc1": 0.5}, "val/acc1") == 0.5 and run.metric_value({}, None) is None
    with pytest.raises(ValueError, match=r"optimized_metric='val/acc2' is not among this run's metrics \(test/acc1, "
                                         r"val/acc1\)"):
        run.metric_value({"val/acc1": 0.5, "test/acc1": 0.4}, "val/acc2")
    for name, split in (("test/acc1", "val"), ("snn/acc@32", "val"), ("val/acc1", "test")):
        with pytest.raises(ValueError, match="tune only on the held-out validation split"):
            run._check_optimized_metric(name, split)
    run._check_optimized_metric("val/loss", "val")


def test_main_returns_the_optimized_metric(compose_recipe):
    """What a sweeper receives; also a run without loggers, which leaves out the LR monitor (it needs one)."""
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "train.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    cfg = compose_recipe("+trainer.fast_dev_run=true", "trainer.accelerator=cpu", "callbacks.snn=null", "logger=none")
    value = script.main(cfg)
    assert isinstance(value, float) and 0.0 <= value <= 1.0
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert value == pytest.approx(results["val/acc1"])


def test_multirun_keeps_hydra_files_and_a_log_per_run(tmp_path):
    """`train.py -m` as a user runs it: every job folder holds .hydra/ (with its overrides), train.log with
    Lightning's and our messages, and train.py's own config.yaml."""
    proc = run_train("-m", "seed=0,1", "trainer.accelerator=cpu", "trainer.max_epochs=1", "data.train_size=128",
                     "data.test_size=64", "callbacks.snn=null", "test=false", f"hydra.sweep.dir={tmp_path}",
                     env_extra={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job, seed in ((0, 0), (1, 1)):
        out = tmp_path / str(job)
        assert f"seed={seed}" in yaml.safe_load((out / ".hydra" / "overrides.yaml").read_text())
        assert {"config.yaml", "hydra.yaml"} <= {p.name for p in (out / ".hydra").iterdir()}
        assert (out / "config.yaml").is_file() and (out / "results.json").is_file()
        log = (out / "train.log").read_text()
        assert f"Seed set to {seed}" in log and f"Run folder: {out}" in log and "val/acc1: " in log
