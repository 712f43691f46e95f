"""In-memory uint8 image datasets (CIFAR arrays, synthetic images) behind one LightningDataModule.

Images stay uint8 until the batch reaches its device; augmentation and normalisation then run batched there
(``on_after_batch_transfer``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import normalize, random_crop_flip
from .base import SplitDataModule, holdout


@dataclass
class ImageArrays:
    """Train/test images as uint8 NHWC arrays with integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]

    def validate(self, source: str, num_classes: int | None = None, image_size: int | None = None) -> None:
        """Check shapes, dtypes and labels; errors name the file and what is wrong with it."""
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
                raise ValueError(f"{source}: x_{split} must be uint8 [N, H, W, 3], got {x.dtype} {list(x.shape)}")
            if image_size is not None and x.shape[1:3] != (image_size, image_size):
                raise ValueError(f"{source}: x_{split} images are {x.shape[1]}x{x.shape[2]}, "
                                 f"expected {image_size}x{image_size}")
            if y.ndim != 1 or len(y) != len(x):
                raise ValueError(f"{source}: y_{split} must be [N] labels matching x_{split} ({len(x)} images), "
                                 f"got shape {list(y.shape)}")
            if len(y) and (y.min() < 0 or y.max() >= len(self.classes)):
                raise ValueError(f"{source}: y_{split} labels span [{y.min()}, {y.max()}] but there are "
                                 f"{len(self.classes)} classes")
        if num_classes is not None and len(self.classes) != num_classes:
            raise ValueError(f"{source}: {len(self.classes)} classes, expected {num_classes}")


class _UInt8Images(Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)  # NCHW view, uint8
        self.y = torch.from_numpy(y.astype(np.int64))

    @property
    def targets(self) -> torch.Tensor:
        """The labels, under torchvision's name (class-balanced subsets read them)."""
        return self.y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


class ArrayDataModule(SplitDataModule):
    """Base for datasets that fit in memory as uint8 arrays; subclasses implement ``load_arrays``."""

    name = "arrays"
    image_size = 32

    def __init__(self, num_classes: int, batch_size: int = 128, val_size: int = 5000, num_workers: int = 0,
                 augment: bool = True, seed: int = 0, eval_batch_size: int | None = None) -> None:
        super().__init__(num_classes, batch_size, eval_batch_size, val_size, num_workers, seed)
        self.augment = augment

    def load_arrays(self) -> ImageArrays:
        raise NotImplementedError

    @property
    def preprocessing(self) -> dict:
        """What a user must do to an image before the model sees it (stored in zoo metadata)."""
        return {"mean": list(self.mean), "std": list(self.std), "size": self.image_size, "scale": "1/255"}

    def setup(self, stage: str | None = None) -> None:
        if self._splits:
            return
        arrays = self.load_arrays()
        arrays.validate(self.name, self.num_classes)
        train_idx, val_idx = holdout(len(arrays.y_train), self.val_size, self.seed)
        self.classes = list(arrays.classes)
        self._splits = {
            "train": _UInt8Images(arrays.x_train[train_idx], arrays.y_train[train_idx]),
            "val": _UInt8Images(arrays.x_train[val_idx], arrays.y_train[val_idx]),
            "test": _UInt8Images(arrays.x_test, arrays.y_test),
        }

    def transform(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """uint8 batch → model input: augmented when training, always normalised."""
        if train and self.augment:
            x = random_crop_flip(x)
        return normalize(x, self.mean, self.std)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch
        return self.transform(x, train=self.trainer is not None and self.trainer.training), y
