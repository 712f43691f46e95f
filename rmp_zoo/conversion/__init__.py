"""ANN → SNN conversion and simulation: ``convert`` a trained CNN, ``simulate`` or ``evaluate`` it over T steps."""
from .bias_correction import correct_bias
from .convert import convert
from .evaluate import EvalResult, evaluate
from .layer_error import ConversionError, LayerError, conversion_error
from .network import SpikingNetwork
from .neurons import SpikingMaxPool, SpikingNeuron
from .simulate import simulate

__all__ = ["convert", "correct_bias", "simulate", "evaluate", "conversion_error", "SpikingNetwork", "EvalResult",
           "ConversionError", "LayerError", "SpikingNeuron", "SpikingMaxPool"]
