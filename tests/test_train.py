import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, RECIPES, run_train
from rmp_zoo.training.run import train
from test_data import write_npz

RECIPE_NAMES = sorted(p.stem for p in (RECIPES / "recipe").glob("*.yaml"))


def test_all_recipes_are_provided():
    assert RECIPE_NAMES == ["resnet20_cifar10", "resnet20_cifar100", "resnet34_imagenet", "smoke",
                            "vgg16_cifar10", "vgg16_cifar100", "vgg16_imagenet"]


@pytest.mark.parametrize("recipe", RECIPE_NAMES)
def test_every_recipe_composes_and_runs_fast_dev_run(recipe, compose_recipe, tmp_path, image_folder):
    overrides = [f"recipe={recipe}", "+trainer.fast_dev_run=true", "trainer.accelerator=cpu",
                 "data.batch_size=4", "data.eval_batch_size=4"]
    if "cifar" in recipe:
        classes = 100 if "cifar100" in recipe else 10
        write_npz(tmp_path / f"cifar{classes}.npz", n_train=200, classes=classes)
        overrides += [f"data.root={tmp_path}", "data.val_size=20", "data.download=false"]
    elif "imagenet" in recipe:
        overrides += [f"data.root={image_folder}", "data.num_classes=3", "data.image_size=32", "data.val_size=2",
                      "data.num_workers=0"]
    cfg = compose_recipe(*overrides)
    results = train(cfg)
    assert 0.0 <= results["test/acc1"] <= 1.0
    assert (Path(cfg.paths.output_dir) / "config.yaml").is_file()


def test_override_examples_compose(compose_recipe):
    cfg = compose_recipe("recipe=resnet20_cifar10", "trainer.max_epochs=5", "data.root=/some/dir",
                         "model.activation=qcfs", "trainer.devices=4", "trainer.strategy=ddp")
    assert (cfg.trainer.max_epochs, cfg.data.root, cfg.model.activation) == (5, "/some/dir", "qcfs")
    assert (cfg.trainer.devices, cfg.trainer.strategy, cfg.model.num_classes) == (4, "ddp", 10)


def test_smoke_recipe_learns(compose_recipe):
    cfg = compose_recipe("trainer.accelerator=cpu", "trainer.max_epochs=4")
    results = train(cfg)
    assert results["test/acc1"] > 0.5  # 10 classes: chance is 0.1
    # The recorded training time is the fit's alone, not doubled by testing the best checkpoint (which restores the
    # Timer's state from that checkpoint): doubled, it would be at least 2x the time at the last checkpoint. What the
    # fit does after that checkpoint (the SNN evaluation at the end) adds to it, more on a loaded machine.
    out = Path(cfg.paths.output_dir)
    recorded = json.loads((out / "training.json").read_text())["train_time_s"]
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    at_last_epoch = last["callbacks"]["Timer"]["time_elapsed"]["train"]
    assert at_last_epoch <= recorded < 2 * at_last_epoch


def test_mismatched_num_classes_fails_before_writing(tmp_path):
    out = tmp_path / "run"
    proc = run_train("model.num_classes=7", f"hydra.run.dir={out}")
    assert proc.returncode != 0
    assert "model.num_classes=7 but dataset synthetic has 10 classes" in proc.stderr
    assert not out.exists()


