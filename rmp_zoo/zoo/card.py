"""The model card (``README.md``): Hub metadata in YAML front matter, then usage, results, reproduction, citation."""
from __future__ import annotations

from typing import Any, Mapping

from huggingface_hub import EvalResult, ModelCardData

from .folder import PLOT
from ..conversion.record import conversion_label, top1_by_T

TAGS = ["spiking-neural-network", "ann-to-snn", "image-classification", "rmp"]
LICENSE = "apache-2.0"
NEURON_NAMES = {"rmp": "RMP", "if": "IF (reset to zero)", "signed": "signed RMP"}  # signed: RMP plus negative spikes
# Hub dataset ids and display names of the datasets the recipes train on.
HUB_DATASETS = {"cifar10": ("uoft-cs/cifar10", "CIFAR-10"), "cifar100": ("uoft-cs/cifar100", "CIFAR-100"),
                "imagenet": ("ILSVRC/imagenet-1k", "ImageNet-1k")}
CITATION = """@inproceedings{han2020rmp,
  title     = {{RMP-SNN}: Residual Membrane Potential Neuron for Enabling Deeper High-Accuracy and Low-Latency
               Spiking Neural Network},
  author    = {Han, Bing and Srinivasan, Gopalakrishnan and Roy, Kaushik},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {13558--13567},
  year      = {2020}
}"""


def card_data(config: Mapping[str, Any], metrics: Mapping[str, Any]) -> ModelCardData:
    """Front matter: library, tags, dataset, license and a model-index with one top-1 metric per T."""
    dataset = config["dataset"]["name"]
    hub_id, display = HUB_DATASETS.get(dataset, (dataset, dataset))
    results = [EvalResult(task_type="image-classification", dataset_type=hub_id, dataset_name=display,
                          dataset_split="test", metric_type="accuracy", metric_name=f"Top-1 (T={t})",
                          metric_value=round(acc, 2)) for t, acc in top1_by_T(metrics).items()]
    return ModelCardData(library_name="rmp_zoo", license=LICENSE, tags=TAGS + [config["architecture"]],
                         datasets=[hub_id] if dataset in HUB_DATASETS else None, model_name=config["name"],
                         eval_results=results)


def _trained(config: Mapping[str, Any]) -> str:
    """Where the ANN trained and for how long, from the run's ``training.json``."""
    training = config.get("training") or {}
    run = training.get("run")
    if not run or run.get("train_time_s") is None:
        return "The training run did not record its machine and duration."
    best = training.get("epoch")
    seconds = run["train_time_s"]
    duration = f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.2f} h"
    selected_by = training.get("selected_by", "")  # "" when unknown (exported before it was recorded)
    if best is None:
        chosen = "."
    elif selected_by is None:  # a checkpoint callback without a monitor keeps the last epoch
        chosen = f"; the checkpoint published is the last epoch's ({best + 1}): nothing was selected on held-out data."
    elif selected_by:
        chosen = f"; the checkpoint published is the one with the best {selected_by}, after epoch {best + 1}."
    else:
        chosen = f"; the checkpoint published is the run's best.ckpt, after epoch {best + 1}."
    return (f"The ANN trained for {run['epochs']} epochs ({run['global_step']} steps) in {duration} "
            f"on {run['machine']['device']} (torch {run['machine']['torch']}){chosen}")


