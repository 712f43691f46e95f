"""``rmp-zoo prepare-data``: write the CIFAR array files from torchvision's download.

Run it on a machine with internet and copy the file to machines without; ``CIFARDataModule`` reads
``<data.root>/<name>.npz`` (the format is in ``cifar.py``).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.error import URLError

from .cifar import NUM_CLASSES, array_format, from_torchvision, save_npz, torchvision_class

PREPARABLE = tuple(NUM_CLASSES)


class DownloadError(RuntimeError):
    """torchvision could not download a dataset; the message says why and what to do instead."""


def prepare_dataset(name: str, out_dir: str | os.PathLike) -> Path:
    """Download ``name`` (cifar10 or cifar100) with torchvision and write ``out_dir/<name>.npz``; returns its path.

    torchvision's archive and extracted files go to a temporary folder inside ``out_dir`` (same disk, removed
    afterwards); the array file appears only once complete. An existing file is replaced.
    """
    if name not in PREPARABLE:
        raise ValueError(f"prepare-data writes {', '.join(PREPARABLE)}, not {name!r} (ImageNet cannot be "
                         "downloaded; point data.root at its ImageFolder trees)")
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    cls = torchvision_class(name)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{name}-download-") as tmp:
        try:
            train = cls(tmp, train=True, download=True)
            test = cls(tmp, train=False, download=True)
        except (OSError, RuntimeError) as err:  # offline: URLError (an OSError); a bad archive: RuntimeError
            why = (" This machine cannot reach the download server (no internet, or a proxy or firewall in the way)."
                   if isinstance(err, URLError) else "")
            raise DownloadError(
                f"torchvision could not download {name} ({err}).{why} Run `rmp-zoo prepare-data {name} DIR` on a "
                f"machine with internet and copy DIR/{name}.npz into this machine's data root (data.root=ROOT for "
                f"train.py, --data-root ROOT for rmp-zoo), or write that file another way: "
                f"{array_format(name)}") from err
        arrays = from_torchvision(train, test)
    return save_npz(out_dir / f"{name}.npz", arrays, NUM_CLASSES[name])
