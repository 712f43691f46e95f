import numpy as np
import pytest
import torch

from rmp_zoo.data import create_datamodule, load_npz
from rmp_zoo.data.augment import normalize, random_crop_flip


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
    dm = create_datamodule("cifar10", root=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(FileNotFoundError, match="materialize.py"):
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
