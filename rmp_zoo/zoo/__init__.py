"""The model zoo: published spiking networks by name, their Hub repos, and the tools that make and publish them.

``list_models`` and ``load`` are what users type; ``export`` and ``push`` (also as ``rmp-zoo export`` / ``push``)
turn a training run into a published model.
"""
from .errors import (HubAccessError, HubUnavailableError, IncompleteFolderError, IntegrityError, ModelNotFoundError,
                     NotBuiltError, ZooError)
from .export import export
from .hub import push
from .loader import load, load_ann, load_pair, transforms
from .registry import ZOO, ZooEntry, get_entry, list_models

__all__ = ["list_models", "load", "load_ann", "load_pair", "transforms", "get_entry", "export", "push", "ZOO", "ZooEntry", "ZooError",
           "ModelNotFoundError", "NotBuiltError", "IncompleteFolderError", "IntegrityError", "HubUnavailableError",
           "HubAccessError"]
