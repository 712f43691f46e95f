"""The fast simulation paths must give the spikes of the step-by-step reference: multi-step simulation (each layer over
a chunk of time steps at once) and the fused neuron kernels (integrate, fire, reset in one compiled kernel)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rmp_zoo.conversion import SpikeConv2d, SpikingMaxPool, SpikingNeuron, convert, neuron_kernel, simulate
from rmp_zoo.conversion import network as network_module
from rmp_zoo.conversion.stats import measure_costs
from rmp_zoo.models.resnet import PadShortcut

pytestmark = pytest.mark.usefixtures("one_thread")


class Residual(nn.Module):
    """Every kind of node the multi-step path treats specially: a held input layer, residual additions (fused into
    the neuron) with a zero-padded strided shortcut, gated max pooling, average pooling and a reshape; at width 32,
    integer spike convolutions (``spike_conv``) too."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.shortcut = PadShortcut(width)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(2 * width, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(self.conv1(x) + x)
        x = F.relu(self.conv2(x) + self.shortcut(x))
        x = F.adaptive_avg_pool2d(self.pool(x), 1)
        return self.fc(x.view(x.size(0), -1))


def residual() -> nn.Module:
    torch.manual_seed(0)
    return Residual().eval()


def wide_residual() -> nn.Module:
    torch.manual_seed(0)
    return Residual(32).eval()


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(192, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 5)).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2


@pytest.mark.parametrize("make", [residual, mlp])
@pytest.mark.parametrize("neuron,burst", [("rmp", 1), ("if", 1), ("signed", 1), ("rmp", 2), ("signed", 2)])
@pytest.mark.parametrize("encoding", ["direct", "poisson"])
def test_multi_step_gives_the_step_paths_spikes(make, neuron, burst, encoding, images):
    """The same spikes in every layer at every requested T, the same SynOps, and the same outputs (bitwise here; in
    general up to the summation order a conv/linear library picks for a batch of B against one of chunk·B)."""
    assert_multi_step_gives_the_step_paths_spikes(
        convert(make(), [images], neuron=neuron, burst=burst, encoding=encoding, initial_potential=0.5,
                maxpool="gate"), images)


@pytest.mark.parametrize("neuron,burst", [("rmp", 1), ("if", 1), ("signed", 1), ("rmp", 2), ("signed", 2)])
def test_multi_step_gives_the_step_paths_spikes_through_integer_convolutions(neuron, burst, images):
    """The same at width 32, where spikes feed integer convolutions (``spike_conv``): written by the neuron kernels
    and added up there in the multi-step path, from the eager codes and additions step by step."""
    snn = convert(wide_residual(), [images], neuron=neuron, burst=burst, initial_potential=0.5, maxpool="gate")
    assert any(isinstance(m, SpikeConv2d) for m in snn.modules())
    assert_multi_step_gives_the_step_paths_spikes(snn, images)


def assert_multi_step_gives_the_step_paths_spikes(snn, images: torch.Tensor) -> None:
    fanout = measure_costs(snn, images).fanout_map
    T = [1, 3, 8, 16, 24]
    ref_out, ref_spikes, ref_synops = snn.run(images, T, mode="step", fanout=fanout)
    assert all(ref_spikes[24][name] > 0 for name in snn.neurons())
    for chunk in (None, 2, 4):
        out, spikes, synops = snn.run(images, T, chunk=chunk, fanout=fanout)
        assert spikes == ref_spikes and synops == ref_synops
        for t in T:
            torch.testing.assert_close(out[t], ref_out[t], rtol=0, atol=1e-5)
            assert torch.equal(out[t], ref_out[t])
    # without statistics, chunks need not end at every requested T
    for t, out in snn.run(images, T, chunk=4)[0].items():
        assert torch.equal(out, ref_out[t])
    assert all(n.v is None for n in snn.neurons().values())


def test_multi_step_stacks_time_steps_along_the_batch(images, monkeypatch):
    """Chunks of ``chunk`` steps (a power of two) fill each layer call; the input layer runs once."""
    snn = convert(residual(), [images], maxpool="gate")
    lengths = []
    scan = SpikingNeuron.scan

    def recording(self, x, steps, *args, **kwargs):
        lengths.append((steps, len(x)))
        return scan(self, x, steps, *args, **kwargs)

    monkeypatch.setattr(SpikingNeuron, "scan", recording)
    snn.run(images, 16, chunk=5)  # rounded down to 4
    neurons = len(snn.neurons())
    assert lengths[0] == (4, len(images))  # the first layer holds its input: one image batch for 4 steps
    assert lengths[1:neurons] == [(4, 4 * len(images))] * (neurons - 1)
    assert len(lengths) == 4 * neurons
    # by default, as many steps as keep the input layer's output within MULTI_STEP_BYTES when stacked
    lengths.clear()
    per_step = len(images) * 8 * 8 * 8 * 4
    monkeypatch.setitem(network_module.MULTI_STEP_BYTES, "cpu", 8 * per_step)
    snn.run(images, 16)
    assert {steps for steps, _ in lengths} == {8}


