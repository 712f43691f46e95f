"""What ``rmp-zoo export`` and ``rmp-zoo eval`` share to measure the same way: the datamodule ``config.json``
records (same test images, order and batch size), calibration batches, and processes to spread the work over.
The record itself is ``conversion.record.measure``.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch
from torch import nn

from ..conversion import ConversionSettings
from ..conversion.record import Sharding
from .errors import ZooError


def build_datamodule(dataset: Mapping[str, Any], data_root: str | None = None, batch_size: int | None = None):
    """The datamodule ``config.json``'s ``dataset`` section describes, reading from ``data_root``."""
    from ..data import create_datamodule  # here: the data stack imports Lightning, which `load` does not need

    kwargs = dict(dataset["datamodule"])
    if dataset.get("needs_data_root"):
        if data_root is None:
            raise ZooError(f"dataset {dataset['name']} needs its data: pass --data-root DIR ({dataset['data']})")
        kwargs.update(root=data_root, download=False)
    if batch_size is not None:
        kwargs["eval_batch_size"] = batch_size
    return create_datamodule(dataset["name"], **kwargs)


def calibration_batches(datamodule, ann: nn.Module, settings: Iterable[ConversionSettings], images: int):
    """Unaugmented training batches when any of ``settings`` measures activations of ``ann``, else None
    (calibration never sees test images)."""
    return datamodule.eval_batches("train", images) if any(s.needs_data(ann) for s in settings) else None


def launch(accelerator: str, devices: int | str = 1, strategy: str = "auto",
           num_nodes: int = 1) -> tuple[Sharding, torch.device]:
    """Start the processes of a Lightning strategy (``ddp`` over ``devices`` × ``num_nodes``, or one process) and
    return this process's sharding and device; an evaluation sharded this way equals one process's."""
    from lightning_fabric import Fabric  # here: Lightning is only needed to evaluate, not to load

    fabric = Fabric(accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes)
    fabric.launch()
    return Sharding(fabric.global_rank, fabric.world_size,
                    lambda v: fabric.all_reduce(v, reduce_op="sum")), fabric.device


