"""ImageNet (or any ImageFolder tree with ``train/`` and ``val/``) with timm's transforms."""
from __future__ import annotations

import os

from torch.utils.data import Subset

from .base import SplitDataModule, holdout

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNetDataModule(SplitDataModule):
    """``root/train`` supplies training and a seeded held-out validation slice; ``root/val`` is the test split.

    Only the training loader augments; ``eval_batches("train")`` (calibration) reads the same training images with
    the evaluation transform (resize, centre crop)."""

    name = "imagenet"
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    normalize_in_batches = False  # timm's transforms normalise each image
    pin_memory = True

    def __init__(self, root: str, num_classes: int = 1000, image_size: int = 224, batch_size: int = 256,
                 val_size: int = 10000, num_workers: int = 8, seed: int = 0, eval_batch_size: int | None = None,
                 download: bool = False) -> None:  # ImageNet is never downloaded; kept so every dataset takes it
        super().__init__(num_classes, batch_size, eval_batch_size, val_size, num_workers, seed)
        self.root = os.path.expanduser(str(root))
        self.image_size = image_size

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
        train_idx, val_idx = holdout(len(train_aug), self.val_size, self.seed)
        self.classes = list(train_aug.classes)
        self._splits = {"train": Subset(train_aug, train_idx.tolist()), "val": Subset(train_eval, val_idx.tolist()),
                        "test": test}
        self._eval_splits = {"train": Subset(train_eval, train_idx.tolist())}  # calibration: not augmented
