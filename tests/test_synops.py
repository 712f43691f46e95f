"""Exact SynOps: each neuron's fan-out map against brute-force counting, and the simulator's SynOps against spikes
counted neuron by neuron."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from rmp_zoo.conversion import SpikingMaxPool, SpikingNeuron, convert, evaluate
from rmp_zoo.conversion.stats import measure_costs
from rmp_zoo.zoo.card import model_card

pytestmark = pytest.mark.usefixtures("one_thread")


def pooled_linear() -> nn.Module:
    """The example of the issue: every spike of the ReLU layer reaches the 10 synapses of one pooled unit."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(64, 10))


class AvgPoolIntoConv(nn.Module):
    """Overlapping, padded, ceil-mode pooling into a padded conv, then a functional pool into a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1)
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.fc = nn.Linear(6 * 3 * 3, 5)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))  # 9×9 → 5×5
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2, ceil_mode=True)  # 5×5 → 3×3
        return self.fc(x.flatten(1))


class GlobalPool(nn.Module):
    """Adaptive pooling with overlapping windows of unequal size, and a global mean into a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 6, 1)
        self.pool = nn.AdaptiveAvgPool2d(3)
        self.fc = nn.Linear(6, 7)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))  # 9×9 → 7×7 → 3×3
        return self.fc(torch.relu(self.conv2(x)).mean((2, 3)))


def strided() -> nn.Module:
    """Strided, dilated, grouped and reflect-padded convolutions: border neurons reach fewer (or more) synapses."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(),  # 9×9 → 5×5
        nn.Conv2d(6, 6, 3, stride=2, padding=2, dilation=2, groups=2), nn.ReLU(),  # 5×5 → 3×3
        nn.Conv2d(6, 4, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 3 * 3, 3))


class Residual(nn.Module):
    """Identity and convolutional shortcuts, a difference and a constant factor: one spike reaches several layers."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.conv1 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.conv2, self.short = nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.Conv2d(4, 6, 1, stride=2)
        self.relu0, self.relu1, self.relu2 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.fc = nn.Linear(2 * 6 * 2 * 2, 4)

    def forward(self, x):
        a = self.relu0(self.stem(x))
        b = self.relu1(self.conv1(a) + a)  # a reaches conv1; its identity path ends at b's membrane, no synapse
        c = self.relu2(self.conv2(b) + self.short(a - b) * 0.5)  # b reaches conv2 and short
        pooled = torch.cat([F.avg_pool2d(c[..., 1:, 1:], 2), F.adaptive_avg_pool2d(c, 2)], 1)  # 5×5 → 2×2 twice
        return self.fc(torch.flatten(pooled, 1))


def max_pooled() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1),
                         nn.Conv2d(4, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 2 * 2, 2))


NETWORKS = {"avgpool->conv": (AvgPoolIntoConv, 9), "global pool->linear": (GlobalPool, 9),
            "strided/padded conv": (strided, 9), "residual add": (Residual, 9), "pooled linear": (pooled_linear, 8),
            "gated max pool": (max_pooled, 8)}


def products(m: nn.Module, x: torch.Tensor) -> int:
    """(weight, input position) products of ``m`` whose input is nonzero, enumerated with unfold."""
    nonzero = (x != 0).double()
    if isinstance(m, nn.Linear):
        return int(nonzero.sum()) * m.out_features
    padding = m.padding
    if m.padding_mode != "zeros":
        nonzero, padding = F.pad(nonzero, m._reversed_padding_repeated_twice, mode=m.padding_mode), 0
    columns = F.unfold(nonzero, m.kernel_size, m.dilation, padding, m.stride)  # one column per output position
    return int(columns.sum()) * (m.out_channels // m.groups)  # each input channel feeds out_channels/groups filters


class OneSpike(fx.Interpreter):
    """The real graph with one neuron's output 1 and every other neuron 0; conv/linear layers count the products
    they receive a nonzero input for and pass zeros on."""

    def __init__(self, gm: fx.GraphModule, source: str, index: int) -> None:
        super().__init__(gm)
        self.source, self.index, self.products = source, index, 0

    def call_module(self, target, args, kwargs):
        m = self.fetch_attr(target)
        if isinstance(m, SpikingNeuron):
            out = torch.zeros_like(args[0])
            if target == self.source:
                out.view(-1)[self.index] = 1.0
            return out
        if isinstance(m, SpikingMaxPool):
            return m.pool(args[0])
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            self.products += products(m, args[0])
            return torch.zeros_like(m(args[0]))
        return super().call_module(target, args, kwargs)


def brute_force_fanout(snn, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each neuron's fan-out, one forward pass per neuron (``"input"`` too under Poisson encoding)."""
    shapes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: shapes.update({name: o.shape[1:]}))
             for name, m in snn.neurons().items()]
    snn.net(x[:1])
    snn.reset()
    for hook in hooks:
        hook.remove()
    if snn.settings.encoding == "poisson":
        shapes = {"input": x.shape[1:], **shapes}
    maps = {}
    for name, shape in shapes.items():
        fanout = torch.zeros(shape).view(-1)
        for i in range(fanout.numel()):
            counter = OneSpike(snn.net, name, i)
            inp = torch.zeros_like(x[:1])
            if name == "input":
                inp.view(-1)[i] = 1.0
            counter.run(inp)
            fanout[i] = counter.products
        maps[name] = fanout.view(shape)
    return maps


