"""Shared fixtures: Hydra composition of the real recipes, tiny generated ImageFolder trees, and the fused kernels
compiled or eager."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for modules of tiny-tensor tests: they gain nothing from intra-op threads, and on a busy
    machine the thread pool stalls badly."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=["compiled", "eager"])
def kernels(request, monkeypatch):
    """Each fused-kernel test twice: compiled with torch.compile, and eager (``RMP_ZOO_COMPILE=0``); both kernel
    caches start empty, so the setting takes effect."""
    from rmp_zoo.conversion import neuron_kernel
    from rmp_zoo.models import qcfs_kernel

    monkeypatch.setenv("RMP_ZOO_COMPILE", "1" if request.param == "compiled" else "0")
    for module in (qcfs_kernel, neuron_kernel):
        monkeypatch.setattr(module, "_KERNELS", None)
    yield request.param
    for module in (qcfs_kernel, neuron_kernel):
        monkeypatch.setattr(module, "_KERNELS", None)


@pytest.fixture
def compose_recipe(tmp_path):
    """Compose ``recipes/train.yaml`` with overrides, the way ``train.py`` does, writing into ``tmp_path``."""

    def _compose(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(RECIPES), version_base="1.3"):
            cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]  # train.py never sees it either
        cfg.paths.output_dir = str(tmp_path / "run")
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def isolated_zoo(tmp_path, monkeypatch):
    """No test sees the repository's checkpoints/, a user's RMP_ZOO_HOME or their Hub cache; the Hub client points
    at a closed port until a test starts one (``hub``)."""
    import rmp_zoo.zoo.loader as zoo_load
    from hub_server import point_client_at

    monkeypatch.setattr(zoo_load, "REPO_CHECKPOINTS", tmp_path / "checkpoints")
    monkeypatch.delenv("RMP_ZOO_HOME", raising=False)
    point_client_at("http://127.0.0.1:9", tmp_path / "hf_home", monkeypatch)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A Hub on 127.0.0.1 (tests/hub_server.py) that the real huggingface_hub client talks to."""
    from hub_server import HubServer, point_client_at

    with HubServer() as server:
        point_client_at(server.url, tmp_path / "hf_home", monkeypatch)
        yield server


def make_image_folder(root: Path, classes: int = 3, per_class: int = 4, size: int = 40) -> Path:
    """Write ``root/train`` and ``root/val`` ImageFolder trees of random JPEGs."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "imagenet")


def run_train(*args: str, cwd: Path = ROOT, timeout: float = 600, env_extra: dict | None = None):
    """Run ``python train.py`` as a user would; returns the CompletedProcess."""
    import subprocess

    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)
