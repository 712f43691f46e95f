"""Datasets as LightningDataModules, built by name."""
from __future__ import annotations

import difflib

import pytorch_lightning as pl

from .arrays import ArrayDataModule, ImageArrays
from .base import NormalizedBatches, SplitDataModule, balanced_order
from .cifar import CIFARDataModule, load_npz, save_npz
from .imagenet import ImageNetDataModule
from .prepare import DownloadError, prepare_dataset
from .synthetic import SyntheticDataModule

DATASETS = ("cifar10", "cifar100", "imagenet", "synthetic")


def create_datamodule(name: str, num_classes: int | None = None, **kwargs) -> pl.LightningDataModule:
    """Build the datamodule for dataset ``name``; ``num_classes``, when given, must agree with the dataset."""
    if name in ("cifar10", "cifar100"):
        dm = CIFARDataModule(name, **kwargs)
    elif name == "imagenet":
        dm = ImageNetDataModule(num_classes=num_classes or 1000, **kwargs)
    elif name == "synthetic":
        dm = SyntheticDataModule(num_classes=num_classes or 10, **kwargs)
    else:
        close = difflib.get_close_matches(name, DATASETS, n=2)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}.{hint} Available: {', '.join(DATASETS)}")
    if num_classes is not None and dm.num_classes != num_classes:
        raise ValueError(f"dataset {name} has {dm.num_classes} classes but num_classes={num_classes} was asked for")
    return dm


__all__ = ["create_datamodule", "DATASETS", "ArrayDataModule", "CIFARDataModule", "ImageNetDataModule",
           "SyntheticDataModule", "SplitDataModule", "ImageArrays", "NormalizedBatches", "load_npz", "save_npz",
           "balanced_order", "prepare_dataset", "DownloadError"]
