"""Training: the LightningModule and the Hydra entry point."""
from .module import ClassificationModule

__all__ = ["ClassificationModule"]