@pytest.mark.parametrize("name", NETWORKS)
def test_fanout_maps_equal_brute_force_counting(name):
    build, size = NETWORKS[name]
    torch.manual_seed(0)
    ann = build().eval()
    x = torch.rand(4, 3, size, size)
    snn = convert(ann, [x], encoding="poisson", maxpool="gate")
    costs = measure_costs(snn, x)
    expected = brute_force_fanout(snn, x)
    assert list(costs.fanout_map) == list(expected) == list(costs.neurons)
    for layer, fanout in expected.items():
        assert torch.equal(costs.fanout_map[layer].float(), fanout), layer
        assert costs.fanout[layer] == pytest.approx(fanout.mean().item())
        assert costs.neurons[layer] == fanout.numel()


def test_a_spike_through_a_2x2_average_pool_reaches_the_10_synapses_of_its_pooled_unit():
    """conv → ReLU → AvgPool2d(2) → Linear(→10): 10 SynOps per spike (the pool's own addition is not counted, as the
    ANN's MACs do not count it); the fan-out averaged from MACs per neuron was 2.5."""
    torch.manual_seed(0)
    ann = pooled_linear().eval()
    x = torch.rand(8, 3, 8, 8)
    snn = convert(ann, [x])
    costs = measure_costs(snn, x)
    assert torch.equal(costs.fanout_map["1"], torch.full((4, 8, 8), 10.0, dtype=torch.float64))
    assert costs.ann_macs == 4 * 8 * 8 * 27 + 64 * 10 and costs.encoding_macs == 4 * 8 * 8 * 27
    result = evaluate(snn, [(x, ann(x).argmax(1))], T=[4, 16], progress=False)
    for t in (4, 16):
        assert result.spikes_per_image[t] > 0
        assert result.synops_per_image[t] == 10 * result.spikes_per_image[t]


def test_evaluate_counts_each_neurons_spikes_times_its_own_fanout():
    """Signed burst neurons fire unevenly across a residual network; SynOps = Σ |spikes| × brute-force fan-out."""
    torch.manual_seed(0)
    ann = Residual().eval()
    x = torch.rand(6, 3, 9, 9)
    snn = convert(ann, [x], neuron="signed", burst=2, threshold="99%")
    fanout = brute_force_fanout(snn, x)
    spikes = {name: torch.zeros(()) for name in fanout}

    def count(m, inputs, out, name):
        spikes[name] = spikes[name] + (out.abs() / m.threshold).round().sum(0)

    hooks = [m.register_forward_hook(lambda m, i, o, name=name: count(m, i, o, name))
             for name, m in snn.neurons().items()]
    try:
        result = evaluate(snn, [(x[:4], torch.zeros(4)), (x[4:], torch.zeros(2))], T=[8], progress=False)
    finally:
        for hook in hooks:
            hook.remove()
    per_neuron = sum(float((spikes[n] * fanout[n]).sum()) for n in fanout) / 6
    assert result.synops_per_image[8] == pytest.approx(per_neuron, rel=1e-9)
    assert result.spikes_per_image[8] == pytest.approx(sum(float(s.sum()) for s in spikes.values()) / 6)
    mean_fanout = sum(float(spikes[n].sum()) * float(fanout[n].mean()) for n in fanout) / 6
    assert result.synops_per_image[8] != pytest.approx(mean_fanout, rel=1e-3)  # the old count × mean fan-out


def test_poisson_input_spikes_are_weighted_by_the_inputs_fanout():
    torch.manual_seed(0)
    ann = strided().eval()
    x = torch.rand(3, 3, 9, 9)
    snn = convert(ann, [x], encoding="poisson")
    costs = measure_costs(snn, x)
    assert costs.encoding_macs == 0
    fanout = costs.fanout_map["input"]
    inputs = []
    hook = snn.net.register_forward_pre_hook(lambda m, args: inputs.append(args[0].abs().sum(0)))
    try:
        _, counts, synops = snn.run(x, [2, 5], fast=False, fanout=costs.fanout_map)
    finally:
        hook.remove()
    for t in (2, 5):
        seen = sum(inputs[:t])
        assert counts[t]["input"] == int(seen.sum())
        assert synops[t]["input"] == pytest.approx(float((seen * fanout).sum()), rel=1e-12)


def test_card_puts_snn_and_ann_energy_side_by_side_and_says_when_the_snn_costs_more():
    folder = Path(__file__).resolve().parents[1] / "checkpoints" / "resnet20-cifar10-rmp"
    config, metrics = (json.loads((folder / name).read_text()) for name in ("config.json", "metrics.json"))
    metrics["ann_energy_uJ_per_image"] = 100.0
    metrics["snn"] = [dict(row, energy_uJ_per_image=uJ) for row, uJ in zip(metrics["snn"][:3], (50.0, 100.0, 250.0))]
    card = model_card(config, metrics, "resnet20-cifar10-rmp")
    assert "| SNN µJ / image | ANN µJ / image |" in card and "| 50 | 100 |" in card and "| 250 | 100 |" in card
    assert "**The SNN costs more energy than its ANN at T = 4** (up to 2.50× the ANN's)" in card
    assert metrics["energy_model"]["source"] in card and "ac_pJ = 0.9" in card
    metrics["ann_energy_uJ_per_image"] = 300.0
    assert "The SNN costs less energy than its ANN at every T above." in model_card(config, metrics, "x")
