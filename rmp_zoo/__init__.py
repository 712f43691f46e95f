"""rmp_zoo: train conversion-friendly ANNs, convert them to spiking networks with RMP neurons, share them."""
from .models import create_model, list_architectures

__all__ = ["create_model", "list_architectures"]
__version__ = "0.1.0"
