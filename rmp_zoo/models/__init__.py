"""Conversion-friendly architectures, built by name through the registry."""
from . import resnet, vgg  # noqa: F401  (registers the builders)
from ._registry import create_model, list_architectures, register_model
from .activations import ACTIVATIONS, QCFS, ClipReLU, make_activation
from .constraints import Constraints

__all__ = ["create_model", "list_architectures", "register_model", "make_activation", "ClipReLU", "QCFS",
           "ACTIVATIONS", "Constraints"]
