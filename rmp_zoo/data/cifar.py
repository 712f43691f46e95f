"""CIFAR-10/100 from an array file (offline machines) or torchvision's download (everyone else)."""
from __future__ import annotations

import os

import numpy as np

from .arrays import ArrayDataModule, ImageArrays

_REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test", "classes")
_STATS = {  # published per-channel statistics of the training sets
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def load_npz(path: str, expected_classes: int | None = None) -> ImageArrays:
    """Read an array file as ``../shared/data/materialize.py`` writes it, checking keys and shapes."""
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in _REQUIRED_KEYS if k not in f.files]
        if missing:
            raise ValueError(f"{path}: missing keys {missing}; an array file needs {list(_REQUIRED_KEYS)} "
                             f"(write one with materialize.py), found {sorted(f.files)}")
        arrays = ImageArrays(*(f[k] for k in _REQUIRED_KEYS[:4]), classes=[str(c) for c in f["classes"]])
    arrays.validate(path, expected_classes, image_size=32)
    return arrays


class CIFARDataModule(ArrayDataModule):
    """CIFAR-10 or CIFAR-100.

    ``root`` is searched for ``<name>.npz`` first; otherwise torchvision's copy is used, downloaded when
    ``download=True``.
    """

    def __init__(self, name: str, root: str, download: bool = True, **kwargs) -> None:
        super().__init__(num_classes=10 if name == "cifar10" else 100, **kwargs)
        self.name = name
        self.root = os.path.expanduser(str(root))
        self.download = download
        self.mean, self.std = _STATS[name]

    def prepare_data(self) -> None:
        if self._npz_path() is None and self.download:
            self._torchvision(train=True), self._torchvision(train=False)

    def _npz_path(self) -> str | None:
        path = self.root if self.root.endswith(".npz") else os.path.join(self.root, f"{self.name}.npz")
        return path if os.path.isfile(path) else None

    def _torchvision(self, train: bool):
        from torchvision import datasets

        cls = datasets.CIFAR10 if self.name == "cifar10" else datasets.CIFAR100
        try:
            return cls(self.root, train=train, download=self.download)
        except (RuntimeError, OSError) as err:  # not found / corrupted, or the download failed
            raise FileNotFoundError(self._missing_message(str(err))) from err

    def _missing_message(self, cause: str) -> str:
        return (f"{self.name} not found under {self.root!r} ({cause}). Either put {self.name}.npz there "
                f"(python ../shared/data/materialize.py {self.root}), or set data.download=true on a machine with "
                "internet so torchvision downloads it.")

    def load_arrays(self) -> ImageArrays:
        path = self._npz_path()
        if path is not None:
            return load_npz(path, self.num_classes)
        if not os.path.isdir(self.root) and not self.download:
            raise FileNotFoundError(self._missing_message("the folder does not exist and download is off"))
        train, test = self._torchvision(True), self._torchvision(False)
        return ImageArrays(np.asarray(train.data), np.asarray(train.targets), np.asarray(test.data),
                           np.asarray(test.targets), list(train.classes))