def test_unknown_recipe_lists_the_recipes(tmp_path):
    proc = run_train("recipe=resnet99", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode != 0
    assert "Could not find 'recipe/resnet99'" in proc.stderr and "resnet20_cifar10" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_missing_data_fails_before_writing(tmp_path):
    out = tmp_path / "run"
    proc = run_train("recipe=resnet20_cifar10", f"data.root={tmp_path / 'nodata'}", "data.download=false",
                     f"hydra.run.dir={out}")
    assert proc.returncode != 0 and "prepare-data" in proc.stderr
    assert not out.exists()


def test_ddp_two_processes_on_cpu(tmp_path):
    out = tmp_path / "run"
    proc = run_train("trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp", "trainer.max_epochs=1",
                     "data.train_size=256", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world_size: 2" in proc.stderr + proc.stdout or "MEMBER: 2/2" in proc.stderr + proc.stdout
    assert json.loads((out / "results.json").read_text())["test/acc1"] >= 0.0


def test_killed_run_resumes_exactly(tmp_path):
    """A run killed mid-training and resumed ends with the same weights as one that never stopped: epoch, LR
    schedule, optimiser and the random generators (batch order, augmentation) all come back."""
    epochs, train_size, batch = 5, 384, 32
    common = ["trainer.accelerator=cpu", f"trainer.max_epochs={epochs}", f"data.train_size={train_size}",
              f"data.batch_size={batch}", "callbacks.snn=null", "test=false"]
    env = {"OMP_NUM_THREADS": "1"}  # the same arithmetic in all three processes
    reference = run_train(*common, f"hydra.run.dir={tmp_path / 'reference'}", env_extra=env)
    assert reference.returncode == 0, reference.stderr[-3000:]

    out = tmp_path / "run"
    args = [sys.executable, str(ROOT / "train.py"), *common, f"hydra.run.dir={out}"]
    first = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, **env})
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 900  # generous: a loaded CI machine is slow, an idle one takes seconds
    while time.time() < deadline and first.poll() is None and not (last.exists() and _epoch(last) >= 1):
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = _epoch(last)
    assert 1 <= killed_at < epochs - 1, f"the run was not killed mid-training (last.ckpt epoch {killed_at})"

    proc = run_train(*args[2:], env_extra=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Restoring states from the checkpoint path" in proc.stderr + proc.stdout
    final = torch.load(last, map_location="cpu", weights_only=True)
    expected = torch.load(tmp_path / "reference" / "checkpoints" / "last.ckpt", map_location="cpu",
                          weights_only=True)
    steps_per_epoch = (train_size - train_size // 8) // batch  # 1/8 held out for validation, last batch dropped
    assert final["epoch"] == epochs - 1 and final["global_step"] == epochs * steps_per_epoch
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(final["state_dict"][name], tensor), f"{name} differs after resuming"
    assert final["lr_schedulers"] == expected["lr_schedulers"]
    first_log, resumed_log = sorted((out / "csv").glob("*/metrics.csv"))  # the resume kept the first run's curve
    assert min(_epochs(resumed_log)) == killed_at + 1 and min(_epochs(first_log)) == 0


def _epochs(metrics_csv: Path) -> set[int]:
    with open(metrics_csv, newline="") as f:
        return {int(row["epoch"]) for row in csv.DictReader(f) if row["epoch"]}


def _epoch(path: Path) -> int:
    for _ in range(20):  # the checkpoint may be mid-write
        try:
            return torch.load(path, map_location="cpu", weights_only=True)["epoch"]
        except Exception:
            time.sleep(0.2)
    return -1


@pytest.mark.parametrize("activation", ["qcfs", "clip"])
def test_training_keeps_thresholds_positive(activation):
    """A step that drives θ through zero is projected back to MIN_THRESHOLD, so the ANN stays convertible."""
    from rmp_zoo.conversion import convert
    from rmp_zoo.training import ClassificationModule
    from rmp_zoo.models.activations import MIN_THRESHOLD

    module = ClassificationModule(arch="resnet20", num_classes=4, activation=activation, act_threshold=0.5)
    thresholds = [m.threshold for m in module.model.modules() if hasattr(m, "threshold")]
    optimizer = torch.optim.SGD(thresholds, lr=1.0)
    sum(thresholds).backward()  # gradient 1 and lr 1: every θ falls from 0.5 to -0.5
    optimizer.step()
    assert all(t.item() < 0 for t in thresholds)
    module.model(torch.rand(2, 3, 16, 16))  # the next forward pass, in any training loop, projects θ first
    assert all(t.item() == pytest.approx(MIN_THRESHOLD) for t in thresholds)
    convert(module.model.eval(), threshold="trained")  # converts; with θ < 0 it raised


def test_negative_trained_threshold_names_the_fix():
    from rmp_zoo.conversion import convert
    from rmp_zoo.models import create_model

    model = create_model("resnet20", num_classes=4, activation="qcfs", act_threshold=2.0).eval()
    with torch.no_grad():
        model.layer3[1].act2.threshold.fill_(-1.5)
    with pytest.raises(ValueError, match=r"layer3\.1\.act2.*keeps trained thresholds positive"):
        convert(model, threshold="trained")


def test_checkpoints_are_never_selected_on_the_test_split():
    from pytorch_lightning.callbacks import ModelCheckpoint

    from rmp_zoo.training.run import _check_monitor

    for monitor, split in (("test/acc1", "test"), ("test/acc1", "val"), ("val/acc1", "test")):
        with pytest.raises(ValueError, match="never select on the test split"):
            _check_monitor([ModelCheckpoint(monitor=monitor)], split)
    for monitor, split in (("val/acc1", "val"), ("train/loss", "test"), (None, "test")):
        _check_monitor([ModelCheckpoint(monitor=monitor)], split)


def test_bad_snn_settings_fail_before_training():
    from rmp_zoo import ConversionSettings
    from rmp_zoo.callbacks import SNNEvaluation

    with pytest.raises(ValueError, match="reset by subtraction"):
        SNNEvaluation(conversion={"neuron": "if", "burst": 2})
    with pytest.raises(ValueError, match="unknown conversion setting.*neurons"):
        SNNEvaluation(conversion={"neurons": "if"})
    with pytest.raises(ValueError, match="if:max:0:2"):
        ConversionSettings.parse("if:max:0:2")
    assert ConversionSettings.parse("signed:trained:0.5:2") == ConversionSettings(
        neuron="signed", threshold="trained", initial_potential=0.5, burst=2)
