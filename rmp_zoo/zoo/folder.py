"""The zoo folder format: what a published model consists of, and how each file is written, checked and read.

A folder (``checkpoints/<name>/``, an export, or a Hub snapshot) holds

- ``model.safetensors``: the ANN's state dict under ``ann.*``, each spiking layer's threshold as a scalar under
  ``snn_threshold.<layer>`` and, after bias correction, the shift of the bias feeding it under
  ``snn_bias_shift.<layer>``. Safetensors, so loading never unpickles anything.
- ``config.json``: how to rebuild the ANN (architecture, num_classes, create_model kwargs), how it was converted
  (``SpikingNetwork.config()``), preprocessing, class names and dataset.
- ``metrics.json``: ANN and per-T SNN top-1 (percent), spikes and SynOps per image, the images counted, and the
  command and machine that measured them.
- ``accuracy_vs_T.png`` and ``README.md`` (the model card), for people; loading does not need them.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import IncompleteFolderError, IntegrityError

WEIGHTS, CONFIG, METRICS, CARD, PLOT = "model.safetensors", "config.json", "metrics.json", "README.md", \
    "accuracy_vs_T.png"
LOAD_FILES = (CONFIG, WEIGHTS, METRICS)  # what load() needs; the card and plot are for people
FORMAT_VERSION = 1
ANN_PREFIX, THRESHOLD_PREFIX, SHIFT_PREFIX = "ann.", "snn_threshold.", "snn_bias_shift."


def library_version() -> str:
    """The installed rmp_zoo version (from the package metadata: the zoo does not import the package root)."""
    try:
        return importlib.metadata.version("rmp-zoo")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_folder(folder: str | Path) -> dict[str, str]:
    """sha256 of every file in ``folder`` (hidden files excluded), as the registry pins them."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def require_files(folder: str | Path, files: tuple[str, ...] = LOAD_FILES) -> None:
    """Fail, naming every missing file, unless ``folder`` holds all ``files``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise IncompleteFolderError(f"{folder} is not a folder; a zoo folder is made by `rmp-zoo export`")
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise IncompleteFolderError(f"{folder} is missing {', '.join(missing)}; a zoo folder needs "
                                    f"{', '.join(files)}. Re-export it with `rmp-zoo export` or download it again.")


def check_file(path: str | Path, sha256: str | None = None) -> None:
    """Check ``path`` against its pinned ``sha256``, or, with no hash to go by, that it parses completely."""
    path = Path(path)
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256:
            raise IntegrityError(f"{path.name} has sha256 {actual} but the registry pins {sha256}: the file is "
                                 "corrupted, truncated or not the published one.")
    elif path.suffix == ".json":
        read_json(path)
    elif path.suffix == ".safetensors":
        try:
            with safe_open(str(path), "pt"):  # parses the header and checks the data covers the whole file
                pass
        except (SafetensorError, OSError) as err:
            raise IncompleteFolderError(f"{path} cannot be read as safetensors ({err}); the file is truncated or "
                                        "corrupted: download or export it again") from err


def read_json(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IncompleteFolderError(f"{path} is not valid JSON ({err}); the file is truncated or corrupted: "
                                    "download or export it again") from err


def write_json(path: str | Path, obj: Mapping[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def write_weights(path: str | Path, ann_state: Mapping[str, torch.Tensor], thresholds: Mapping[str, float],
                  bias_shifts: Mapping[str, torch.Tensor] | None = None) -> None:
    """Save the ANN state dict, the SNN thresholds and any bias-correction shifts into one safetensors file."""
    tensors = {ANN_PREFIX + k: v.detach().cpu().contiguous().clone() for k, v in ann_state.items()}
    tensors.update({THRESHOLD_PREFIX + k: torch.tensor(float(v)) for k, v in thresholds.items()})
    tensors.update({SHIFT_PREFIX + k: v.detach().cpu().contiguous().clone() for k, v in (bias_shifts or {}).items()})
    save_file(tensors, str(path), metadata={"format": "pt", "rmp_zoo_format": str(FORMAT_VERSION)})


def read_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[
        dict[str, torch.Tensor], dict[str, float], dict[str, torch.Tensor]]:
    """The ANN state dict, the thresholds and the bias shifts from ``model.safetensors`` (never unpickles)."""
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as err:
        raise IncompleteFolderError(f"{path} cannot be read as safetensors ({err}); the file is truncated or "
                                    "corrupted: download or export it again") from err
    state = {k[len(ANN_PREFIX):]: v for k, v in tensors.items() if k.startswith(ANN_PREFIX)}
    thresholds = {k[len(THRESHOLD_PREFIX):]: float(v) for k, v in tensors.items() if k.startswith(THRESHOLD_PREFIX)}
    shifts = {k[len(SHIFT_PREFIX):]: v for k, v in tensors.items() if k.startswith(SHIFT_PREFIX)}
    if not state or not thresholds:
        raise IncompleteFolderError(f"{path} holds no {ANN_PREFIX}* weights or no {THRESHOLD_PREFIX}* thresholds; "
                                    "it was not written by `rmp-zoo export`")
    return state, thresholds, shifts
