"""ANN → SNN conversion end to end, on tiny networks that run in milliseconds on a CPU."""
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from rmp_zoo.conversion import SpikingNetwork, calibrate, convert, correct_bias, evaluate, simulate
from rmp_zoo.conversion.fold import fold_batchnorm
from rmp_zoo.conversion.trace import prepare
from rmp_zoo.models import create_model
from rmp_zoo.models.resnet import PadShortcut


pytestmark = pytest.mark.usefixtures("one_thread")

def randomize_bn(model: nn.Module) -> nn.Module:
    """BatchNorm with non-trivial statistics, so that folding has something to get wrong."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.normal_(0, 0.1, generator=g)
    return model


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return randomize_bn(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(8 * 4 * 4, 10),
    )).eval()


class FunctionalResNet(nn.Module):
    """A public-model style residual net: functional ReLUs in three spellings and a zero-padded shortcut."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.shortcut = PadShortcut(8)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = out.relu()
        out = F.adaptive_avg_pool2d(out, 1)
        return self.fc(F.dropout(out.view(out.size(0), -1), 0.2, self.training))


def functional_resnet() -> nn.Module:
    torch.manual_seed(0)
    return randomize_bn(FunctionalResNet()).eval()


class Spellings(nn.Module):
    """Every ReLU spelling, in-place ones used the way real code uses them (result ignored, variable reused)."""

    def __init__(self) -> None:
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(6, 6) for _ in range(7))
        self.relu = nn.ReLU(inplace=True)  # reused at two sites, like torchvision's ResNet
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.fcs
        x = F.relu(f[0](x))
        x = torch.relu(f[1](x))
        x = f[2](x).relu()
        y = f[3](x)
        F.relu(y, inplace=True)
        y = f[4](y)
        y.relu_()
        x = self.relu(f[5](y))
        x = self.relu(f[6](x))
        return self.head(x)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def error(snn: SpikingNetwork, ann: nn.Module, x: torch.Tensor, T: list[int]) -> dict[int, float]:
    ref = ann(x)
    return {t: (out - ref).abs().max().item() for t, out in simulate(snn, x, T).items()}


@pytest.mark.parametrize("make", [small_cnn, functional_resnet])
def test_bn_folding_is_exact(make, images):
    ann = make()
    folded = prepare(make(), maxpool="error")
    fold_batchnorm(folded)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    torch.testing.assert_close(folded(images), ann(images), atol=1e-5, rtol=0)


@pytest.mark.parametrize("make", [small_cnn, functional_resnet])
def test_snn_approaches_ann_as_one_over_T(make, images):
    ann = make()
    snn = convert(ann, [images])
    err = error(snn, ann, images, [16, 256])
    assert err[256] * 4 < err[16]
    assert err[256] < 0.02 * ann(images).abs().max().item()


def test_every_relu_spelling_becomes_its_own_neuron():
    torch.manual_seed(0)
    ann = Spellings().eval()
    x = torch.randn(32, 6)
    snn = convert(ann, [x])
    assert len(snn.thresholds()) == 7
    err = error(snn, ann, x, [16, 256])
    assert err[256] * 4 < err[16]
    assert err[256] < 0.02


def test_one_simulation_equals_separate_runs(images):
    ann = functional_resnet()
    for encoding in ("direct", "poisson"):
        snn = convert(ann, [images], encoding=encoding)
        joint = simulate(snn, images, [1, 3, 8, 16])
        assert list(joint) == [1, 3, 8, 16]
        for t, out in joint.items():
            assert torch.equal(out, snn(images, T=t))


def test_fast_path_equals_step_by_step(images):
    ann = functional_resnet()
    for encoding in ("direct", "poisson"):
        snn = convert(ann, [images], encoding=encoding, initial_potential=0.5)
        (fast, fast_spikes), (plain, plain_spikes) = (snn.run(images, [1, 7, 32], fast=f, count_spikes=True)
                                                      for f in (True, False))
        assert fast_spikes == plain_spikes  # the same spikes in every layer, cumulatively at each T
        for t in fast:
            assert torch.equal(fast[t], plain[t])
    # the input layer really is outside the time loop
    assert [n.target for n in snn.static.graph.nodes if n.op == "call_module"] == ["stem"]


