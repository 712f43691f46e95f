"""``load`` / ``load_ann``: find a zoo model's files, check them, rebuild the ANN and the converted SNN.

A name is one of

- a registry name (``resnet20-cifar10-rmp``): looked up in ``checkpoints/<name>/`` of this repository, then
  ``$RMP_ZOO_HOME/<name>/``, then (for entries pushed to the Hub) the huggingface_hub cache at the pinned commit,
  then downloaded; every file must match the sha256 the registry pins;
- ``local-dir:PATH``: a folder written by ``rmp-zoo export``;
- ``hf-hub:ORG/REPO[@REVISION]``: any Hub repo in the zoo folder format.

Without registry hashes, files are still checked to be complete and are parsed safely (JSON, safetensors).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..conversion import ConversionSettings, SpikingNetwork, apply_bias_shifts, convert
from ..models import create_model
from .errors import HubAccessError, HubUnavailableError, IncompleteFolderError, IntegrityError, NotBuiltError, ZooError
from .folder import CONFIG, LOAD_FILES, METRICS, WEIGHTS, check_file, read_json, read_weights, require_files
from .hub import download, is_cached
from .registry import ZOO, ZooEntry, get_entry

LOCAL_PREFIX, HUB_PREFIX = "local-dir:", "hf-hub:"
REPO_CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"


@dataclass(frozen=True)
class Source:
    """Where a model's files come from: a registry entry, a local folder or a Hub repo."""

    name: str
    kind: str  # "registry", "local-dir" or "hf-hub"
    entry: ZooEntry | None = None
    path: Path | None = None
    repo_id: str | None = None
    revision: str | None = None


def parse_name(name: str, revision: str | None = None) -> Source:
    """Interpret ``name``; a bare name that looks like a path or a repo id is refused, naming the prefix to use."""
    if name.startswith(LOCAL_PREFIX):
        if revision is not None:
            raise ValueError(f"{name}: a local folder has no revisions; drop revision={revision!r}")
        return Source(name, "local-dir", path=Path(name[len(LOCAL_PREFIX):]).expanduser())
    if name.startswith(HUB_PREFIX):
        repo_id, _, rev = name[len(HUB_PREFIX):].partition("@")
        if rev and revision and rev != revision:
            raise ValueError(f"{name} names revision {rev!r} but revision={revision!r} was passed; give one")
        if repo_id.count("/") != 1 or not all(repo_id.split("/")):
            raise ValueError(f"{name}: expected hf-hub:ORG/REPO[@REVISION]")
        return Source(name, "hf-hub", repo_id=repo_id, revision=rev or revision)
    if name not in ZOO and os.path.exists(name):
        raise ValueError(f"{name!r} is not a zoo model name but a path on disk; to load that folder use "
                         f"'{LOCAL_PREFIX}{name}'")
    if name not in ZOO and "/" in name:
        raise ValueError(f"{name!r} is not a zoo model name; for a Hub repo use '{HUB_PREFIX}{name}', for a folder "
                         f"'{LOCAL_PREFIX}{name}'")
    entry = get_entry(name)
    if revision is not None and revision != entry.revision:
        raise ValueError(f"{name} is pinned to revision {entry.revision}; to load revision {revision!r} of its repo "
                         f"use '{HUB_PREFIX}{entry.hub_id}@{revision}' (checked for completeness, not by hash)")
    return Source(name, "registry", entry=entry, repo_id=entry.hub_id, revision=entry.revision)


def local_folders(name: str) -> list[Path]:
    """Where a registry model may already sit on disk, in the order they are tried."""
    folders = [REPO_CHECKPOINTS / name]
    if os.environ.get("RMP_ZOO_HOME"):
        folders.append(Path(os.environ["RMP_ZOO_HOME"]).expanduser() / name)
    return folders


def not_built_error(entry: ZooEntry) -> NotBuiltError:
    local = next((p for p in local_folders(entry.name) if p.is_dir()), None)
    hint = (f" A folder exists at {local}: load it with '{LOCAL_PREFIX}{local}', or publish it (`rmp-zoo push`) and "
            "pin it in the registry (`rmp-zoo hash`)." if local else "")
    return NotBuiltError(f"{entry.name} is listed but not built yet: no weights are published. Train it with "
                         f"`{entry.recipe}` (needs {entry.data}), then `rmp-zoo export RUN_DIR --name {entry.name}`."
                         + hint)


