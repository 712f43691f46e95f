import os
import socket
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision

from rmp_zoo.cli import main
from rmp_zoo.data import DownloadError, balanced_order, create_datamodule, load_npz, prepare_dataset
from rmp_zoo.data.augment import normalize, random_crop_flip

from conftest import make_image_folder


def write_npz(path, n_train=60, n_test=20, classes=10, **replace):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 255, (n_train, 32, 32, 3), dtype=np.uint8),
        "y_train": rng.integers(0, classes, n_train),
        "x_test": rng.integers(0, 255, (n_test, 32, 32, 3), dtype=np.uint8),
        "y_test": rng.integers(0, classes, n_test),
        "classes": np.array([f"c{i}" for i in range(classes)]),
    }
    arrays.update(replace)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_cifar_from_array_file_with_disjoint_validation_split(tmp_path):
    write_npz(tmp_path / "cifar10.npz")
    dm = create_datamodule("cifar10", root=str(tmp_path), val_size=10, batch_size=8, download=False)
    dm.setup()
    assert [len(dm._splits[s]) for s in ("train", "val", "test")] == [50, 10, 20]
    train_x = {tuple(x.flatten()[:16].tolist()) for x, _ in dm._splits["train"]}
    val_x = {tuple(x.flatten()[:16].tolist()) for x, _ in dm._splits["val"]}
    assert not train_x & val_x
    x, y = next(iter(dm.eval_batches("test", limit=5)))
    assert x.dtype == torch.float32 and x.shape == (5, 3, 32, 32) and len(y) == 5


@pytest.mark.parametrize("replace,message", [
    ({"y_test": None}, "missing keys \\['y_test'\\]"),
    ({"x_train": np.zeros((60, 28, 28, 3), np.uint8)}, "28x28, expected 32x32"),
    ({"y_train": np.zeros(59, np.int64)}, "y_train must be"),
    ({"x_test": np.zeros((20, 32, 32, 3), np.float32)}, "must be uint8"),
])
def test_bad_array_files_name_the_problem(tmp_path, replace, message):
    path = write_npz(tmp_path / "cifar10.npz", **replace)
    with pytest.raises(ValueError, match=message):
        load_npz(str(path), 10)


def test_array_file_with_wrong_class_count(tmp_path):
    write_npz(tmp_path / "cifar100.npz", classes=10)
    dm = create_datamodule("cifar100", root=str(tmp_path), download=False)
    with pytest.raises(ValueError, match="10 classes, expected 100"):
        dm.setup()


def test_missing_root_without_download_names_the_fix(tmp_path):
    root = tmp_path / "nowhere"
    dm = create_datamodule("cifar10", root=str(root), download=False)
    with pytest.raises(FileNotFoundError) as err:
        dm.setup()
    message = str(err.value)
    assert str(root / "cifar10.npz") in message and str(root / "cifar-10-batches-py") in message
    assert "rmp-zoo prepare-data cifar10 DIR" in message and "x_train uint8 [50000, 32, 32, 3]" in message
    assert "data.download=true" in message  # downloading is off here, so turning it on is a fix
    assert "materialize" not in message and "../shared" not in message