def model_card(config: Mapping[str, Any], metrics: Mapping[str, Any], load_name: str) -> str:
    """The whole ``README.md``; ``load_name`` is what users pass to ``rmp_zoo.load``."""
    conv, pre, name = config["conversion"], config["preprocessing"], config["name"]
    dataset = HUB_DATASETS.get(config["dataset"]["name"], (None, config["dataset"]["name"]))[1]
    compare = metrics.get("compare", [])
    other = [top1_by_T(c) for c in compare]
    ann_uJ, energy = metrics["ann_energy_uJ_per_image"], metrics["energy_model"]
    rows = "\n".join(f"| {r['T']} | " + "".join(f"{o[r['T']]:.2f} | " for o in other)
                     + f"**{r['top1']:.2f}** | {r['spikes_per_image']:.4g} | {r['synops_per_image']:.4g} | "
                     f"{r['energy_uJ_per_image']:.4g} | {ann_uJ:.4g} |" for r in metrics["snn"])
    costlier = [r for r in metrics["snn"] if r["energy_uJ_per_image"] > ann_uJ]
    verdict = (f"**The SNN costs more energy than its ANN at T = {', '.join(str(r['T']) for r in costlier)}** (up to "
               f"{max(r['energy_uJ_per_image'] for r in costlier) / ann_uJ:.2f}× the ANN's)." if costlier else
               "The SNN costs less energy than its ANN at every T above.")
    heads = "".join(f"{c['label']} | " for c in compare)
    this = conversion_label(conv)
    steps = ",".join(str(r["T"]) for r in metrics["snn"])
    data_flag = " --data-root DATA_ROOT" if config["dataset"].get("needs_data_root") else ""
    if config.get("recipe"):
        run_dir = (config.get("training") or {}).get("run_dir")
        train, command = config["recipe"], metrics["command"]
        if run_dir:  # the run folder of the export command is wherever the training command writes
            train, command = f"{train} hydra.run.dir=RUN_DIR", command.replace(f" {run_dir} ", " RUN_DIR ", 1)
        reproduce = ("Train the ANN, then convert and measure its checkpoint:\n\n"
                     f"```bash\n{train}\n{command}\n```\n\n{_trained(config)}")
    else:
        reproduce = f"Convert and measure it from its training run:\n\n```bash\n{metrics['command']}\n```"
    size = f"{pre['size']}×{pre['size']}"
    resize = f"resized to {pre['resize']} px on the short side, centre-cropped to {size}" if "resize" in pre else size
    return f"""---
{card_data(config, metrics).to_yaml()}
---

# {name}

A spiking neural network for {dataset} image classification: a {config['architecture']} ANN converted with
`rmp_zoo` into a rate-coded SNN of **{NEURON_NAMES.get(conv['neuron'], conv['neuron'].upper())}** neurons
(thresholds: `{conv['threshold_method']}`, scale {conv['scale']}, initial membrane potential
{conv['initial_potential']}·θ, at most {conv.get('burst', 1)} spike(s) per neuron and step, {conv['encoding']} input
encoding). RMP neurons reset by subtraction and keep the
residual membrane potential, so accuracy approaches the ANN's as the number of time steps T grows.

## Usage

```python
import torch
import rmp_zoo

snn = rmp_zoo.load("{load_name}")
x = torch.rand(1, 3, {pre['size']}, {pre['size']})  # an RGB image scaled to [0, 1]
mean, std = torch.tensor({pre['mean']}), torch.tensor({pre['std']})
x = (x - mean[:, None, None]) / std[:, None, None]
scores = snn(x, T=32)  # class scores averaged over T time steps
print(snn.pretrained_cfg["classes"][scores.argmax(1).item()])
```

Preprocessing: RGB scaled to [0, 1], {resize}, normalised with the mean and std above.
`rmp_zoo.load_ann("{load_name}")` gives the ANN.

## Results

{dataset} test split, {metrics['num_images']} images. ANN top-1: **{metrics['ann_top1']:.2f}%**.

SNN top-1 (%) at T time steps. **{this}** is this model (the spikes, SynOps and energy columns are its own);
{"the other columns convert the same ANN differently, on the same images." if compare else ""}

| T | {heads}**{this}** (this model) | spikes / image | SynOps / image | SNN µJ / image | ANN µJ / image |
|---|{"---|" * len(compare)}---|---|---|---|---|
{rows}

{verdict} Energy is estimated from operation counts ({energy['source']}): ANN = {energy['ann']}, SNN =
{energy['snn']}; mac_pJ = {energy['mac_pJ']}, ac_pJ = {energy['ac_pJ']}. SynOps count, for each neuron, its spikes
times the synapses each spike reaches (through pooling, padding, strides and residual paths).

![Top-1 accuracy against T]({PLOT})

Measured with `{metrics['command']}` on {metrics['machine']['device']} (torch {metrics['machine']['torch']}).

## Reproduce

Evaluate this model (prints the table above, writes a CSV and the plot):

```bash
rmp-zoo eval {load_name} --T {steps}{data_flag}
```

{reproduce}

## Citation

```bibtex
{CITATION}
```
"""
