"""Turn a training run into a zoo folder: rebuild the ANN from its best checkpoint, convert, measure, write.

The numbers in ``metrics.json`` are measured on the network reloaded from the files just written, through the same
code ``load`` uses, so they describe exactly what users get. The folder appears only when complete.
"""
from __future__ import annotations

import dataclasses
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from omegaconf import OmegaConf
from torch import nn

from ..conversion import ConversionSettings, convert
from ..models import create_model
from .card import model_card
from .errors import ZooError
from .folder import (CARD, CONFIG, FORMAT_VERSION, METRICS, PLOT, WEIGHTS, library_version, read_json, read_weights,
                     write_json, write_weights)
from .loader import build_ann, build_snn
from ..conversion.record import Sharding, measure, measure_alternative
from .measure import build_datamodule, calibration_batches
from .registry import DATA_NEEDED, HUB_ORG, ZOO
from ..conversion.report import plot_accuracy

EXPORT_T = (1, 2, 4, 8, 16, 32, 64, 128)
DATA_KEYS_DROPPED = ("_target_", "name", "root", "download")  # per machine, not part of the dataset's identity


def read_run(run_dir: str | Path) -> tuple[nn.Module, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """From a ``train.py`` run folder: the best ANN (eval mode), its create_model kwargs, the data config and
    the training record. The checkpoint is read with ``weights_only=True``: nothing is unpickled."""
    run_dir = Path(run_dir)
    ckpt_path, cfg_path = run_dir / "checkpoints" / "best.ckpt", run_dir / "config.yaml"
    missing = [str(p) for p in (ckpt_path, cfg_path) if not p.is_file()]
    if missing:
        raise ZooError(f"{run_dir} is not a finished training run: missing {', '.join(missing)}. Pass the output "
                       "folder of `python train.py recipe=...`.")
    from ..training import ClassificationModule  # here, so that `load` does not import Lightning

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    hparams = ckpt["hyper_parameters"]
    # The checkpoint holds every weight, so a recipe's pretrained=... source is not needed again.
    kwargs = {k: v for k, v in ClassificationModule.model_constraints(hparams).items() if k != "pretrained"}
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    ann = create_model(hparams["arch"], num_classes=hparams["num_classes"], **kwargs)
    ann.load_state_dict(state, strict=True)
    data = OmegaConf.to_container(OmegaConf.load(cfg_path)["data"], resolve=True)
    results, record = run_dir / "results.json", run_dir / "training.json"
    monitors = [state.get("monitor", "") for key, state in (ckpt.get("callbacks") or {}).items()
                if key.startswith("ModelCheckpoint")]
    training = {"checkpoint": "best.ckpt", "epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step"),
                "run_dir": str(run_dir), "selected_by": monitors[0] if monitors else "",
                "results": read_json(results) if results.is_file() else None,
                "run": read_json(record) if record.is_file() else None}
    return ann.eval(), {"architecture": hparams["arch"], "num_classes": hparams["num_classes"],
                        "model_kwargs": kwargs}, data, training


def recorded_conversion(run_dir: str | Path) -> ConversionSettings:
    """The settings the run's SNN callback converted with (``callbacks.snn.conversion`` of its config.yaml; flat
    keys in runs from before that), or the defaults for a run without the callback."""
    cfg_path = Path(run_dir) / "config.yaml"
    if not cfg_path.is_file():
        raise ZooError(f"{run_dir} is not a training run: missing {cfg_path}. Pass the output folder of "
                       "`python train.py recipe=...`.")
    cfg = OmegaConf.to_container(OmegaConf.load(cfg_path), resolve=True)
    snn = (cfg.get("callbacks") or {}).get("snn") or {}
    if "conversion" in snn:
        return ConversionSettings.of(snn["conversion"])
    fields = {f.name for f in dataclasses.fields(ConversionSettings)}
    return ConversionSettings.of({k: v for k, v in snn.items() if k in fields})