def test_a_large_batch_is_simulated_in_parts_that_fit_the_budget(images, monkeypatch):
    """With room for 8 steps of 3 images, 8 images run as 3 + 3 + 2: the same spikes, outputs and SynOps (these up to
    float64 rounding, being sums over the parts)."""
    snn = convert(residual(), [images], neuron="signed", burst=2, maxpool="gate")
    fanout = measure_costs(snn, images).fanout_map
    T = [4, 16, 24]
    expected = snn.run(images, T, mode="step", fanout=fanout)
    per_image = 8 * 8 * 8 * 4  # the input layer's output, float32
    monkeypatch.setitem(network_module.MULTI_STEP_BYTES, "cpu", 8 * 3 * per_image)
    batches = []
    scan = SpikingNeuron.scan
    monkeypatch.setattr(SpikingNeuron, "scan", lambda self, x, steps, *a, **k: batches.append(
        len(x) if k.get("held") else len(x) // steps) or scan(self, x, steps, *a, **k))
    out, spikes, synops = snn.run(images, T, fanout=fanout)
    assert set(batches) == {3, 2}
    assert spikes == expected[1]
    for t in T:
        torch.testing.assert_close(out[t], expected[0][t], rtol=0, atol=1e-5)
        assert synops[t] == pytest.approx(expected[2][t], rel=1e-12)


def test_forward_hooks_keep_the_step_path(images):
    """Hooks (the per-layer error and bias correction use them) see one call per time step."""
    snn = convert(residual(), [images], maxpool="gate")
    calls = []
    handle = next(iter(snn.neurons().values())).register_forward_hook(lambda m, i, o: calls.append(o.shape))
    snn(images, T=6)
    handle.remove()
    assert calls == [(8, 8, 8, 8)] * 6


class BatchFromInput(nn.Module):
    """Reshapes with the batch size read off the input: fine step by step, wrong for stacked time steps."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.size(0)
        return self.fc(F.relu(self.conv(x)).reshape(b, -1))


def test_a_graph_that_reshapes_across_the_batch_falls_back_to_steps(images):
    torch.manual_seed(0)
    snn = convert(BatchFromInput().eval(), [images])
    expected = snn.run(images, [4, 8], mode="step", count_spikes=True)
    with pytest.warns(RuntimeWarning, match="step by step"):
        got = snn.run(images, [4, 8], chunk=4, count_spikes=True)
    assert got[1] == expected[1] and all(torch.equal(got[0][t], expected[0][t]) for t in (4, 8))
    assert snn(images, T=8).shape == (8, 3)  # and from then on, without a new warning


def test_op_by_op_gives_the_fused_kernels_results(images):
    snn = convert(residual(), [images], neuron="signed", burst=2, maxpool="gate")
    fused = snn.run(images, [4, 8], count_spikes=True)
    with neuron_kernel.op_by_op():
        assert not neuron_kernel.kernels().compiled
        eager = snn.run(images, [4, 8], count_spikes=True)
    assert eager[1] == fused[1] and all(torch.equal(eager[0][t], fused[0][t]) for t in (4, 8))


def test_simulate_passes_the_mode_through(images):
    snn = convert(residual(), [images], maxpool="gate")
    multi, step = simulate(snn, images, [2, 6]), simulate(snn, images, [2, 6], mode="step")
    assert all(torch.equal(multi[t], step[t]) for t in (2, 6))
    with pytest.raises(ValueError, match="mode='steps'"):
        simulate(snn, images, 4, mode="steps")


def test_mode_and_chunk_are_checked(images):
    snn = convert(mlp(), [images])
    with pytest.raises(ValueError, match="mode='steps'.*'multi'.*'step'"):
        snn.run(images, 4, mode="steps")
    with pytest.raises(ValueError, match="chunk=0"):
        snn.run(images, 4, chunk=0)


def reference_step(neuron: SpikingNeuron, x: torch.Tensor, state: dict) -> torch.Tensor:
    """One step of each neuron kind as separate tensor ops (how the neurons were written before the fused kernels)."""
    theta = neuron.threshold
    if "v" not in state:
        state.update(v=x + theta * neuron.initial_potential, net=torch.zeros_like(x), count=torch.zeros_like(x), t=0)
    else:
        state["v"] = state["v"] + x
    v, net = state["v"], state["net"]
    state["t"] += 1
    if neuron.burst > 1:
        whole = torch.floor(v / theta)
        spikes = torch.minimum(whole.clamp(0, neuron.burst), state["t"] - net)
        if neuron.neuron == "signed":
            spikes = spikes - torch.minimum((-whole).clamp(0, neuron.burst), net)
    else:
        spikes = (v >= theta).to(v.dtype)
        if neuron.neuron == "signed":
            spikes = spikes - ((v < 0) & (net > 0)).to(v.dtype)
    state["net"] = net + spikes
    state["count"] = state["count"] + spikes.abs()
    state["v"] = v * (1 - spikes) if neuron.neuron == "if" else v - spikes * theta
    return spikes * theta


@pytest.mark.parametrize("neuron,burst", [("rmp", 1), ("if", 1), ("signed", 1), ("rmp", 3), ("signed", 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_kernels_equal_the_op_by_op_neuron(kernels, neuron, burst, dtype):
    """Step by step, in chunks, on a held input and with a fused residual addition: outputs, potentials and counts
    bitwise equal to the op-by-op formulas, compiled or eager."""
    gen = torch.Generator().manual_seed(burst)
    theta, steps, batch = 0.7, 12, 3
    x = (torch.randn(steps * batch, 5, 4, 4, generator=gen, dtype=dtype) * 1.2).contiguous(
        memory_format=torch.channels_last)  # time steps stacked along the batch, as the multi-step path has them
    x[0, 0, 0] = torch.tensor([theta, 0.0, -theta, 2 * theta], dtype=dtype)  # on the firing edges
    plus = torch.randn(x.shape, generator=gen, dtype=dtype) * 0.5
    chunks = [(0, 4), (4, 1), (5, 1), (6, 2), (8, 4)]  # (first step, steps): chunks and single steps mixed
    for case in ("held", "stacked", "plus"):
        cell = SpikingNeuron(theta, neuron, initial_potential=0.5, burst=burst)
        cell.count_spikes = True
        step_input = {"held": lambda t: x[:batch], "stacked": lambda t: x[t * batch:(t + 1) * batch],
                      "plus": lambda t: x[t * batch:(t + 1) * batch] + plus[t * batch:(t + 1) * batch]}[case]
        state: dict = {}
        expected = torch.cat([reference_step(cell, step_input(t), state) for t in range(steps)])
        parts = []
        for start, length in chunks:
            rows = slice(start * batch, (start + length) * batch)
            if length == 1:
                parts.append(cell(step_input(start)).clone())
            elif case == "held":
                parts.append(cell.scan(x[:batch], length, held=True))
            else:
                parts.append(cell.scan(x[rows].clone(), length, plus=(plus[rows],) if case == "plus" else ()))
        got = torch.cat(parts)
        assert neuron_kernel.kernels().compiled == (kernels == "compiled")
        assert torch.equal(got, expected), case
        assert torch.equal(cell.v, state["v"]) and torch.equal(cell.spike_count, state["count"].float()), case
        assert got.abs().sum() > 0


def test_gated_max_pool_scan_equals_its_steps():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6 * 2, 3, 4, 4, generator=gen)
    one, many = SpikingMaxPool(nn.MaxPool2d(2)), SpikingMaxPool(nn.MaxPool2d(2))
    expected = torch.cat([one(step) for step in x.chunk(6)])
    assert torch.equal(torch.cat([many.scan(x[:8], 4), many.scan(x[8:], 2)]), expected)


def test_compile_failure_falls_back_to_eager_with_a_warning(monkeypatch, images):
    monkeypatch.setattr(neuron_kernel, "_KERNELS", None)
    snn = convert(residual(), [images], maxpool="gate")
    expected = snn.run(images, [8], mode="step", count_spikes=True)
    kernels = neuron_kernel.kernels()

    def broken(*args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setitem(kernels.scans, "rmp", broken)
    with pytest.warns(RuntimeWarning, match="RMP_ZOO_COMPILE=0"):
        got = snn.run(images, [8], chunk=4, count_spikes=True)
    assert not kernels.compiled and got[1] == expected[1] and torch.equal(got[0][8], expected[0][8])
    monkeypatch.setattr(neuron_kernel, "_KERNELS", None)
