"""The zoo's one table: every published (or planned) model with where its files live and the facts that go with it.

An entry is "built" once the sha256 of each of its files is pinned; until then it stays listed, and loading it
explains how to make it. A built entry is found in this repository's ``checkpoints/<name>/`` (where a machine without
Hub access publishes it) and, once pushed, also on the Hub at its pinned commit. ``rmp-zoo hash DIR [--revision
SHA]`` prints the arguments that turn a planned entry into a built one (see ``published_entry_args``).
"""
from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ModelNotFoundError
from .folder import LOAD_FILES

HUB_ORG = "rmp-zoo"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

DATA_NEEDED = {
    "cifar10": "CIFAR-10: DATA_ROOT/cifar10.npz, or torchvision's copy in DATA_ROOT (downloaded with "
               "data.download=true when training)",
    "cifar100": "CIFAR-100: DATA_ROOT/cifar100.npz, or torchvision's copy in DATA_ROOT (downloaded with "
                "data.download=true when training)",
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


def _entry(name: str, architecture: str, dataset: str, recipe: str, **published: Any) -> ZooEntry:
    return ZooEntry(name, architecture, dataset, f"python train.py recipe={recipe}", DATA_NEEDED[dataset],
                    f"{HUB_ORG}/{name}", **published)


# The published ResNet-20 entries were trained on one H100 before the recipes became the zoo's recipes; these are the
# overrides that make today's recipe files train what they trained.
_SESSION4_H100 = ("data.batch_size=256 data.val_size=5000 model.lr=0.2 model.scheduler=onecycle "
                  "model.warmup_fraction=0.15 model.act_threshold=2.0 trainer.precision=32-true "
                  "callbacks.checkpoint.monitor=val/acc1")

# To publish an entry, add the keyword arguments that `rmp-zoo hash checkpoints/NAME [--revision SHA]` prints.
ZOO: dict[str, ZooEntry] = {e.name: e for e in (
    _entry("resnet20-cifar10-rmp", "resnet20", "cifar10",
           "resnet20_cifar10 " + _SESSION4_H100 + " trainer.max_epochs=58 hydra.run.dir=outputs/zoo/resnet20_cifar10",
           sha256={'README.md': '6bdfac7c0b852f4c798e960efc8f600c725f26200c82ae5f4c2c614e1b6d426e', 'accuracy_vs_T.png': 'e7cdf117478e5098c586683e9ccf80d8b4693107427291e5b2f5fad2ab719829', 'config.json': '4d56b3fe3212c4b40d34555b383b7a4c7ae3a32060dff633592967821967c11f', 'metrics.json': 'bed3de59dade32753cef459a1f33f62659f04f5136471be9a4e6fbc9fd5ce675', 'model.safetensors': 'ac6da368c0887cfe2f365224b0f83b8e98ef25a9cc6e35528fc779b858b672d5'},
           ann_top1=88.13,
           snn_top1={1: 42.81, 2: 53.93, 4: 65.28, 8: 76.94, 16: 84.99, 32: 87.94, 64: 89.08, 128: 89.27}),
    _entry("resnet20-cifar100-rmp", "resnet20", "cifar100",
           "resnet20_cifar100 " + _SESSION4_H100 + " trainer.max_epochs=40 hydra.run.dir=outputs/zoo/resnet20_cifar100",
           sha256={'README.md': '664b228e37dfb57c5e75bc121c62c9d8a47c53147fd720e3a4a02c99177dc89a', 'accuracy_vs_T.png': 'fd328644983753bcf7bc757d9f2ee7eb56563ccabd1974fbc6ce3ed50b460823', 'config.json': '2a46de085910f32a2845066566f74d3b9fdf2d2b5e0037b42c9e4134d2c0cb72', 'metrics.json': '5689c2ef9cd1e07beabdf9b0c2ff38abdd5ea6544cc80120480d4f4d5f20f5de', 'model.safetensors': '8e0c6fd1673fcfc212cea6732eea62eb46a1c737185581a49152608675f033f5'},
           ann_top1=62.41,
           snn_top1={1: 4.87, 2: 7.0, 4: 13.3, 8: 32.81, 16: 53.32, 32: 61.21, 64: 63.29, 128: 63.43}),
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


def published_entry_args(revision: str | None, sha256: Mapping[str, str], metrics: Mapping[str, Any]) -> str:
    """The keyword arguments to add to an entry's ``_entry(...)`` line once its folder is committed to
    ``checkpoints/`` (``revision`` None) or pushed to the Hub at ``revision``."""
    snn = {row["T"]: round(row["top1"], 2) for row in metrics["snn"]}
    return ((f'revision="{revision}",\n' if revision else "") +
            f"sha256={dict(sorted(sha256.items()))!r},\n"
            f"ann_top1={round(metrics['ann_top1'], 2)!r},\n"
            f"snn_top1={snn!r},")
