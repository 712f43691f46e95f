"""Random generator state in the checkpoint, so a resumed run continues exactly where it stopped.

Lightning checkpoints hold the weights, optimiser, LR schedule and callback states, but not the generators: a run
resumed at epoch k would re-seed and draw epoch 0's batch order and augmentations again. With this callback an
interrupted and resumed run trains the same weights as one that never stopped (checked by a test). The states are
stored as tensors and plain Python values, so the checkpoint still loads with ``weights_only=True``.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

KEY = "rng_states"


def collect_rng_states() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                        "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


class RNGState(pl.Callback):
    """Saves the generators with every checkpoint and restores them on resume (older checkpoints: left seeded)."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[KEY] = collect_rng_states()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if KEY in checkpoint:
            restore_rng_states(checkpoint[KEY])
