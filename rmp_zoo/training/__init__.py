"""Training: the LightningModule and the Hydra entry point."""
from .module import ClassificationModule
from .resume import RNGState

__all__ = ["ClassificationModule", "RNGState"]
