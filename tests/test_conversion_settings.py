"""One ConversionSettings object with one set of defaults: the recipes, convert, export and load agree."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml
from conftest import RECIPES
from torch import nn

from rmp_zoo import ConversionSettings, convert, correct_bias
from rmp_zoo.models import create_model


def test_the_training_callback_uses_the_same_defaults():
    snn = yaml.safe_load((RECIPES / "callbacks" / "snn.yaml").read_text())["snn"]
    assert ConversionSettings.of(snn["conversion"]) == ConversionSettings()
    assert snn["conversion"] == dataclasses.asdict(ConversionSettings())


def test_unknown_or_bad_settings_name_the_fix():
    with pytest.raises(ValueError, match="unknown conversion setting.*threshhold.*known: bias_correction"):
        ConversionSettings.of(threshhold="max")
    with pytest.raises(ValueError, match="unknown threshold 'maximum'"):
        ConversionSettings(threshold="maximum")
    with pytest.raises(ValueError, match="bias_correction is the T"):
        ConversionSettings(bias_correction=0)
    with pytest.raises(ValueError, match="unknown maxpool"):
        ConversionSettings(maxpool="average")


def test_specs_take_the_defaults_for_what_they_leave_out():
    assert ConversionSettings.parse("if:max") == ConversionSettings(neuron="if", threshold="max")
    assert ConversionSettings.parse("signed:99.9%:0:2") == ConversionSettings(neuron="signed", threshold="99.9%",
                                                                             initial_potential=0.0, burst=2)


def test_records_from_before_a_setting_existed_read_as_they_were_made():
    old = {"neuron": "rmp", "threshold_method": "trained", "scale": 1.0, "initial_potential": 0.5,
           "encoding": "direct", "seed": 0, "bias_correction": None}
    assert ConversionSettings.from_record(old) == ConversionSettings(threshold="trained", maxpool="error")
    x = torch.rand(2, 3, 16, 16)
    snn = convert(create_model("resnet20", activation="qcfs").eval(), [x], bias_correction=2)
    assert ConversionSettings.from_record(snn.config()) == snn.settings


def test_auto_threshold_is_trained_for_qcfs_and_max_otherwise():
    qcfs = create_model("resnet20", activation="qcfs").eval()
    relu = create_model("resnet20").eval()
    assert convert(qcfs).threshold_method == "trained"
    assert convert(relu, [torch.rand(2, 3, 16, 16)]).threshold_method == "max"
    with pytest.raises(ValueError, match="needs calibration data"):
        convert(relu)
    with pytest.raises(ValueError, match="bias_correction=4 measures each layer on calibration images"):
        convert(qcfs, bias_correction=4)


def test_bias_correction_of_a_max_pool_network_starts_from_clean_pools():
    """correct_bias ran its ANN copy with the spiking pools' running sums: unequal batch sizes raised."""
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    batches = [torch.rand(4, 3, 8, 8), torch.rand(3, 3, 8, 8)]
    snn = convert(ann, batches, threshold="max")
    snn(batches[0], T=4)  # leaves nothing behind: each simulation resets
    shifts = correct_bias(snn, batches, T=4)
    again = convert(ann, batches, threshold="max", bias_correction=4)
    assert all(torch.equal(shifts[k], again.bias_shifts[k]) for k in shifts)
    assert torch.equal(snn(batches[1], T=4), again(batches[1], T=4))
