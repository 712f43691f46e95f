"""The zoo's one table: every published (or planned) model with where its files live and the facts that go with it.

An entry is "built" once the sha256 of each of its files is pinned in its manifest, ``manifests/<name>.json``
(pinned Hub commit, file hashes and headline accuracy, written by ``rmp-zoo hash DIR [--revision SHA]`` or
``rmp-zoo push``); until then it stays listed, and loading it explains how to make it. A built entry is found in this
repository's ``checkpoints/<name>/`` (where a machine without Hub access publishes it) and, once pushed, also on the
Hub at its pinned commit.
"""
from __future__ import annotations

import difflib
import fnmatch
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import ModelNotFoundError
from .folder import LOAD_FILES

HUB_ORG = "rmp-zoo"
MANIFESTS = Path(__file__).with_name("manifests")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

DATA_NEEDED = {
    "cifar10": "CIFAR-10: DATA_ROOT/cifar10.npz (`rmp-zoo prepare-data cifar10 DATA_ROOT`), or torchvision's copy "
               "in DATA_ROOT (downloaded with data.download=true when training)",
    "cifar100": "CIFAR-100: DATA_ROOT/cifar100.npz (`rmp-zoo prepare-data cifar100 DATA_ROOT`), or torchvision's "
                "copy in DATA_ROOT (downloaded with data.download=true when training)",
    "imagenet": "ImageNet-1k (ILSVRC2012) as ImageFolder trees DATA_ROOT/train and DATA_ROOT/val; it cannot be "
                "downloaded automatically",
}


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: its Hub repo, the pinned commit and file hashes once built, and how it is made."""

    name: str
    architecture: str
    dataset: str
    recipe: str  # the command that trains the ANN
    data: str  # what data training and evaluation need
    hub_id: str
    revision: str | None = None  # pinned 40-hex commit of hub_id; None while not on the Hub
    sha256: Mapping[str, str] = field(default_factory=dict)  # file name -> sha256 of every published file
    ann_top1: float | None = None  # percent, from metrics.json
    snn_top1: Mapping[int, float] = field(default_factory=dict)  # T -> percent, from metrics.json

    def __post_init__(self) -> None:
        if self.revision is not None and not _COMMIT.match(self.revision):
            raise ValueError(f"{self.name}: revision must be a 40-hex commit id, got {self.revision!r}")
        if self.revision is not None and not self.sha256:
            raise ValueError(f"{self.name}: a pinned revision needs the sha256 of its files")
        if not self.sha256:
            return
        missing = [f for f in LOAD_FILES if f not in self.sha256]
        bad = [f for f, h in self.sha256.items() if not _SHA256.match(h)]
        if missing or bad:
            raise ValueError(f"{self.name}: sha256 lacks {missing} or has malformed hashes for {bad}; "
                             "copy them from `rmp-zoo hash DIR`")

    @property
    def built(self) -> bool:
        return bool(self.sha256)

    @property
    def on_hub(self) -> bool:
        return self.revision is not None


def _entry(name: str, architecture: str, dataset: str, recipe: str) -> ZooEntry:
    return ZooEntry(name, architecture, dataset, f"python train.py recipe={recipe}", DATA_NEEDED[dataset],
                    f"{HUB_ORG}/{name}", **read_manifest(name))


def read_manifest(name: str, folder: Path = MANIFESTS) -> dict[str, Any]:
    """The published facts of ``name`` (revision, sha256, ann_top1, snn_top1), or {} while it is not built."""
    path = folder / f"{name}.json"
    if not path.is_file():
        return {}
    manifest = json.loads(path.read_text(encoding="utf-8"))
    return {"revision": manifest["revision"], "sha256": manifest["sha256"], "ann_top1": manifest["ann_top1"],
            "snn_top1": {int(t): acc for t, acc in manifest["snn_top1"].items()}}


def write_manifest(name: str, revision: str | None, sha256: Mapping[str, str], metrics: Mapping[str, Any],
                   folder: Path = MANIFESTS) -> Path:
    """Pin a published folder: ``folder/<name>.json``, checked, then written whole or not at all. ``revision`` is the
    Hub commit it was pushed as, or None for a folder published in this repository's ``checkpoints/`` only."""
    snn = {row["T"]: round(row["top1"], 2) for row in metrics["snn"]}
    ZooEntry(name, "", "", "", "", "", revision, dict(sha256), metrics["ann_top1"], snn)  # fails on malformed pins
    manifest = {"name": name, "revision": revision, "sha256": dict(sorted(sha256.items())),
                "ann_top1": round(metrics["ann_top1"], 2), "snn_top1": {str(t): acc for t, acc in snn.items()}}
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(manifest, indent=2) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, folder / f"{name}.json")
    return folder / f"{name}.json"


# name, architecture, dataset, recipe (what follows `python train.py recipe=`); hashes live in manifests/NAME.json.
ZOO: dict[str, ZooEntry] = {e.name: e for e in (
    _entry("resnet20-cifar10-rmp", "resnet20", "cifar10", "resnet20_cifar10"),
    _entry("resnet20-cifar100-rmp", "resnet20", "cifar100", "resnet20_cifar100"),
    _entry("vgg16-cifar10-rmp", "vgg16", "cifar10", "vgg16_cifar10"),
    _entry("vgg16-cifar100-rmp", "vgg16", "cifar100", "vgg16_cifar100"),
    _entry("vgg16-imagenet-rmp", "vgg16", "imagenet", "vgg16_imagenet"),
    _entry("resnet34-imagenet-rmp", "resnet34", "imagenet", "resnet34_imagenet"),
)}


def list_models(pattern: str = "*") -> list[str]:
    """Names of zoo models matching a shell-style ``pattern`` (``"*cifar10*"``), built or not."""
    return sorted(n for n in ZOO if fnmatch.fnmatch(n, pattern))


def get_entry(name: str) -> ZooEntry:
    """The registry entry ``name``; an unknown name raises an error that suggests the closest ones."""
    if name not in ZOO:
        close = difflib.get_close_matches(name, ZOO, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelNotFoundError(f"unknown zoo model {name!r}.{hint} Available: {', '.join(list_models())} "
                                 "(or load your own with local-dir:PATH or hf-hub:ORG/REPO)")
    return ZOO[name]
