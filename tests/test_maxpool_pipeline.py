"""A max-pool VGG goes through the user's commands: train.py (whose callback converts it), rmp-zoo export, load and
rmp-zoo eval; the loaded SNN is the exported one."""
from __future__ import annotations

import json

import torch
from conftest import run_train

from rmp_zoo import load
from rmp_zoo.cli import main
from rmp_zoo.conversion import SpikingMaxPool
from rmp_zoo.zoo.folder import METRICS, read_json


def test_max_pool_vgg_trains_exports_loads_and_evaluates(tmp_path, monkeypatch):
    run = tmp_path / "run"
    done = run_train("recipe=smoke", "model.arch=vgg16", "model.pool=max", "trainer.max_epochs=1",
                     "data.train_size=64", "data.test_size=32", "data.eval_batch_size=32", "callbacks.snn.T=[1,2]",
                     "callbacks.snn.calibration_images=32", "logger=none", f"hydra.run.dir={run}",
                     env_extra={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    reported = json.loads((run / "snn" / "test.json").read_text())
    assert reported["conversion"]["maxpool"] == "gate" and [row["T"] for row in reported["snn"]] == [1, 2]

    monkeypatch.chdir(tmp_path)
    assert main(["export", str(run), "--name", "tiny-vgg-max", "--out", "zoo", "--T", "1,2", "--quiet"]) == 0
    snn = load(f"local-dir:{tmp_path / 'zoo'}")
    assert snn.config()["maxpool"] == "gate"
    assert sum(isinstance(m, SpikingMaxPool) for m in snn.modules()) == 5
    exported = read_json(tmp_path / "zoo" / METRICS)
    assert exported["snn"][-1]["top1"] == reported["snn"][-1]["top1"]  # same ANN, settings and test images

    assert main(["eval", f"local-dir:{tmp_path / 'zoo'}", "--T", "1,2", "--json", "eval.json", "--quiet",
                 "--out", "eval"]) == 0
    assert read_json(tmp_path / "eval.json")["snn"] == exported["snn"]
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(snn(x, T=2), snn(x, T=2))  # the pools' running state is reset between simulations
