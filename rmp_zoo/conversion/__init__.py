"""ANN → SNN conversion and simulation: ``convert`` a trained CNN, ``simulate`` or ``evaluate`` it over T steps."""
from .bias_correction import apply_bias_shifts, correct_bias
from .convert import convert
from .evaluate import EvalResult, evaluate
from .layer_error import ConversionError, LayerError, conversion_error
from .network import SpikingNetwork
from .neurons import SpikingMaxPool, SpikingNeuron
from .settings import ConversionSettings
from .simulate import simulate
from .spike_conv import SpikeConv2d, float_convs

__all__ = ["convert", "ConversionSettings", "correct_bias", "apply_bias_shifts", "simulate", "evaluate",
           "conversion_error", "SpikingNetwork", "EvalResult", "ConversionError", "LayerError", "SpikingNeuron",
           "SpikingMaxPool", "SpikeConv2d", "float_convs"]
