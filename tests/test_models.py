import pytest
import torch

import rmp_zoo
from rmp_zoo.models import QCFS, ClipReLU


@pytest.mark.parametrize("name,kwargs,size,classes", [
    ("resnet20", {}, 32, 10),
    ("vgg16", {}, 32, 100),
    ("vgg16", {"variant": "imagenet"}, 64, 7),
    ("resnet34", {}, 64, 5),
])
def test_architectures_build_and_run(name, kwargs, size, classes):
    model = rmp_zoo.create_model(name, num_classes=classes, **kwargs).eval()
    assert model(torch.randn(2, 3, size, size)).shape == (2, classes)


def test_resnet20_has_the_published_size():
    model = rmp_zoo.create_model("resnet20")
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(0.27e6, rel=0.01)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 19 and {c.out_channels for c in convs} == {16, 32, 64}


@pytest.mark.parametrize("activation,cls", [("clip", ClipReLU), ("qcfs", QCFS)])
def test_trained_thresholds_are_per_layer_and_saved(activation, cls):
    model = rmp_zoo.create_model("resnet20", activation=activation, act_threshold=3.0)
    acts = [m for m in model.modules() if isinstance(m, cls)]
    assert len(acts) == 19
    keys = [k for k in model.state_dict() if k.endswith(".threshold")]
    assert len(keys) == 19 and all(float(model.state_dict()[k]) == 3.0 for k in keys)


def test_qcfs_quantises_and_passes_gradients():
    act = QCFS(levels=4, threshold=2.0)
    x = torch.tensor([-1.0, 0.2, 0.3, 1.1, 5.0], requires_grad=True)
    y = act(x)
    assert torch.allclose(y, torch.tensor([0.0, 0.0, 0.5, 1.0, 2.0]))
    y.sum().backward()
    assert act.threshold.grad is not None and x.grad is not None


def test_clip_relu_clips_at_threshold():
    act = ClipReLU(threshold=1.5)
    assert torch.equal(act(torch.tensor([-2.0, 0.5, 3.0])), torch.tensor([0.0, 0.5, 1.5]))


def test_max_and_avg_pooling_options():
    avg = rmp_zoo.create_model("vgg16", pool="avg")
    mx = rmp_zoo.create_model("vgg16", pool="max")
    assert any(isinstance(m, torch.nn.AvgPool2d) for m in avg.modules())
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in mx.modules())


def test_vgg_bias_and_dropout_options():
    model = rmp_zoo.create_model("vgg16", bias=True, dropout=0.3)
    assert model.features[0].bias is not None
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.3 for m in model.modules())


def test_list_architectures_with_wildcards():
    assert rmp_zoo.list_architectures() == ["resnet20", "resnet34", "vgg16"]
    assert rmp_zoo.list_architectures("resnet*") == ["resnet20", "resnet34"]


@pytest.mark.parametrize("kwargs,message", [
    ({"name": "resnet21"}, "Did you mean resnet20"),
    ({"name": "resnet20", "activation": "gelu"}, "relu, clip, qcfs"),
    ({"name": "vgg16", "pool": "min"}, "'avg'"),
])
def test_bad_names_list_the_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rmp_zoo.create_model(**kwargs)


def test_resnet34_loads_local_weights_and_rejects_foreign_ones(tmp_path):
    from safetensors.torch import save_file

    source = rmp_zoo.create_model("resnet34", num_classes=5)
    weights = {k: v for k, v in source.state_dict().items() if not k.endswith(".threshold")}
    save_file(weights, tmp_path / "w.safetensors")
    loaded = rmp_zoo.create_model("resnet34", num_classes=5, pretrained=str(tmp_path / "w.safetensors"))
    assert torch.equal(loaded.conv1.weight, source.conv1.weight)
    save_file({"foo": torch.zeros(1)}, tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="do not fit"):
        rmp_zoo.create_model("resnet34", num_classes=5, pretrained=str(tmp_path / "bad.safetensors"))
    with pytest.raises(FileNotFoundError, match="torchvision"):
        rmp_zoo.create_model("resnet34", pretrained=str(tmp_path / "missing.pth"))
