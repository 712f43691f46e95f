"""Integer spike convolutions: the digit pairs rebuild the weights, the result is as exact as the fp32 convolution,
and a simulation with them fires the spikes of one without them."""
import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rmp_zoo.conversion import SpikingNeuron, convert, spike_conv
from rmp_zoo.conversion.spike_conv import SpikeConv2d, digit_pairs, float_convs, spike_codes, spike_coding

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not spike_conv.integer_convs_supported(),
                                 reason="this CPU or torch build has no fast int8 convolutions (VNNI/AMX, oneDNN)")]

NEURONS = [("rmp", 1), ("if", 1), ("signed", 1), ("rmp", 2), ("signed", 2), ("signed", 5)]


def spikes_of(neuron: SpikingNeuron, shape: tuple, seed: int = 0) -> torch.Tensor:
    """θ·s with s what the neuron may fire in one step: 0..burst, or -burst..burst when signed."""
    gen = torch.Generator().manual_seed(seed)
    low = -neuron.burst if neuron.neuron == "signed" else 0
    s = torch.randint(low, neuron.burst + 1, shape, generator=gen) * (torch.rand(shape, generator=gen) < 0.3)
    return (s * neuron.threshold).contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("base", [128, 64, 32, 16])
def test_digit_pairs_rebuild_the_weight_to_fp32_precision(base):
    """Each channel's weights come back to within 2^-23 of its largest |w|, digits within int8 and their bounds."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(6, 4, 3, 3, generator=gen) * torch.logspace(-6, 1, 6).view(-1, 1, 1, 1)
    w[2, :, 1] = 1e-9  # tiny weights beside large ones
    w[3] = 0  # a dead channel
    pairs = digit_pairs(w, base)
    rebuilt = torch.zeros_like(w, dtype=torch.float64)
    for digits, scale in pairs:
        high, low = digits.double().chunk(2, dim=1)
        assert low.abs().max() <= base // 2
        rebuilt += (base * high + low) * scale.double().view(-1, 1, 1, 1)
    largest = w.abs().flatten(1).amax(1).double().view(-1, 1, 1, 1)
    assert ((rebuilt - w.double()).abs() <= 2.0**-23 * largest).all()
    assert len(pairs) == (2 if base >= 32 else 3)


@pytest.mark.parametrize("neuron,burst", NEURONS)
@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 1), (1, 0)])
def test_integer_convolution_is_as_exact_as_fp32(neuron, burst, stride, padding):
    """Against the exact (float64) result, the integer convolution errs by no more than fp32 rounding allows: a few
    units of 2^-24 of the summed magnitudes, like the fp32 convolution itself."""
    torch.manual_seed(0)
    source = SpikingNeuron(0.8125, neuron, burst=burst)
    conv = SpikeConv2d.of(nn.Conv2d(32, 24, 3, stride=stride, padding=padding), source).eval()
    x = spikes_of(source, (4, 32, 9, 9))
    with torch.no_grad():
        assert conv.integer(x)
        out = conv.of_codes(spike_codes(x, float(source.threshold), *spike_coding(source)))
        fp32 = conv(x)  # not the source's output: fp32
        source.out = x
        assert torch.equal(conv(x), out)  # the source's output: integer
    w, b = conv.weight.double(), conv.bias.double()
    exact = F.conv2d(x.double(), w, b, stride, padding)
    magnitude = F.conv2d(x.double().abs(), w.abs(), b.abs(), stride, padding)
    bound = 8 * 2.0**-24 * magnitude
    assert ((out - exact).abs() <= bound).all()
    assert ((fp32 - exact).abs() <= bound).all()  # the bound is fp32's own
    assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("neuron,burst", NEURONS)
def test_spike_codes_pair_each_spike_count(neuron, burst):
    """The uint8 input pair is [base·s + zero, s + zero], channel by channel."""
    source = SpikingNeuron(0.3, neuron, burst=burst)
    x = spikes_of(source, (3, 5, 4, 4))
    base, zero = spike_coding(source)
    s = torch.round(x / source.threshold).to(torch.int64)
    codes = spike_codes(x, float(source.threshold), base, zero)
    assert codes.dtype == torch.uint8 and codes.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(codes.long(), torch.cat([base * s + zero, s + zero], 1))
    assert 2 <= base and base * (s.abs().max() if zero else s.max()) + zero <= 255


class Wide(nn.Module):
    """Two 3x3 convolutions over 32 channels (integer ones after conversion) and a residual addition."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.conv1 = nn.Conv2d(32, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        y = F.relu(self.conv1(x))
        x = F.relu(self.conv2(y) + x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2


@pytest.mark.parametrize("neuron,burst", NEURONS[:5])
def test_a_simulation_fires_the_spikes_of_fp32_convolutions(neuron, burst, images, monkeypatch):
    """Integer convolutions replace the fp32 ones where spikes feed them, and every layer fires the same spikes at
    every T; outputs agree to fp32 rounding."""
    torch.manual_seed(0)
    snn = convert(Wide().eval(), [images], neuron=neuron, burst=burst)
    convs = {name for name, m in snn.named_modules() if isinstance(m, SpikeConv2d)}
    assert convs == {"net.conv1", "net.conv2"}
    calls = []
    terms = SpikeConv2d.terms
    monkeypatch.setattr(SpikeConv2d, "terms", lambda self, codes: calls.append(1) or terms(self, codes))
    snn.run(images, 32)
    assert len(calls) == 2 * 32 // 8  # both layers, every chunk of 8 steps
    assert_fires_the_spikes_of_fp32_convolutions(snn, images, [2, 8, 32])


def assert_fires_the_spikes_of_fp32_convolutions(snn, images: torch.Tensor, T: list[int]) -> tuple[dict, dict]:
    """The default simulation against one with fp32 convolutions: the same spikes in every layer at every T, outputs
    within fp32 rounding. Returns the default's (outputs, spikes)."""
    out, spikes = snn.run(images, T, count_spikes=True)
    with float_convs():
        fp32_out, fp32_spikes = snn.run(images, T, count_spikes=True)
    assert spikes == fp32_spikes
    for t in T:
        torch.testing.assert_close(out[t], fp32_out[t], rtol=0, atol=1e-5)
    return out, spikes


def test_integer_convolutions_can_be_switched_off(images, monkeypatch):
    """``RMP_ZOO_INTEGER_CONVS=0`` and ``float_convs()`` leave every convolution in fp32, and so does a small fan-in
    (16 channels × 3×3: two fp32 outputs cost more than the integer sums save)."""
    snn = convert(Wide().eval(), [images])
    conv = snn.net.conv1
    x = spikes_of(conv.source, (2, 32, 8, 8))
    narrow = SpikeConv2d.of(nn.Conv2d(16, 32, 3, padding=1), conv.source)
    grouped = SpikeConv2d.of(nn.Conv2d(32, 32, 3, padding=1, groups=2), conv.source)
    with torch.no_grad():
        assert not narrow.integer(x[:, :16]) and not grouped.integer(x)
        assert conv.integer(x)
        with float_convs():
            assert not conv.integer(x)
        monkeypatch.setenv("RMP_ZOO_INTEGER_CONVS", "0")
        assert not conv.integer(x)
        assert not conv.integer(x.double())
    assert not conv.integer(x.requires_grad_())  # training-style calls keep autograd


def test_weights_state_dict_and_copies_are_those_of_the_plain_network(images):
    """Same state-dict keys and tensors as a Conv2d; copies and pickles work (prepacked weights are rebuilt), and a
    changed weight is packed again."""
    snn = convert(Wide().eval(), [images])
    expected = snn(images, T=8)
    assert "net.conv1.weight" in snn.state_dict() and not any("source" in k for k in snn.state_dict())
    for clone in (copy.deepcopy(snn), pickle.loads(pickle.dumps(snn))):
        assert torch.equal(clone(images, T=8), expected)
        assert any(m is clone.net.conv1.source for m in clone.net.modules())  # the copy's own neuron
    with torch.no_grad():
        snn.net.conv2.weight.data.mul_(0.5)  # no version bump: the packed weights are compared by value
        snn.net.conv2.bias.mul_(0.5)
        changed = snn(images, T=8)
        with float_convs():
            assert torch.allclose(changed, snn(images, T=8), atol=1e-5)
    assert not torch.equal(changed, expected)


class Shapes(nn.Module):
    """Integer convolutions in awkward places: added as the second term, feeding gated max pooling, read twice;
    beside a grouped convolution (fp32) and a convolution called twice (left a plain Conv2d)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.side = nn.Conv2d(32, 32, 1)
        self.conv1 = nn.Conv2d(32, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.grouped = nn.Conv2d(64, 32, 3, padding=1, groups=2)
        self.twice = nn.Conv2d(32, 32, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        y = F.relu(self.side(F.avg_pool2d(x, 3, 1, 1)) + self.conv1(x))
        z = F.relu(self.pool(self.conv2(y)))
        d = self.conv3(z)
        w = F.relu(torch.cat([d, d], 1))
        g = F.relu(self.grouped(w))
        t = F.relu(self.twice(g))
        t = F.relu(self.twice(t))
        return self.fc(F.adaptive_avg_pool2d(t, 1).flatten(1))


def test_awkward_graphs_give_the_step_paths_spikes_and_those_of_fp32_convolutions(images):
    torch.manual_seed(0)
    snn = convert(Shapes().eval(), [images], neuron="signed", burst=2, maxpool="gate")
    assert {n for n, m in snn.named_modules() if isinstance(m, SpikeConv2d)} == {"net.conv1", "net.conv2",
                                                                               "net.conv3", "net.grouped"}
    T = [3, 8, 16]
    ref_out, ref_spikes = snn.run(images, T, mode="step", count_spikes=True)
    out, spikes = assert_fires_the_spikes_of_fp32_convolutions(snn, images, T)
    assert spikes == ref_spikes
    for t in T:
        assert torch.equal(out[t], ref_out[t])


def test_bias_correction_measures_the_ann_in_fp32(images, monkeypatch):
    """Bias correction runs a copy of the network with clipped activations in place of neurons: its convolutions
    see no spikes and must compute in fp32, so the shifts are those of fp32 convolutions."""
    torch.manual_seed(0)
    ann = Wide().eval()
    shifts = convert(ann, [images], bias_correction=8).bias_shifts
    monkeypatch.setenv("RMP_ZOO_INTEGER_CONVS", "0")
    expected = convert(ann, [images], bias_correction=8).bias_shifts
    assert shifts.keys() == expected.keys()
    for name in shifts:
        torch.testing.assert_close(shifts[name], expected[name], rtol=0, atol=1e-5)