def fetch(source: Source, files: tuple[str, ...] = LOAD_FILES) -> Path:
    """The folder holding ``files`` of ``source``, each checked; downloads what is missing from the cache."""
    if source.kind == "local-dir":
        require_files(source.path, files)
        for f in files:
            check_file(source.path / f)
        return source.path
    entry = source.entry
    if entry is None:  # hf-hub: use the registry's hashes when it names a pinned entry
        entry = next((e for e in ZOO.values() if e.built and (e.hub_id, e.revision) == (source.repo_id,
                                                                                          source.revision)), None)
    if source.kind == "registry":
        if not entry.built:
            raise not_built_error(entry)
        for folder in local_folders(entry.name):
            if folder.is_dir():
                require_files(folder, files)
                for f in files:
                    try:
                        check_file(folder / f, entry.sha256[f])
                    except IntegrityError as err:
                        raise IntegrityError(f"{folder}: {err} It is not the published {entry.name}: move it away "
                                             "to use the published one, or load it explicitly with "
                                             f"'{LOCAL_PREFIX}{folder}'.") from None
                return folder
        if not entry.on_hub:
            raise not_on_hub_error(entry)
    try:
        return download(source.repo_id, files, source.revision, entry.sha256 if entry else None)
    except HubUnavailableError as err:
        if source.kind != "registry" or isinstance(err, HubAccessError):
            raise
        raise type(err)(f"{err} For {entry.name}, a copy of its folder is also found at "
                        f"{' or '.join(map(str, local_folders(entry.name)))}.") from err


def not_on_hub_error(entry: ZooEntry) -> NotBuiltError:
    return NotBuiltError(f"{entry.name} is published in the rmp_zoo git repository (checkpoints/{entry.name}/) but "
                         f"not on the Hub yet, and no copy was found in {', '.join(map(str, local_folders(entry.name)))}."
                         f" Use a clone of the repository (`pip install -e .`), or copy that folder to "
                         f"$RMP_ZOO_HOME/{entry.name}.")


def _read(name: str, revision: str | None, map_location: Any) -> tuple[nn.Module, dict, dict, tuple[dict, dict]]:
    source = parse_name(name, revision)
    folder = fetch(source)
    config, metrics = read_json(folder / CONFIG), read_json(folder / METRICS)
    state, thresholds, shifts = read_weights(folder / WEIGHTS)
    ann = build_ann(config, state, folder).to(map_location)
    if source.kind == "hf-hub":  # the snapshot folder is named after the commit it came from
        revision = folder.name
    elif source.kind == "registry":
        revision = source.revision
    meta = metadata(config, metrics, source, folder, revision)
    ann.pretrained_cfg = meta
    return ann, config, meta, (thresholds, shifts)


def build_ann(config: dict, state: dict, where: Path | str) -> nn.Module:
    """The ANN ``config.json`` describes, with ``state`` loaded, in eval mode."""
    try:
        ann = create_model(config["architecture"], num_classes=config["num_classes"], **config["model_kwargs"])
        ann.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise IncompleteFolderError(f"{where}: the weights do not fit the model config.json describes ({err}); "
                                    "re-export the folder with `rmp-zoo export`") from err
    return ann.eval()


def build_snn(ann: nn.Module, config: dict, thresholds: dict[str, float],
              bias_shifts: dict[str, torch.Tensor] | None = None) -> SpikingNetwork:
    """Convert ``ann`` with the recorded settings, the stored thresholds (already scaled) and the stored bias
    shifts: the network the export measured, without measuring anything again."""
    record = config["conversion"]
    settings = ConversionSettings.from_record(record)
    snn = convert(ann, settings=dataclasses.replace(settings, threshold=thresholds, scale=1.0, bias_correction=None))
    apply_bias_shifts(snn, bias_shifts or {})
    # The thresholds were chosen (and scaled) and the biases corrected at export: record that, not "given".
    snn.settings, snn.threshold_method = settings, record["threshold_method"]
    snn.bias_correction = record.get("bias_correction")
    return snn


