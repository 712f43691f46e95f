"""rmp_zoo: train conversion-friendly ANNs, convert them to spiking networks with RMP neurons, share them."""
from .conversion import SpikingNetwork, convert, correct_bias, evaluate, simulate
from .models import create_model, list_architectures
from .zoo import list_models, load, load_ann

__all__ = ["create_model", "list_architectures", "convert", "correct_bias", "simulate", "evaluate", "SpikingNetwork",
           "load", "load_ann", "list_models"]
__version__ = "0.1.0"