def test_nothing_leaks_between_calls(images):
    snn = convert(small_cnn(), [images])
    first = snn(images, T=8)
    snn(images[:3] * 2, T=5)
    assert torch.equal(snn(images, T=8), first)
    assert all(n.v is None for n in snn.neurons().values())


def test_channels_last_input(images):
    ann = functional_resnet()
    snn = convert(ann, [images])
    expected = snn(images, T=16)
    snn = snn.to(memory_format=torch.channels_last)
    out = snn(images.to(memory_format=torch.channels_last), T=16)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_poisson_encoding_is_seeded_and_converges(images):
    ann = small_cnn()
    snn = convert(ann, [images], encoding="poisson", seed=3)
    assert torch.equal(snn(images, T=4), snn(images, T=4))
    assert not torch.equal(snn(images, T=4), convert(ann, [images], encoding="poisson", seed=4)(images, T=4))
    err = error(snn, ann, images, [4, 256])
    assert err[256] * 2 < err[4]


def test_threshold_dict_round_trip(images, tmp_path):
    ann = small_cnn()
    snn = convert(ann, [images], threshold="99%", neuron="if", initial_potential=0.5)
    again = convert(ann, threshold=snn.thresholds(), neuron="if", initial_potential=0.5)
    assert again.thresholds() == snn.thresholds()
    assert torch.equal(again(images, T=16), snn(images, T=16))
    state = snn.state_dict()
    assert {f"net.{name}.threshold" for name in snn.thresholds()} <= set(state)
    # loading a state dict restores the thresholds, as a zoo checkpoint would
    other = convert(ann, threshold={name: 1.0 for name in snn.thresholds()}, neuron="if", initial_potential=0.5)
    save_file(state, tmp_path / "snn.safetensors")
    other.load_state_dict(load_file(tmp_path / "snn.safetensors"))
    assert torch.equal(other(images, T=16), snn(images, T=16))


def test_threshold_methods_and_scale(images):
    ann = small_cnn()
    peak = convert(ann, [images]).thresholds()
    assert convert(ann, [images], threshold="100%").thresholds() == pytest.approx(peak)
    median = convert(ann, [images], threshold="50%").thresholds()
    assert all(median[k] < peak[k] for k in peak)
    doubled = convert(ann, [images], scale=2.0)
    assert doubled.thresholds() == pytest.approx({k: 2 * v for k, v in peak.items()})
    assert (doubled.settings.scale, doubled.threshold_method, doubled.settings.neuron) == (2.0, "max", "rmp")


def test_percentile_from_a_bounded_sample(images, monkeypatch):
    """With more activations than the sample holds, the percentile comes from a uniform subsample."""
    ann = small_cnn()
    exact = convert(ann, [images], threshold="99%").thresholds()
    monkeypatch.setattr(calibrate, "_SAMPLE_CAP", 300)
    sampled = convert(ann, [images[:2], images[2:5], images[5:]], threshold="99%").thresholds()
    assert sampled == pytest.approx(exact, rel=0.15)


def test_ann_is_left_untouched(images):
    ann = small_cnn().train()
    before = {k: v.clone() for k, v in ann.state_dict().items()}
    convert(ann, [images], max_batches=1)
    assert ann.training
    assert all(torch.equal(before[k], v) for k, v in ann.state_dict().items())


def test_resnet20_qcfs_with_trained_thresholds():
    ann = create_model("resnet20", activation="qcfs").eval()
    for i, m in enumerate(m for m in ann.modules() if hasattr(m, "threshold")):
        m.threshold.data.fill_(1.0 + i / 10)
    snn = convert(ann, threshold="trained", initial_potential=0.5, scale=1.5)
    thresholds = list(snn.thresholds().values())
    assert len(thresholds) == 19
    assert thresholds == pytest.approx([1.5 * (1.0 + i / 10) for i in range(19)])
    x = torch.rand(1, 3, 32, 32)
    fast, plain = snn.run(x, [2], mode="step")[0], simulate(snn, x, [2], fast=False)
    assert fast[2].shape == (1, 10)
    assert torch.equal(fast[2], plain[2])
    # multi-step: at batch 1 the readout layer sums in another order for 2 stacked steps (a 1e-7 difference here)
    torch.testing.assert_close(simulate(snn, x, [2])[2], plain[2], rtol=0, atol=1e-5)