def test_failed_download_names_the_cause_and_the_offline_fix(tmp_path, monkeypatch):
    def offline(root, train, download):
        raise URLError(socket.gaierror(-2, "Name or service not known"))

    offline.base_folder = "cifar-100-python"
    monkeypatch.setattr(torchvision.datasets, "CIFAR100", offline)
    dm = create_datamodule("cifar100", root=str(tmp_path), download=True)
    with pytest.raises(FileNotFoundError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert "Name or service not known" in message and "without internet" in message
    assert "rmp-zoo prepare-data cifar100 DIR" in message and str(tmp_path / "cifar100.npz") in message
    assert "classes str [100]" in message
    assert "download=true" not in message.lower()  # it is on already and has just failed
    with pytest.raises(FileNotFoundError, match="Name or service not known"):
        dm.setup()


def test_unknown_dataset_and_class_mismatch():
    with pytest.raises(ValueError, match="Did you mean cifar10"):
        create_datamodule("cifar11")
    with pytest.raises(ValueError, match="100 classes but num_classes=10"):
        create_datamodule("cifar100", num_classes=10, root=".")


def test_random_crop_flip_moves_pixels_but_keeps_content():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    out = random_crop_flip(x, padding=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for i in range(2):  # every nonzero output pixel comes from the same image, shifted/flipped
        values = set(out[i][out[i] > 0].tolist())
        assert values <= set(x[i].flatten().tolist())


def test_normalize_uses_channel_statistics():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize(x, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([2.0, 1.0, 0.5]))


def test_imagenet_folder_split_and_errors(image_folder, tmp_path):
    dm = create_datamodule("imagenet", num_classes=3, root=str(image_folder), image_size=32, batch_size=4,
                           val_size=2, num_workers=0)
    dm.setup()
    assert len(dm._splits["train"]) == 10 and len(dm._splits["val"]) == 2 and len(dm._splits["test"]) == 12
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match="3 classes but data.num_classes=1000"):
        create_datamodule("imagenet", root=str(image_folder), num_workers=0).setup()
    with pytest.raises(FileNotFoundError, match="cannot be downloaded"):
        create_datamodule("imagenet", root=str(tmp_path / "none"), num_workers=0).setup()


def test_synthetic_is_deterministic():
    a, b = create_datamodule("synthetic", seed=3), create_datamodule("synthetic", seed=3)
    a.setup(), b.setup()
    assert torch.equal(a._splits["test"].x, b._splits["test"].x)


def _labels(batches):
    return torch.cat([y for _, y in batches]).tolist()


def _images(batches):
    return torch.cat([x for x, _ in batches])


@pytest.mark.parametrize("sizes", [(5, 5, 5), (2, 7, 4, 3)])
def test_balanced_order_keeps_every_prefix_balanced(sizes):
    labels = np.repeat(np.arange(len(sizes)), sizes)  # stored class by class, like an ImageFolder tree
    order = balanced_order(labels, seed=0)
    assert sorted(order.tolist()) == list(range(len(labels)))
    for n in range(1, len(labels) + 1):
        counts = np.bincount(labels[order[:n]], minlength=len(sizes))
        # every class has its share, give or take one, unless it has run out of images
        assert ((counts == np.array(sizes)) | (counts >= counts.max() - 1)).all()
    assert np.array_equal(order, balanced_order(labels, seed=0))
    assert not np.array_equal(order, balanced_order(labels, seed=1))


def test_imagenet_calibration_batches_are_unaugmented_balanced_and_seeded(tmp_path):
    root = make_image_folder(tmp_path / "imagenet", classes=4, per_class=6)
    kwargs = dict(num_classes=4, root=str(root), image_size=32, batch_size=4, eval_batch_size=4, val_size=4,
                  num_workers=0)
    dm = create_datamodule("imagenet", **kwargs)
    calibration = dm.eval_batches("train", limit=8)
    assert len(calibration) == 2 and all(len(set(y.tolist())) == 4 for _, y in calibration)  # each batch: all classes
    assert sorted(_labels(calibration)) == [0, 0, 1, 1, 2, 2, 3, 3]
    first = _images(calibration)
    assert torch.equal(first, _images(calibration))  # no random augmentation: the same tensors every time
    again = create_datamodule("imagenet", **kwargs).eval_batches("train", limit=8)
    assert torch.equal(first, _images(again)) and _labels(again) == _labels(calibration)
    # the same images through the evaluation transform (resize, centre crop), in the order the subset took them
    train = dm._eval_splits["train"]
    order = balanced_order(np.asarray(train.dataset.targets)[train.indices], dm.seed)[:8]
    assert torch.equal(first, torch.stack([train[i][0] for i in order]))
    other_seed = create_datamodule("imagenet", seed=1, **kwargs).eval_batches("train", limit=8)
    assert sorted(_labels(other_seed)) == [0, 0, 1, 1, 2, 2, 3, 3] and not torch.equal(first, _images(other_seed))
    # a limited test split (ImageNet's val/, stored class by class) covers the classes too; the whole one keeps order
    assert sorted(_labels(dm.eval_batches("test", limit=4))) == [0, 1, 2, 3]
    assert _labels(dm.eval_batches("test")) == sorted(_labels(dm.eval_batches("test")))
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        dm.eval_batches("valid")


def test_cifar_eval_batches_keep_the_full_test_order_and_balance_limits(tmp_path):
    write_npz(tmp_path / "cifar10.npz", n_train=200, n_test=100)
    arrays = load_npz(str(tmp_path / "cifar10.npz"))
    dm = create_datamodule("cifar10", root=str(tmp_path), val_size=20, batch_size=8, eval_batch_size=30,
                           download=False)
    stats = dm.mean, dm.std
    expected = normalize(torch.from_numpy(arrays.x_test).permute(0, 3, 1, 2), *stats)
    for limit in (None, 100, 1000):  # the whole test split: stored order, so published numbers stay reproducible
        batches = dm.eval_batches("test", limit)
        assert [len(y) for _, y in batches] == [30, 30, 30, 10]
        assert torch.equal(_images(batches), expected) and _labels(batches) == arrays.y_test.tolist()
    subset = dm.eval_batches("test", limit=20)
    counts = np.bincount(_labels(subset), minlength=10)
    available = np.bincount(arrays.y_test, minlength=10)
    assert counts.sum() == 20 and (np.minimum(available, 1) <= counts).all() and counts.max() <= 3
    # training images for calibration: normalised, never augmented, a balanced seeded subset
    train_x = dm._splits["train"].x
    calibration = dm.eval_batches("train", limit=40)
    x = _images(calibration)
    assert torch.equal(x, _images(dm.eval_batches("train", limit=40)))
    rows = [int(torch.nonzero((normalize(train_x, *stats) == xi).flatten(1).all(1))[0]) for xi in x]
    assert len(set(rows)) == 40
    assert np.bincount(_labels(calibration), minlength=10).max() <= 5


class FakeCIFAR10:
    """torchvision's CIFAR10 as ``prepare_dataset`` sees it: files under ``root``, ``data``/``targets``/``classes``."""

    base_folder = "cifar-10-batches-py"
    classes = [f"class{i}" for i in range(10)]
    roots = []

    def __init__(self, root, train, download):
        assert download
        os.makedirs(os.path.join(root, self.base_folder), exist_ok=True)
        open(os.path.join(root, self.base_folder, "data_batch_1"), "wb").close()  # what a download leaves behind
        FakeCIFAR10.roots.append(root)
        n = 30 if train else 10
        rng = np.random.default_rng(int(train))
        self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        self.targets = [int(t) for t in rng.integers(0, 10, n)]


def test_prepare_data_writes_the_array_file_the_datamodule_reads(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    out = tmp_path / "data"
    assert main(["prepare-data", "cifar10", str(out)]) == 0
    assert "data.root=" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["cifar10.npz"]  # the download folder is gone, nothing half-written is left
    assert all(not os.path.exists(root) for root in FakeCIFAR10.roots)
    with np.load(out / "cifar10.npz", allow_pickle=False) as f:
        assert sorted(f.files) == ["classes", "x_test", "x_train", "y_test", "y_train"]
        assert f["y_train"].dtype == np.int64 and f["classes"].dtype.kind == "U"
    train, test = FakeCIFAR10(str(tmp_path / "x"), True, True), FakeCIFAR10(str(tmp_path / "x"), False, True)
    dm = create_datamodule("cifar10", root=str(out), val_size=0, download=False)
    dm.setup()
    assert torch.equal(dm._splits["test"].x.permute(0, 2, 3, 1), torch.from_numpy(test.data))
    assert dm._splits["train"].y.tolist() == train.targets and dm.classes == FakeCIFAR10.classes


def test_prepare_data_is_atomic(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    path = prepare_dataset("cifar10", tmp_path)
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK half an archive")
        raise OSError("No space left on device")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="No space left"):
        prepare_dataset("cifar10", tmp_path)
    assert os.listdir(tmp_path) == ["cifar10.npz"] and path.read_bytes() == before  # the old file, untouched


def test_prepare_data_offline_says_why_and_what_to_do(tmp_path, monkeypatch, capsys):
    def offline(root, train, download):
        raise URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", offline)
    with pytest.raises(DownloadError) as err:
        prepare_dataset("cifar100", tmp_path)
    message = str(err.value)
    assert "Temporary failure in name resolution" in message and "cannot reach the download server" in message
    assert "on a machine with internet" in message and "cifar100.npz" in message
    assert "x_test uint8 [10000, 32, 32, 3]" in message and "classes str [100]" in message
    assert os.listdir(tmp_path) == []
    assert main(["prepare-data", "cifar100", str(tmp_path)]) == 1
    assert "Temporary failure in name resolution" in capsys.readouterr().err
    with pytest.raises(ValueError, match="cifar10, cifar100, not 'imagenet'"):
        prepare_dataset("imagenet", tmp_path)