def metadata(config: dict, metrics: dict, source: Source, folder: Path, revision: str | None) -> dict[str, Any]:
    """What a user needs to know to use a loaded model correctly (attached as ``.pretrained_cfg``).

    It carries timm's keys (``input_size``, ``mean``, ``std``, ``interpolation``, ``crop_pct``, ``num_classes``,
    ``label_names``), so ``timm.data.resolve_data_config(model=m)`` finds the eval preprocessing.
    """
    conv, pre = config["conversion"], config["preprocessing"]
    return {
        "input_size": (len(pre["mean"]), pre["size"], pre["size"]), "mean": tuple(pre["mean"]),
        "std": tuple(pre["std"]), "interpolation": "bilinear", "crop_pct": pre["size"] / pre.get("resize", pre["size"]),
        "crop_mode": "center", "label_names": config["classes"],
        "name": config["name"], "source": source.name, "folder": str(folder), "hub_id": source.repo_id,
        "revision": revision, "architecture": config["architecture"], "num_classes": config["num_classes"],
        "dataset": config["dataset"]["name"], "classes": config["classes"], "preprocessing": config["preprocessing"],
        "neuron": conv["neuron"], "threshold_method": conv["threshold_method"], "scale": conv["scale"],
        "initial_potential": conv["initial_potential"], "burst": conv.get("burst", 1), "encoding": conv["encoding"],
        "maxpool": conv.get("maxpool", "error"), "bias_correction": conv.get("bias_correction"),
        "ann_top1": metrics["ann_top1"], "snn_top1": {row["T"]: row["top1"] for row in metrics["snn"]},
        "num_test_images": metrics["num_images"], "recipe": config.get("recipe"),
        "measured_by": metrics["command"],
    }


def load_ann(name: str, revision: str | None = None, map_location: Any = "cpu") -> nn.Module:
    """The trained ANN behind zoo model ``name`` (eval mode), with ``.pretrained_cfg`` metadata."""
    return _read(name, revision, map_location)[0]


def load_pair(name: str, revision: str | None = None, map_location: Any = "cpu") -> tuple[nn.Module, SpikingNetwork]:
    """The ANN and the SNN of ``name`` from one read of its files (evaluation compares the two)."""
    ann, config, meta, (thresholds, shifts) = _read(name, revision, map_location)
    try:
        snn = build_snn(ann, config, thresholds, shifts)
    except (KeyError, ValueError) as err:
        raise ZooError(f"{meta['folder']}: cannot rebuild the spiking network ({err}); re-export the folder") from err
    snn.pretrained_cfg = meta
    return ann, snn


def load(name: str, revision: str | None = None, map_location: Any = "cpu") -> SpikingNetwork:
    """Zoo model ``name`` as a ready spiking network: ``load(name)(x, T=32)`` gives class scores.

    ``.pretrained_cfg`` carries the facts needed to use it (preprocessing, classes, accuracy per T, provenance).
    Errors say what to do: unknown names suggest close ones, unbuilt models name their recipe, bad downloads are
    removed from the cache.
    """
    return load_pair(name, revision, map_location)[1]


def transforms(model: nn.Module) -> Callable[[Any], torch.Tensor]:
    """The eval preprocessing of a loaded zoo model (PIL image → normalised tensor), like torchvision's
    ``Weights.transforms()``; built by timm from the model's ``pretrained_cfg``."""
    from timm.data import create_transform, resolve_data_config

    if "input_size" not in (getattr(model, "pretrained_cfg", None) or {}):
        raise ValueError(f"{type(model).__name__} carries no preprocessing (.pretrained_cfg); transforms() needs a "
                         "model from rmp_zoo.load / load_ann")
    return create_transform(**resolve_data_config(model=model))


def entry_status(entry: ZooEntry) -> str:
    """How a registry model would load now: "not built", "local", "cached" or "on the Hub" (no network)."""
    if not entry.built:
        return "not built"
    if any(folder.is_dir() for folder in local_folders(entry.name)):
        return "local"
    if not entry.on_hub:
        return "not on the Hub yet"
    return "cached" if is_cached(entry.hub_id, entry.revision) else "on the Hub"