def test_vgg16_with_max_thresholds():
    x = torch.rand(1, 3, 32, 32)
    snn = convert(create_model("vgg16").eval(), [x])
    assert len(snn.thresholds()) == 15
    assert snn(x, T=2).shape == (1, 10)


def test_max_pooling_is_refused_by_name_when_asked(images):
    ann = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 2))
    with pytest.raises(ValueError, match=r"layer '2' \(MaxPool2d\).*average pooling"):
        convert(ann, [images], maxpool="error")


def test_gated_max_pooling_converges(images):
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 4)).eval()
    snn = convert(ann, [images], maxpool="gate")
    err = error(snn, ann, images, [16, 256])
    assert err[256] * 2 < err[16]


class Sigmoidal(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.sigmoid(x))


def test_unsupported_op_names_node_and_source_line():
    with pytest.raises(ValueError, match=r"node 'sigmoid'.*test_conversion\.py:\d+.*torch\.sigmoid\(x\)"):
        convert(Sigmoidal(), [torch.rand(2, 4)])


def test_argument_errors(images):
    with pytest.raises(ValueError, match="calibration"):
        convert(small_cnn(), threshold="max")
    with pytest.raises(ValueError, match="trained.*plain ReLU"):
        convert(small_cnn(), threshold="trained")
    with pytest.raises(ValueError, match="unknown neuron"):
        convert(small_cnn(), [images], neuron="lif")
    with pytest.raises(ValueError, match="missing"):
        convert(small_cnn(), threshold={"2": 1.0})
    with pytest.raises(ValueError, match=r"BatchNorm must directly follow.*layer '0'"):
        convert(nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 1)), [images])


def test_evaluate_reports_accuracy_spikes_and_energy(images):
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Flatten(), nn.Linear(192, 32), nn.ReLU(), nn.Linear(32, 5)).eval()
    labels = ann(images).argmax(1)
    snn = convert(ann, [images])
    result = evaluate(snn, [(images[:4], labels[:4]), (images[4:], labels[4:])], T=[1, 64], ann=ann, progress=False)
    assert result.num_images == 8 and result.ann_top1 == 100.0
    assert result.top1[64] >= 75.0
    assert result.ann_macs_per_image == 192 * 32 + 32 * 5
    assert result.encoding_macs_per_image == 192 * 32
    # the hidden layer's spikes each reach the 5 output units
    spikes = result.spikes_per_image[64]
    assert result.synops_per_image[64] == pytest.approx(5 * spikes)
    assert result.firing_rate[64]["2"] == pytest.approx(spikes / (32 * 64))
    assert result.energy_uJ_per_image[64] == pytest.approx((5 * spikes * 0.9 + 192 * 32 * 4.6) * 1e-6)
    assert result.energy_model["mac_pJ"] == 4.6 and result.energy_model["ac_pJ"] == 0.9
    json.dumps(result.to_dict())


def test_bias_correction_cancels_the_mean_error_at_its_T():
    """At T=8 the corrected network's mean output error (what a bias can fix) falls several-fold on unseen inputs."""
    g = torch.Generator().manual_seed(0)
    calibration, held_out = torch.rand(64, 3, 8, 8, generator=g), torch.rand(64, 3, 8, 8, generator=g)
    ann = functional_resnet()
    snn = convert(ann, [calibration], threshold="99.9%", initial_potential=0.5)
    reference = ann(held_out)

    def mean_error() -> float:
        return (snn(held_out, T=8) - reference).mean(0).abs().mean().item()

    before = mean_error()
    shifts = correct_bias(snn, [(calibration, None)], T=8)
    assert list(shifts) == list(snn.neurons())
    assert mean_error() < before / 3
    assert snn.config()["bias_correction"] == {"T": 8, "images": 64}


def test_bias_correction_gives_a_bias_free_layer_one():
    ann = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    x = torch.rand(4, 3, 8, 8)
    snn = convert(ann, [x])
    correct_bias(snn, [x], T=4)
    assert snn.net.get_submodule("0").bias.shape == (4,)


def test_bias_correction_names_a_layer_it_cannot_correct():
    ann = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 3 * 3, 3)).eval()
    x = torch.rand(4, 3, 8, 8)
    with pytest.raises(ValueError, match="spiking layer '3'.*neither a conv"):
        correct_bias(convert(ann, [x]), [x], T=4)
