"""rmp_zoo: train conversion-friendly ANNs, convert them to spiking networks with RMP neurons, share them."""
from .conversion import ConversionSettings, SpikingNetwork, conversion_error, convert, correct_bias, evaluate, simulate
from .models import create_model, list_architectures
from .zoo import list_models, load, load_ann, load_pair, transforms
from .zoo.folder import library_version

__all__ = ["create_model", "list_architectures", "convert", "ConversionSettings", "correct_bias", "simulate",
           "evaluate", "conversion_error", "SpikingNetwork", "load", "load_ann", "load_pair", "transforms", "list_models"]
__version__ = library_version()  # pyproject.toml holds the one version number
