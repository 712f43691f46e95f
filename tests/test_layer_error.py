"""Per-layer conversion error: exact where theory says the SNN equals the ANN, and the errors it reports are real."""
import pytest
import torch
from torch import nn

import rmp_zoo
from rmp_zoo.conversion.layer_error import OUTPUT
from rmp_zoo.models import QCFS

pytestmark = pytest.mark.usefixtures("one_thread")


def qcfs_net(levels: int = 4) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), QCFS(levels, 1.5),
                        nn.Conv2d(8, 8, 3, padding=1), QCFS(levels, 1.0), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 5))
    net[1].running_mean.uniform_(-0.2, 0.2)
    return net.eval()


def test_first_layer_is_exact_at_T_equal_levels_and_errors_are_counted():
    """Under direct encoding a QCFS layer fed the constant input equals an RMP neuron with a θ/2 start at T=L."""
    ann = qcfs_net(levels=4)
    snn = rmp_zoo.convert(ann, neuron="rmp", threshold="trained", initial_potential=0.5)
    x = torch.randn(6, 3, 8, 8)
    result = rmp_zoo.conversion_error(ann, snn, [(x, None)], T=[1, 4, 64])
    first, second = result.layers
    rows = {(r.layer, r.T): r for r in result.rows}
    assert result.num_images == 6 and len(result.rows) == 3 * 3
    assert rows[first, 4].mse == 0 and rows[first, 4].off_by_spike == 0
    assert rows[first, 1].mse > 0  # at T=1 a neuron can only give 0 or θ
    # the SNN's rate at T=64 approaches clip(x, 0, θ), which differs from the 4-level ANN by under θ/8 on average
    assert rows[first, 64].mse < rows[first, 1].mse
    assert abs(rows[first, 64].mean_error) < 1.5 / 8
    assert rows[OUTPUT, 64].agreement is not None and 0 <= rows[OUTPUT, 64].agreement <= 1
    for r in result.rows:
        assert r.off_by_spike == pytest.approx(r.over + r.under)


def test_brute_force_rates_match_the_reported_error():
    """The reported MSE of the second layer equals one computed from recorded spike trains."""
    ann = qcfs_net()
    snn = rmp_zoo.convert(ann, neuron="rmp", threshold="trained", initial_potential=0.5)
    x = torch.randn(3, 3, 8, 8)
    result = rmp_zoo.conversion_error(ann, snn, [x], T=[5])
    name = result.layers[1]
    outputs = []
    hook = snn.neurons()[name].register_forward_hook(lambda m, i, o: outputs.append(o.clone()))
    snn(x, T=5)
    hook.remove()
    rate = torch.stack(outputs).mean(0)
    with torch.no_grad():
        folded = ann[:5](x)  # BN folding is exact up to rounding
    row = next(r for r in result.rows if r.layer == name)
    assert row.mse == pytest.approx(float((rate - folded).square().mean()), rel=1e-3, abs=1e-6)


def test_signed_neurons_and_bursts_cut_the_error_of_uneven_input():
    ann = qcfs_net()
    x = torch.randn(16, 3, 8, 8)
    errors = {}
    for neuron, burst in (("rmp", 1), ("signed", 1), ("signed", 2)):
        snn = rmp_zoo.convert(ann, neuron=neuron, threshold="trained", initial_potential=0.5, burst=burst)
        errors[neuron, burst] = next(r for r in rmp_zoo.conversion_error(ann, snn, [x], T=[4]).rows
                                     if r.layer == OUTPUT)
    assert errors["signed", 2].mse < errors["signed", 1].mse < errors["rmp", 1].mse


def test_an_ann_that_does_not_match_the_snn_is_named():
    snn = rmp_zoo.convert(qcfs_net(), threshold="trained")
    other = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    with pytest.raises(ValueError, match="converted from"):
        rmp_zoo.conversion_error(other, snn, [torch.randn(1, 3, 8, 8)], T=[2])