def export(run_dir: str | Path, name: str, out: str | Path | None = None, *,
           conversion: ConversionSettings | Mapping[str, Any] | None = None, T: Iterable[int] = EXPORT_T,
           data_root: str | None = None, limit: int | None = None, batch_size: int | None = None, calibration_images: int = 4096, device: str = "cpu",
           repo_id: str | None = None, recipe: str | None = None, compare: Sequence[str] = (),
           force: bool = False, progress: bool = True, sharding: Sharding = Sharding()) -> Path:
    """Write the zoo folder for the best checkpoint of ``run_dir`` to ``out`` (default ``checkpoints/<name>``).

    ``conversion`` defaults to the settings the run's SNN callback converted with, so the export is the SNN the run
    reported. Data-driven thresholds and bias correction use up to ``calibration_images`` training images. Accuracy
    is measured on the test split (its first ``limit`` images). ``compare`` lists other conversions of the same ANN
    (``if:max``, ``rmp:max``: see ``ConversionSettings.parse``), measured on the same images, so the card shows what
    the published settings gain. With ``sharding`` (``measure.launch``), the processes share the measurements and
    the main one writes the folder.
    """
    out = Path(out if out is not None else Path("checkpoints") / name)
    if out.exists() and any(out.iterdir()) and not force:
        raise ZooError(f"{out} already exists; pass --force to replace it, or choose another --out")
    T = sorted(set(T))
    recipe = recipe or (ZOO[name].recipe if name in ZOO else None)
    repo_id = repo_id or f"{HUB_ORG}/{name}"
    settings = recorded_conversion(run_dir) if conversion is None else ConversionSettings.of(conversion)
    ann, model, data, training = read_run(run_dir)
    settings = settings.resolve(ann)
    dataset = {"name": data["name"], "datamodule": {k: v for k, v in data.items() if k not in DATA_KEYS_DROPPED},
               "needs_data_root": "root" in data, "data": DATA_NEEDED.get(data["name"], "none (generated)")}
    datamodule = build_datamodule(dataset, data_root or data.get("root"), batch_size)
    datamodule.setup("test")
    alternatives = [ConversionSettings.parse(spec) for spec in compare]
    calibration = calibration_batches(datamodule, ann, [settings, *alternatives], calibration_images)
    snn = convert(ann.to(device), calibration, settings=settings)
    config = {"format_version": FORMAT_VERSION, "name": name, "library": f"rmp_zoo {library_version()}", **model,
              "conversion": snn.config(), "dataset": dataset, "preprocessing": datamodule.preprocessing,
              "classes": list(datamodule.classes), "recipe": recipe, "training": training}
    command = _command(run_dir, {
        "--name": name, "--out": out, "--neuron": settings.neuron, "--threshold": settings.threshold,
        "--initial-potential": settings.initial_potential, "--scale": settings.scale, "--burst": settings.burst,
        "--encoding": settings.encoding, "--maxpool": settings.maxpool,
        "--bias-correction": settings.bias_correction, "--T": ",".join(map(str, T)),
        "--data-root": data_root, "--limit": limit, "--batch-size": batch_size, "--device": device,
        "--calibration-images": None if calibration is None else calibration_images,
    }, repeated=[("--compare", spec) for spec in compare])
    thresholds, shifts = snn.thresholds(), snn.bias_shifts
    state = ann.state_dict()

    def write(folder: Path) -> None:
        write_weights(folder / WEIGHTS, state, thresholds, shifts)
        write_json(folder / CONFIG, config)
        weights, stored, stored_shifts = read_weights(folder / WEIGHTS)
        ann_back = build_ann(config, weights, folder).to(device)
        snn_back = build_snn(ann_back, config, stored, stored_shifts)
        metrics = measure(snn_back, ann_back, datamodule.eval_batches("test", limit), T, dataset=dataset["name"],
                          batch_size=datamodule.eval_batch_size, command=command, progress=progress,
                          sharding=sharding)
        metrics["compare"] = [
            measure_alternative(convert(ann_back, calibration, settings=alternative),
                                datamodule.eval_batches("test", limit), T, progress=progress, sharding=sharding)
            for alternative in alternatives]
        write_json(folder / METRICS, metrics)
        plot_accuracy(metrics, folder / PLOT, name)
        (folder / CARD).write_text(model_card(config, metrics, name if name in ZOO else f"hf-hub:{repo_id}"),
                                   encoding="utf-8")

    if sharding.is_main:
        _write_atomically(out, write)
    else:  # the same steps, to take part in every measurement; the main process writes the folder
        with tempfile.TemporaryDirectory() as scratch:
            write(Path(scratch))
    return out


def _write_atomically(out: Path, write: Callable[[Path], None]) -> None:
    """Build the folder next to ``out`` and move it into place only once ``write`` has finished."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        write(tmp)
        for path in (tmp, *tmp.iterdir()):  # mkdtemp (and safetensors) make them private; the result is not
            path.chmod(0o755 if path.is_dir() else 0o644)
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            out.rename(old / out.name)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _command(run_dir: str | Path, options: Mapping[str, Any], repeated: Iterable[tuple[str, str]] = ()) -> str:
    """The ``rmp-zoo export`` command line that repeats this export (recorded in metrics.json and the card)."""
    args = ["rmp-zoo", "export", str(run_dir)]
    for flag, value in [*options.items(), *repeated]:
        if value is not None:
            args += [flag, str(value)]
    return shlex.join(args)
