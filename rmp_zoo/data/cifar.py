"""CIFAR-10/100 from an array file (any machine, offline ones included) or torchvision's copy (downloaded by
torchvision where there is internet).

The array file ``<root>/<name>.npz`` is a NumPy ``.npz`` archive (``numpy.savez``, nothing pickled) holding

    x_train  uint8 [50000, 32, 32, 3]   images, N × height × width × RGB, in the official release's order
    y_train  integer [50000]            labels 0 … C-1
    x_test   uint8 [10000, 32, 32, 3]
    y_test   integer [10000]
    classes  str [C]                    class names, index = label (C = 10 or 100)

Other keys are ignored. ``rmp-zoo prepare-data NAME DIR`` writes it from torchvision's download (``prepare.py``).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.error import URLError

import numpy as np

from .arrays import ArrayDataModule, ImageArrays

_REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test", "classes")
_STATS = {  # published per-channel statistics of the training sets
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}


def array_format(name: str) -> str:
    """The array file's layout in one sentence, for error messages."""
    return (f"{name}.npz is a NumPy .npz (numpy.savez, nothing pickled) with x_train uint8 [50000, 32, 32, 3] "
            f"(N, H, W, RGB), y_train int [50000], x_test uint8 [10000, 32, 32, 3], y_test int [10000] and "
            f"classes str [{NUM_CLASSES[name]}] (names, index = label).")


def load_npz(path: str, expected_classes: int | None = None) -> ImageArrays:
    """Read an array file (the format in this module's docstring), checking keys and shapes."""
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in _REQUIRED_KEYS if k not in f.files]
        if missing:
            raise ValueError(f"{path}: missing keys {missing}; an array file needs {list(_REQUIRED_KEYS)} "
                             f"(`rmp-zoo prepare-data` writes one), found {sorted(f.files)}")
        arrays = ImageArrays(*(f[k] for k in _REQUIRED_KEYS[:4]), classes=[str(c) for c in f["classes"]])
    arrays.validate(path, expected_classes, image_size=32)
    return arrays


def save_npz(path: str | os.PathLike, arrays: ImageArrays, expected_classes: int | None = None) -> Path:
    """Write ``arrays`` as the array file ``load_npz`` reads. The file appears complete or not at all: it is written
    next to ``path`` under a temporary name and renamed into place once flushed to disk."""
    path = Path(path)
    arrays.validate(str(path), expected_classes, image_size=32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, x_train=np.ascontiguousarray(arrays.x_train), y_train=arrays.y_train.astype(np.int64),
                     x_test=np.ascontiguousarray(arrays.x_test), y_test=arrays.y_test.astype(np.int64),
                     classes=np.array(arrays.classes, dtype=str))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the result is an ordinary data file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def torchvision_class(name: str):
    from torchvision import datasets

    return {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]


def from_torchvision(train, test) -> ImageArrays:
    """The arrays of torchvision's CIFAR train and test datasets."""
    return ImageArrays(np.asarray(train.data, dtype=np.uint8), np.asarray(train.targets, dtype=np.int64),
                       np.asarray(test.data, dtype=np.uint8), np.asarray(test.targets, dtype=np.int64),
                       [str(c) for c in train.classes])


class CIFARDataModule(ArrayDataModule):
    """CIFAR-10 or CIFAR-100.

    ``root`` is searched for the array file ``<name>.npz`` first (``root`` may also name the file itself), then for
    torchvision's copy, which torchvision downloads into ``root`` when ``download=True``.
    """

    def __init__(self, name: str, root: str, download: bool = True, **kwargs) -> None:
        super().__init__(num_classes=NUM_CLASSES[name], **kwargs)
        self.name = name
        self.root = os.path.expanduser(str(root))
        self.download = download
        self.mean, self.std = _STATS[name]

    def prepare_data(self) -> None:
        if self._npz_path() is None and self.download:
            self._torchvision(train=True), self._torchvision(train=False)

    def _expected_npz(self) -> str:
        return self.root if self.root.endswith(".npz") else os.path.join(self.root, f"{self.name}.npz")

    def _npz_path(self) -> str | None:
        path = self._expected_npz()
        return path if os.path.isfile(path) else None

    def _torchvision(self, train: bool):
        cls = torchvision_class(self.name)
        copy = os.path.join(self.root, cls.base_folder)
        if not self.download and not os.path.isdir(copy):
            raise FileNotFoundError(self._missing_message())
        try:
            return cls(self.root, train=train, download=self.download)
        except (RuntimeError, OSError) as err:  # the download failed (offline: URLError), or the copy is broken
            raise FileNotFoundError(self._missing_message(err)) from err

    def _missing_message(self, err: BaseException | None = None) -> str:
        expected = self._expected_npz()
        copy = os.path.join(self.root, torchvision_class(self.name).base_folder)
        make = (f"On a machine with internet, `rmp-zoo prepare-data {self.name} DIR` writes DIR/{self.name}.npz; "
                f"copy it to {expected}.")
        if self.download:
            offline = ", as happens on a machine without internet" if isinstance(err, URLError) else ""
            return (f"{self.name} not found: there is no {expected}, and torchvision could not download it into "
                    f"{self.root} ({err}){offline}. {make} {array_format(self.name)}")
        found = (f"torchvision's copy in {copy} is incomplete or corrupted ({err})" if err is not None
                 else f"there is neither {expected} nor torchvision's copy ({copy})")
        return (f"{self.name} not found: {found}, and downloading is off. {make} Or turn downloading on where "
                f"there is internet (data.download=true in train.py). {array_format(self.name)}")

    def load_arrays(self) -> ImageArrays:
        path = self._npz_path()
        if path is not None:
            return load_npz(path, self.num_classes)
        return from_torchvision(self._torchvision(True), self._torchvision(False))
