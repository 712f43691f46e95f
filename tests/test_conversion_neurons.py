"""Single-neuron physics: rates under constant input, and the spiking max-pool gate."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rmp_zoo.conversion import SpikingMaxPool, SpikingNeuron


pytestmark = pytest.mark.usefixtures("one_thread")


currents = st.lists(st.floats(-2.0, 6.0, allow_nan=False, width=32), min_size=1, max_size=16)


def rates(neuron: SpikingNeuron, x: torch.Tensor, T: int) -> torch.Tensor:
    """Fraction of the T steps in which each neuron spiked under constant input ``x``."""
    spikes = sum((neuron(x) > 0).double() for _ in range(T))
    return spikes / T


@settings(max_examples=30, deadline=None)
@given(x=currents, theta=st.floats(0.25, 4.0), T=st.integers(1, 300))
def test_rmp_rate_is_clipped_input_over_threshold(x, theta, T):
    x = torch.tensor(x)
    rate = rates(SpikingNeuron(theta, "rmp"), x, T)
    expected = (x.double() / theta).clamp(0, 1)
    assert torch.all((rate - expected).abs() <= 1 / T + 1e-6)


@settings(max_examples=30, deadline=None)
@given(x=currents, theta=st.floats(0.25, 4.0), T=st.integers(1, 300))
def test_half_threshold_start_rounds_to_nearest(x, theta, T):
    """Starting at θ/2 turns the floor into rounding: the error halves (the QCFS correspondence)."""
    x = torch.tensor(x)
    rate = rates(SpikingNeuron(theta, "rmp", initial_potential=0.5), x, T)
    expected = (x.double() / theta).clamp(0, 1)
    assert torch.all((rate - expected).abs() <= 0.5 / T + 1e-6)


@settings(max_examples=30, deadline=None)
@given(x=currents, theta=st.floats(0.25, 4.0), T=st.integers(1, 300))
def test_hard_reset_never_fires_more_than_rmp(x, theta, T):
    x = torch.tensor(x)
    assert torch.all(rates(SpikingNeuron(theta, "if"), x, T) <= rates(SpikingNeuron(theta, "rmp"), x, T))


def test_hard_reset_loses_the_residual():
    # x/θ = 0.6: the IF neuron spikes every second step (0.6, 1.2 → reset to 0), losing 0.2 per spike.
    x = torch.tensor([0.6])
    assert rates(SpikingNeuron(1.0, "if"), x, 100).item() == 0.5
    assert abs(rates(SpikingNeuron(1.0, "rmp"), x, 100).item() - 0.6) <= 0.01


def test_reset_forgets_state():
    neuron = SpikingNeuron(1.0, "rmp")
    first = [neuron(torch.tensor([0.7])).item() for _ in range(5)]
    neuron.reset()
    assert [neuron(torch.tensor([0.7])).item() for _ in range(5)] == first


def test_spike_output_carries_threshold():
    out = SpikingNeuron(2.5)(torch.tensor([3.0, 1.0]))
    assert out.tolist() == [2.5, 0.0]


def test_gated_max_pool_passes_the_fastest_unit():
    """Four neurons with different constant inputs share one 2×2 window: the gate settles on the fastest one."""
    theta, T = 1.0, 400
    neurons = SpikingNeuron(theta)
    pool = SpikingMaxPool(torch.nn.MaxPool2d(2))
    x = torch.tensor([0.2, 0.7, 0.5, 0.1]).reshape(1, 1, 2, 2)
    mean = sum(pool(neurons(x)) for _ in range(T)) / T
    assert mean.shape == (1, 1, 1, 1)
    assert abs(mean.item() - 0.7) <= 5 / T


@settings(max_examples=40, deadline=None)
@given(x=st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=1, max_size=60), theta=st.floats(0.5, 4.0))
def test_signed_neuron_count_tracks_its_summed_input(x, theta):
    """With inputs of at most θ per step, a signed neuron's net spike count after every step is its summed input
    rounded to whole thresholds (never below zero): over-firing on early input is taken back."""
    neuron = SpikingNeuron(theta, "signed", initial_potential=0.5)
    total, net = 0.0, 0.0
    for step in x:
        current = step * theta
        net += round(float(neuron(torch.tensor([current], dtype=torch.float64))) / theta)  # -1, 0 or +1
        total += current
        target = total / theta + 0.5
        if abs(target - round(target)) > 1e-6:  # skip exact rounding ties, where float error decides
            assert net == max(0, int(torch.tensor(target).floor()))


def test_signed_neuron_takes_back_what_rmp_keeps():
    """+θ then -θ: both neurons fire once; the signed one then fires -1, so its count returns to the input's 0."""
    inputs = [torch.tensor([1.0]), torch.tensor([-1.0])]
    rmp, signed = SpikingNeuron(1.0, "rmp", 0.5), SpikingNeuron(1.0, "signed", 0.5)
    assert [float(rmp(x)) for x in inputs] == [1.0, 0.0]
    assert [float(signed(x)) for x in inputs] == [1.0, -1.0]


@settings(max_examples=20, deadline=None)
@given(x=currents, theta=st.floats(0.25, 4.0), T=st.integers(1, 100))
def test_signed_equals_rmp_under_constant_input(x, theta, T):
    x = torch.tensor(x)
    rmp, signed = SpikingNeuron(theta, "rmp", 0.5), SpikingNeuron(theta, "signed", 0.5)
    for _ in range(T):
        assert torch.equal(rmp(x), signed(x))


@settings(max_examples=40, deadline=None)
@given(x=st.lists(st.floats(-3.0, 3.0, allow_nan=False), min_size=1, max_size=40), theta=st.floats(0.5, 4.0),
       neuron=st.sampled_from(["rmp", "signed"]))
def test_burst_neuron_catches_up_within_one_spike_per_step(x, theta, neuron):
    """With bursts large enough for the input, the net count after t steps is the summed input in whole thresholds,
    rounded, within [0, t] (signed) or never below what was fired (rmp, which cannot take spikes back)."""
    cell = SpikingNeuron(theta, neuron, initial_potential=0.5, burst=8)
    total, net = 0.0, 0
    for t, step in enumerate(x, start=1):
        out = round(float(cell(torch.tensor([step * theta], dtype=torch.float64))) / theta)
        assert -8 <= out <= 8 and (neuron == "signed" or out >= 0)
        net, total = net + out, total + step * theta
        assert 0 <= net <= t
        target = total / theta + 0.5
        if abs(target - round(target)) > 1e-6:
            rounded = min(t, max(0, int(torch.tensor(target).floor())))
            assert net == rounded if neuron == "signed" else net >= rounded


def test_burst_counts_every_spike_and_rejects_hard_reset():
    cell = SpikingNeuron(1.0, "rmp", burst=3)
    cell.count_spikes = True
    assert float(cell(torch.tensor([0.5]))) == 0.0      # t=1: potential 0.5
    assert float(cell(torch.tensor([2.7]))) == 2.0      # t=2: potential 3.2, but at most 2 spikes in 2 steps
    assert int(cell.spike_count) == 2
    with pytest.raises(ValueError, match="reset by subtraction"):
        SpikingNeuron(1.0, "if", burst=2)
