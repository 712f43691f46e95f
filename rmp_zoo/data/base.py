"""What every datamodule here shares: a seeded validation hold-out from the training set, the three loaders, and
normalised batches for use outside a Trainer (calibration, SNN evaluation)."""
from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from .augment import normalize


def holdout(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, val) indices: a fixed, seeded ``val_size`` slice of ``n`` training samples is held out, so
    model selection never looks at the test split."""
    if not 0 <= val_size < n:
        raise ValueError(f"val_size={val_size} must be in [0, {n})")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[val_size:]), np.sort(order[:val_size])


class SplitDataModule(pl.LightningDataModule):
    """Subclasses fill ``self._splits`` ({"train", "val", "test"} → Dataset) in ``setup``.

    ``normalize_in_batches`` says whether the datasets yield uint8 images that are normalised per batch (arrays) or
    ready model inputs (ImageFolder with timm transforms).
    """

    name = "base"
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    normalize_in_batches = True
    pin_memory = False

    def __init__(self, num_classes: int, batch_size: int, eval_batch_size: int | None, val_size: int,
                 num_workers: int, seed: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.val_size, self.num_workers, self.seed = val_size, num_workers, seed
        self.classes: list[str] = []
        self._splits: dict[str, Dataset] = {}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        return DataLoader(self._splits[split], batch_size=self.batch_size if shuffle else self.eval_batch_size,
                          shuffle=shuffle, drop_last=shuffle, num_workers=self.num_workers,
                          pin_memory=self.pin_memory and torch.cuda.is_available(),
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    @property
    def monitor_split(self) -> str:
        """What the validation loop evaluates: the held-out split, or, with ``val_size=0`` (a final run on every
        training image), the test split, so the run still has a learning curve. Metrics carry this name."""
        return "val" if self.val_size > 0 else "test"

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.monitor_split, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def eval_batches(self, split: str = "test", limit: int | None = None) -> NormalizedBatches:
        """Normalised, unaugmented (x, y) batches of ``split``, in order, optionally the first ``limit`` images."""
        stats = (self.mean, self.std) if self.normalize_in_batches else (None, None)
        return NormalizedBatches(self._loader(split, shuffle=False), *stats, limit)


class NormalizedBatches:
    """Re-iterable view of a loader that yields normalised float batches (``mean=None``: already normalised),
    optionally of the first ``limit`` images only."""

    def __init__(self, loader: DataLoader, mean, std, limit: int | None = None) -> None:
        self.loader, self.mean, self.std, self.limit = loader, mean, std, limit

    def __len__(self) -> int:
        n = len(self.loader.dataset) if self.limit is None else min(self.limit, len(self.loader.dataset))
        return -(-n // self.loader.batch_size)

    def __iter__(self):
        seen = 0
        for x, y in self.loader:
            if self.limit is not None:
                if seen >= self.limit:
                    return
                x, y = x[: self.limit - seen], y[: self.limit - seen]
            seen += len(y)
            yield (x if self.mean is None else normalize(x, self.mean, self.std)), y
