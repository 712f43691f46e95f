"""ImageNet (or any ImageFolder tree with ``train/`` and ``val/``) with timm's transforms."""
from __future__ import annotations

import os

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader, Subset

from .arrays import NormalizedBatches

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNetDataModule(pl.LightningDataModule):
    """``root/train`` supplies training and a seeded held-out validation slice; ``root/val`` is the test split."""

    name = "imagenet"
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, root: str, num_classes: int = 1000, image_size: int = 224, batch_size: int = 256,
                 val_size: int = 10000, num_workers: int = 8, seed: int = 0, eval_batch_size: int | None = None,
                 download: bool = False) -> None:
        super().__init__()
        self.root = os.path.expanduser(str(root))
        self.num_classes, self.image_size = num_classes, image_size
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.val_size, self.num_workers, self.seed = val_size, num_workers, seed
        self.classes: list[str] = []
        self._splits: dict = {}

    @property
    def preprocessing(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "size": self.image_size,
                "resize": int(round(self.image_size / 0.875)), "scale": "1/255"}

    def setup(self, stage: str | None = None) -> None:
        if self._splits:
            return
        from timm.data import create_transform
        from torchvision.datasets import ImageFolder

        for split in ("train", "val"):
            if not os.path.isdir(os.path.join(self.root, split)):
                raise FileNotFoundError(f"ImageNet root {self.root!r} has no {split}/ folder. ImageNet cannot be "
                                        "downloaded automatically: set data.root to a folder with train/ and val/ "
                                        "ImageFolder trees (one sub-folder per class).")
        train_tf = create_transform(self.image_size, is_training=True, mean=self.mean, std=self.std)
        eval_tf = create_transform(self.image_size, is_training=False, mean=self.mean, std=self.std)
        train_aug = ImageFolder(os.path.join(self.root, "train"), transform=train_tf)
        train_eval = ImageFolder(os.path.join(self.root, "train"), transform=eval_tf)
        test = ImageFolder(os.path.join(self.root, "val"), transform=eval_tf)
        if len(train_aug.classes) != self.num_classes:
            raise ValueError(f"{self.root}/train has {len(train_aug.classes)} classes but data.num_classes="
                             f"{self.num_classes}; set data.num_classes and model.num_classes to match")
        if test.classes != train_aug.classes:
            raise ValueError(f"{self.root}: train/ and val/ have different class folders")
        if not 0 <= self.val_size < len(train_aug):
            raise ValueError(f"val_size={self.val_size} must be in [0, {len(train_aug)})")
        order = np.random.default_rng(self.seed).permutation(len(train_aug))
        self.classes = list(train_aug.classes)
        self._splits = {"train": Subset(train_aug, np.sort(order[self.val_size:]).tolist()),
                        "val": Subset(train_eval, np.sort(order[: self.val_size]).tolist()),
                        "test": test}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        return DataLoader(self._splits[split], batch_size=self.batch_size if shuffle else self.eval_batch_size,
                          shuffle=shuffle, drop_last=shuffle, num_workers=self.num_workers, pin_memory=True,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def eval_batches(self, split: str = "test", limit: int | None = None) -> NormalizedBatches:
        """(x, y) batches of ``split`` for use outside a Trainer; timm's eval transform already normalised them."""
        return NormalizedBatches(self._loader(split, shuffle=False), None, None, limit)
