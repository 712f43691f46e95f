"""What every datamodule here shares: a seeded validation hold-out from the training set, the three loaders, and
normalised, unaugmented batches for use outside a Trainer (calibration, SNN evaluation), where a ``limit`` takes a
seeded class-balanced subset."""
from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .augment import normalize


def holdout(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, val) indices: a fixed, seeded ``val_size`` slice of ``n`` training samples is held out, so
    model selection never looks at the test split."""
    if not 0 <= val_size < n:
        raise ValueError(f"val_size={val_size} must be in [0, {n})")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[val_size:]), np.sort(order[:val_size])


def balanced_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """Every index of ``labels`` in a seeded order whose every prefix is class-balanced.

    Round r holds the r-th image of each class (images shuffled within their class), the classes of a round in a
    random order; a class with fewer images drops out once it runs out. So the first N indices hold N / C images of
    each of C classes (give or take one), and a smaller N's images are part of a larger N's.
    """
    labels = np.asarray(labels)
    shuffled = np.random.default_rng(seed).permutation(len(labels))
    by_class = np.argsort(labels[shuffled], kind="stable")  # positions in `shuffled`, grouped by class
    sorted_labels = labels[shuffled][by_class]
    rank = np.empty(len(labels), dtype=np.int64)  # how many images of its class come before it in `shuffled`
    rank[by_class] = np.arange(len(labels)) - np.searchsorted(sorted_labels, sorted_labels, side="left")
    return shuffled[np.lexsort((np.arange(len(labels)), rank))]


def labels_of(dataset: Dataset) -> np.ndarray | None:
    """A dataset's labels without loading its images: ``targets`` (torchvision's name), through ``Subset``s."""
    if isinstance(dataset, Subset):
        labels = labels_of(dataset.dataset)
        return None if labels is None else labels[np.asarray(dataset.indices, dtype=np.int64)]
    targets = getattr(dataset, "targets", None)
    return None if targets is None else np.asarray(targets)


class SplitDataModule(pl.LightningDataModule):
    """Subclasses fill ``self._splits`` ({"train", "val", "test"} → Dataset) in ``setup``; where the training
    split's dataset augments, they also put the same images, unaugmented, in ``self._eval_splits["train"]``.

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
        self._eval_splits: dict[str, Dataset] = {}

    def _dataloader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size if shuffle else self.eval_batch_size,
                          shuffle=shuffle, drop_last=shuffle, num_workers=self.num_workers,
                          pin_memory=self.pin_memory and torch.cuda.is_available(),
                          persistent_workers=self.num_workers > 0)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        return self._dataloader(self._splits[split], shuffle)

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
        """Normalised, unaugmented (x, y) batches of ``split`` ("train", "val" or "test").

        Without a ``limit``, or with one that covers the split, the whole split comes in its stored order. A smaller
        ``limit`` takes ``limit`` images class-balanced and in a seeded order (``balanced_order``: every batch mixes
        the classes, and the same seed always gives the same images), so calibration and quick evaluations see
        every class even where the split is stored class by class (ImageFolder trees).
        """
        self.setup()
        if split not in self._splits:
            raise ValueError(f"unknown split {split!r}; {self.name} has {', '.join(self._splits)}")
        dataset = self._eval_splits.get(split, self._splits[split])
        if limit is not None and limit < len(dataset):
            labels = labels_of(dataset)
            order = (np.random.default_rng(self.seed).permutation(len(dataset)) if labels is None
                     else balanced_order(labels, self.seed))
            dataset = Subset(dataset, order[:max(limit, 0)].tolist())
        stats = (self.mean, self.std) if self.normalize_in_batches else (None, None)
        return NormalizedBatches(self._dataloader(dataset, shuffle=False), *stats)


class NormalizedBatches:
    """Re-iterable view of a loader that yields normalised float batches (``mean=None``: already normalised)."""

    def __init__(self, loader: DataLoader, mean, std) -> None:
        self.loader, self.mean, self.std = loader, mean, std

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield (x if self.mean is None else normalize(x, self.mean, self.std)), y
