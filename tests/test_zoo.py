"""The zoo: registry, folder format, export, and loading through the real huggingface_hub client from a Hub that
runs on 127.0.0.1 (tests/hub_server.py). A tiny ResNet-20 on generated 16×16 images keeps every test fast."""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from omegaconf import OmegaConf

import rmp_zoo.zoo.loader as zoo_load
from rmp_zoo.conversion import convert
from rmp_zoo.models import create_model
from rmp_zoo.training import ClassificationModule
from rmp_zoo.zoo import (HubUnavailableError, IncompleteFolderError, IntegrityError, ModelNotFoundError,
                         NotBuiltError, ZooEntry, export, list_models, load, load_ann, push)
from rmp_zoo.zoo.folder import CARD, METRICS, WEIGHTS, hash_folder, read_json
from rmp_zoo.zoo.registry import ZOO

REPO_CHECKPOINTS = zoo_load.REPO_CHECKPOINTS  # before the isolated_zoo fixture points it elsewhere

STEPS = (1, 2, 4, 8)
HPARAMS = {"arch": "resnet20", "num_classes": 4, "activation": "qcfs", "act_threshold": 2.0, "qcfs_levels": 4,
           "pool": "avg", "bias": False, "batchnorm": True, "dropout": 0.0, "arch_kwargs": None}
DATA = {"_target_": "rmp_zoo.data.create_datamodule", "name": "synthetic", "num_classes": 4, "train_size": 64,
        "test_size": 24, "image_size": 16, "batch_size": 8}


def make_run(run_dir: Path, callbacks: dict | None = None) -> Path:
    """A training run folder as ``train.py`` leaves it, with a Lightning-format checkpoint of a seeded model."""
    torch.manual_seed(0)
    model = create_model(HPARAMS["arch"], HPARAMS["num_classes"], **ClassificationModule.model_constraints(HPARAMS))
    (run_dir / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": HPARAMS, "epoch": 2, "global_step": 30, "callbacks": callbacks or {}},
               run_dir / "checkpoints" / "best.ckpt")
    OmegaConf.save(OmegaConf.create({"data": DATA, "seed": 0}), run_dir / "config.yaml")
    return run_dir


def checkpoint_ann(run_dir: Path) -> torch.nn.Module:
    """The ANN straight from the checkpoint, independent of the zoo code."""
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    model = create_model(HPARAMS["arch"], HPARAMS["num_classes"], **ClassificationModule.model_constraints(HPARAMS))
    model.load_state_dict({k[6:]: v for k, v in ckpt["state_dict"].items()})
    return model.eval()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def folder(run_dir, tmp_path_factory) -> Path:
    return export(run_dir, "tiny-rmp", tmp_path_factory.mktemp("zoo") / "tiny-rmp", T=STEPS, limit=16,
                  conversion={"initial_potential": 0.5}, compare=("if:max:0",), calibration_images=32,
                  progress=False)


pytestmark = pytest.mark.usefixtures("one_thread", "isolated_zoo")  # tiny models gain nothing from threads


@pytest.fixture
def published(hub, folder, monkeypatch) -> ZooEntry:
    """``folder`` pushed to the test Hub and pinned in the registry, as the lead does for a real model."""
    info, _ = push(folder, "rmp-zoo/tiny-rmp")
    entry = ZooEntry("tiny-rmp", "resnet20", "synthetic", "python train.py recipe=smoke", "none",
                     "rmp-zoo/tiny-rmp", revision=info.oid, sha256=hash_folder(folder))
    monkeypatch.setitem(ZOO, entry.name, entry)
    return entry


def images(n: int = 4) -> torch.Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))


# --- registry ---------------------------------------------------------------------------------------------------

def test_list_models_has_all_six():
    assert list_models() == sorted(["resnet20-cifar10-rmp", "resnet20-cifar100-rmp", "vgg16-cifar10-rmp",
                                    "vgg16-cifar100-rmp", "vgg16-imagenet-rmp", "resnet34-imagenet-rmp"])
    assert list_models("*imagenet*") == ["resnet34-imagenet-rmp", "vgg16-imagenet-rmp"]
    for name in list_models():
        assert ZOO[name].hub_id == f"rmp-zoo/{name}"
    assert not ZOO["vgg16-imagenet-rmp"].built


def test_published_entries_load_from_this_repository(monkeypatch):
    """Every built entry's files are committed under checkpoints/ and match the hashes and numbers pinned."""
    monkeypatch.setattr(zoo_load, "REPO_CHECKPOINTS", REPO_CHECKPOINTS)
    assert ZOO["resnet20-cifar10-rmp"].built
    for entry in (e for e in ZOO.values() if e.built):
        snn = load(entry.name)
        assert snn.pretrained_cfg["folder"] == str(REPO_CHECKPOINTS / entry.name)
        assert snn.pretrained_cfg["ann_top1"] == pytest.approx(entry.ann_top1, abs=0.005)
        assert {t: round(a, 2) for t, a in snn.pretrained_cfg["snn_top1"].items()} == dict(entry.snn_top1)


def test_entry_published_in_the_repository_only(folder, tmp_path, monkeypatch):
    entry = ZooEntry("tiny-repo", "resnet20", "synthetic", "python train.py recipe=smoke", "none",
                     "rmp-zoo/tiny-repo", sha256=hash_folder(folder))
    monkeypatch.setitem(ZOO, entry.name, entry)
    assert entry.built and not entry.on_hub
    with pytest.raises(NotBuiltError, match=r"not on the Hub yet.*RMP_ZOO_HOME"):
        load("tiny-repo")  # no copy anywhere, and no Hub to fall back on
    copy = tmp_path / "checkpoints" / "tiny-repo"
    copy.mkdir(parents=True)
    for f in folder.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    x = images()
    assert torch.equal(load("tiny-repo")(x, T=4), load(f"local-dir:{folder}")(x, T=4))
    (copy / METRICS).write_text((folder / METRICS).read_text().replace('"num_images": 16', '"num_images": 17'))
    with pytest.raises(IntegrityError, match="metrics.json has sha256"):
        load("tiny-repo")


def test_unbuilt_entry_names_recipe_and_data():
    with pytest.raises(NotBuiltError, match=r"python train\.py recipe=vgg16_cifar100.*CIFAR-100"):
        load("vgg16-cifar100-rmp")


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ModelNotFoundError, match="resnet20-cifar10-rmp"):
        load("resnet20-cifar10")


def test_bare_path_or_repo_id_is_refused(folder):
    with pytest.raises(ValueError, match=f"local-dir:{folder}"):
        load(str(folder))
    with pytest.raises(ValueError, match="hf-hub:someone/model"):
        load("someone/model")


def test_entry_needs_hashes_of_the_loaded_files():
    with pytest.raises(ValueError, match="sha256"):
        ZooEntry("x", "resnet20", "cifar10", "r", "d", "o/x", revision="a" * 40, sha256={WEIGHTS: "0" * 64})


# --- folder format and local loading -----------------------------------------------------------------------------

def test_export_writes_the_folder(folder):
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "accuracy_vs_T.png", "config.json",
                                                         "metrics.json", "model.safetensors"]
    metrics = read_json(folder / METRICS)
    assert [row["T"] for row in metrics["snn"]] == list(STEPS) and metrics["num_images"] == 16
    assert metrics["command"].startswith("rmp-zoo export ") and metrics["machine"]["torch"] == torch.__version__
    front = yaml.safe_load((folder / CARD).read_text().split("---")[1])
    assert front["library_name"] == "rmp_zoo"
    assert {"spiking-neural-network", "ann-to-snn", "image-classification", "rmp"} <= set(front["tags"])
    names = [m["name"] for m in front["model-index"][0]["results"][0]["metrics"]]
    assert names == [f"Top-1 (T={t})" for t in STEPS]
    body = (folder / CARD).read_text()
    assert "RMP-SNN" in body and "Srinivasan" in body and "python train.py" not in body  # no recipe: none invented
    assert "| T | IF, max θ | **RMP, trained θ, 0.5θ initial** (this model) |" in body
    assert "--compare if:max" in metrics["command"]


def test_compared_conversion_is_measured_on_the_same_images(run_dir, folder):
    """The card's IF + max column equals converting the checkpoint's ANN independently with those settings."""
    from rmp_zoo.conversion import evaluate
    from rmp_zoo.zoo.measure import build_datamodule

    metrics, config = read_json(folder / METRICS), read_json(folder / "config.json")
    datamodule = build_datamodule(config["dataset"])
    datamodule.setup("test")
    snn = convert(checkpoint_ann(run_dir), datamodule.eval_batches("train", 32), neuron="if", threshold="max",
                  initial_potential=0)
    result = evaluate(snn, datamodule.eval_batches("test", 16), T=STEPS, progress=False)
    (compared,) = metrics["compare"]
    assert compared["label"] == "IF, max θ" and compared["conversion"]["neuron"] == "if"
    assert {row["T"]: row["top1"] for row in compared["snn"]} == result.top1
    assert [row["T"] for row in compared["snn"]] == list(STEPS)


@pytest.mark.parametrize("monitor,chosen", [
    (None, "the last epoch's (3): nothing was selected on held-out data"),
    ("val/acc1", "the one with the best val/acc1, after epoch 3"),  # the checkpoint's epoch 2, counted from 1
])
def test_card_says_where_and_how_long_the_ann_trained(tmp_path, monitor, chosen):
    run = tmp_path / "run"
    make_run(run, {f"ModelCheckpoint{{'monitor': {monitor!r}}}": {"monitor": monitor}})
    (run / "training.json").write_text('{"train_time_s": 5400.0, "epochs": 16, "global_step": 11248, '
                                       '"machine": {"device": "Some CPU (2 cores)", "torch": "2.x"}}')
    out = export(run, "tiny-timed", tmp_path / "timed", T=(1,), limit=8, recipe="python train.py recipe=smoke",
                 progress=False)
    card = (out / CARD).read_text()
    assert "trained for 16 epochs (11248 steps) in 1.50 h on Some CPU (2 cores)" in card
    assert f"the checkpoint published is {chosen}." in card
    # the reproduction trains into the folder it then exports, wherever the original run lived
    assert "python train.py recipe=smoke hydra.run.dir=RUN_DIR\nrmp-zoo export RUN_DIR --name tiny-timed" in card


def test_bad_compare_spec_names_the_format(run_dir, tmp_path):
    with pytest.raises(ValueError, match="NEURON:THRESHOLD"):
        export(run_dir, "tiny-bad", tmp_path / "bad", T=(1,), limit=8, compare=("lif:max",), progress=False)
    assert not (tmp_path / "bad").exists()


def test_local_dir_load_equals_fresh_conversion(run_dir, folder):
    snn = load(f"local-dir:{folder}")
    reference = convert(checkpoint_ann(run_dir), threshold="trained", initial_potential=0.5)
    x = images()
    assert torch.equal(snn(x, T=8), reference(x, T=8))
    meta = snn.pretrained_cfg
    assert meta["architecture"] == "resnet20" and meta["neuron"] == "rmp" and meta["threshold_method"] == "trained"
    assert meta["classes"] == [f"class{i}" for i in range(4)] and meta["preprocessing"]["size"] == 16
    assert set(meta["snn_top1"]) == set(STEPS)
    with torch.no_grad():
        assert torch.equal(load_ann(f"local-dir:{folder}")(x), checkpoint_ann(run_dir)(x))


def test_calibrated_thresholds_travel_with_the_weights(run_dir, tmp_path):
    out = export(run_dir, "tiny-max", tmp_path / "tiny-max", conversion={"threshold": "99.9%"}, calibration_images=16,
                 T=(4,),
                 limit=8, progress=False)
    snn = load(f"local-dir:{out}")
    assert snn.threshold_method == "99.9%" and snn.pretrained_cfg["threshold_method"] == "99.9%"
    calibration = [torch.randn(16, 3, 16, 16)]  # other data: the stored thresholds, not these, must be used
    fresh = convert(checkpoint_ann(run_dir), calibration, threshold="99.9%")
    assert snn.thresholds() != fresh.thresholds()
    rebuilt = convert(checkpoint_ann(run_dir), threshold=snn.thresholds())
    x = images()
    assert torch.equal(snn(x, T=4), rebuilt(x, T=4))


def test_signed_burst_conversion_travels_end_to_end(run_dir, tmp_path):
    """Neuron and burst size are recorded in config.json and reapplied by load: the loaded SNN is the exported one,
    and its card numbers are what it measures."""
    out = export(run_dir, "tiny-burst", tmp_path / "tiny-burst",
                 conversion={"neuron": "signed", "burst": 2, "initial_potential": 0.5}, T=(2, 4), limit=8,
                 progress=False)
    snn = load(f"local-dir:{out}")
    assert snn.config()["neuron"] == "signed" and snn.config()["burst"] == 2
    assert snn.pretrained_cfg["burst"] == 2 and "--burst 2" in read_json(out / METRICS)["command"]
    reference = convert(checkpoint_ann(run_dir), threshold="trained", neuron="signed", initial_potential=0.5, burst=2)
    x = images()
    assert torch.equal(snn(x, T=4), reference(x, T=4))
    assert not torch.equal(snn(x, T=4), convert(checkpoint_ann(run_dir), threshold="trained", neuron="signed",
                                                initial_potential=0.5)(x, T=4))


def test_export_converts_as_the_run_did_unless_told_otherwise(tmp_path, monkeypatch):
    """No flags: the settings of the run's SNN callback; a flag changes that one setting only."""
    from rmp_zoo.cli import main

    run = make_run(tmp_path / "run")
    cfg = OmegaConf.load(run / "config.yaml")
    cfg.callbacks = {"snn": {"conversion": {"neuron": "signed", "burst": 2, "initial_potential": 0.5}}}
    OmegaConf.save(cfg, run / "config.yaml")
    out = export(run, "tiny-recorded", tmp_path / "recorded", T=(2,), limit=8, progress=False)
    conv = read_json(out / "config.json")["conversion"]
    assert (conv["neuron"], conv["burst"], conv["initial_potential"], conv["maxpool"]) == ("signed", 2, 0.5, "gate")
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(run), "--name", "tiny-flag", "--out", "flag", "--burst", "1", "--T", "2", "--limit",
                 "8", "--quiet"]) == 0
    conv = read_json(tmp_path / "flag" / "config.json")["conversion"]
    assert (conv["neuron"], conv["burst"]) == ("signed", 1)


def test_bias_correction_travels_to_the_loaded_network(run_dir, tmp_path):
    """The corrected biases are stored with the weights: the loaded SNN is the exported one, not a fresh
    uncorrected conversion."""
    from rmp_zoo.zoo.measure import build_datamodule

    out = export(run_dir, "tiny-bias", tmp_path / "tiny-bias", conversion={"bias_correction": 2},
                 calibration_images=16, T=(2,), limit=8, progress=False)
    snn = load(f"local-dir:{out}")
    assert snn.config()["bias_correction"] == {"T": 2, "images": 16} and snn.settings.bias_correction == 2
    datamodule = build_datamodule(read_json(out / "config.json")["dataset"])
    datamodule.setup("fit")
    reference = convert(checkpoint_ann(run_dir), datamodule.eval_batches("train", 16), bias_correction=2)
    x = images()
    assert torch.equal(snn(x, T=2), reference(x, T=2))
    assert not torch.equal(snn(x, T=2), convert(checkpoint_ann(run_dir))(x, T=2))


def test_loaded_model_names_its_expected_input(folder):
    snn = load(f"local-dir:{folder}")
    x = images()
    for bad, problem in ((torch.full_like(x, float("nan")), "NaN"), ((x * 255).to(torch.uint8), "torch.uint8"),
                         (x[0], r"unsqueeze\(0\)"), (x[:, :1], r"\(4, 1, 16, 16\)"),
                         (torch.rand(4, 3, 32, 32), r"\(4, 3, 32, 32\)")):
        with pytest.raises(ValueError, match=rf"expects a float tensor \[batch, 3, 16, 16\]: .*{problem}.*mean"):
            snn(bad, T=2)


def test_timm_and_torchvision_style_preprocessing(folder):
    from PIL import Image
    from timm.data import resolve_data_config

    from rmp_zoo import transforms

    snn = load(f"local-dir:{folder}")
    cfg = resolve_data_config(model=snn)
    pre = snn.pretrained_cfg["preprocessing"]
    assert cfg["input_size"] == (3, 16, 16) and cfg["mean"] == tuple(pre["mean"]) and cfg["std"] == tuple(pre["std"])
    pixels = torch.randint(0, 256, (16, 16, 3), dtype=torch.uint8)
    expected = (pixels.permute(2, 0, 1) / 255 - torch.tensor(pre["mean"])[:, None, None]) / torch.tensor(
        pre["std"])[:, None, None]
    assert torch.allclose(transforms(snn)(Image.fromarray(pixels.numpy())), expected, atol=1e-6)


def test_loading_never_unpickles(folder, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load called while loading a zoo folder")

    monkeypatch.setattr(torch, "load", refuse)
    load(f"local-dir:{folder}")


def test_folder_missing_a_file_is_named(folder, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in folder.iterdir():
        if f.name != METRICS:
            (broken / f.name).write_bytes(f.read_bytes())
    with pytest.raises(IncompleteFolderError, match="missing metrics.json"):
        load(f"local-dir:{broken}")


def test_truncated_local_weights_are_rejected(folder, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in folder.iterdir():
        (broken / f.name).write_bytes(f.read_bytes()[:-100] if f.name == WEIGHTS else f.read_bytes())
    with pytest.raises(IncompleteFolderError, match="truncated or corrupted"):
        load(f"local-dir:{broken}")


# --- the Hub -----------------------------------------------------------------------------------------------------

def test_push_then_load_from_hub_gives_identical_outputs(hub, folder, run_dir):
    info, kept = push(folder, "someone/tiny")
    assert not kept and info.oid in hub.repos["someone/tiny"].commits
    assert set(hub.files("someone/tiny")) >= {p.name for p in folder.iterdir()}
    snn = load("hf-hub:someone/tiny")
    x = images()
    assert torch.equal(snn(x, T=8), load(f"local-dir:{folder}")(x, T=8))
    assert snn.pretrained_cfg["revision"] == info.oid
    assert load(f"hf-hub:someone/tiny@{info.oid}").pretrained_cfg["revision"] == info.oid


def test_push_keeps_the_hub_card_unless_forced(hub, folder, tmp_path):
    push(folder, "someone/tiny")
    hub.repos["someone/tiny"].commits[hub.repos["someone/tiny"].refs["main"]][CARD] = b"edited on the Hub"
    edited = tmp_path / "edited"
    edited.mkdir()
    for f in folder.iterdir():
        (edited / f.name).write_bytes(f.read_bytes())
    (edited / CARD).write_text("---\nlicense: apache-2.0\n---\nnew card\n")
    _, kept = push(edited, "someone/tiny")
    assert kept and hub.files("someone/tiny")[CARD] == b"edited on the Hub"
    _, kept = push(edited, "someone/tiny", force=True)
    assert not kept and hub.files("someone/tiny")[CARD].endswith(b"new card\n")


def test_pinned_revision_loads_from_cache_without_network(published, hub, folder):
    before = len(hub.requests)
    first = load("tiny-rmp")
    resolves = [r for r in hub.requests[before:] if "/resolve/" in r[1]]
    assert resolves and all(published.revision in path for _, path in resolves)
    hub.stop()
    before = len(hub.requests)
    again = load("tiny-rmp")
    assert len(hub.requests) == before
    x = images()
    assert torch.equal(first(x, T=4), again(x, T=4))
    assert again.pretrained_cfg["revision"] == published.revision


def test_offline_mode_uses_the_cache_and_explains_a_miss(published, hub, monkeypatch):
    from huggingface_hub import constants

    load("tiny-rmp")  # cache it
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # huggingface_hub read the variable at import
    before = len(hub.requests)
    assert load("tiny-rmp").pretrained_cfg["name"] == "tiny-rmp"
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE"):
        load("hf-hub:rmp-zoo/tiny-rmp@main")  # not cached under this ref
    assert len(hub.requests) == before


@pytest.fixture
def no_backoff(monkeypatch):
    """huggingface_hub retries network errors, sleeping up to 24 s in all; the tests skip the sleeping."""
    import huggingface_hub.file_download as hf_download
    import huggingface_hub.utils._http as hf_http

    for module in (hf_http, hf_download):
        monkeypatch.setattr(module, "time", SimpleNamespace(sleep=lambda seconds: None))


def test_unreachable_hub_is_reported(published, hub, no_backoff):
    hub.stop()
    with pytest.raises(HubUnavailableError, match="could not reach the Hub.*retry"):
        load("tiny-rmp")


def test_missing_repo_is_reported(hub):
    with pytest.raises(ModelNotFoundError, match="someone/missing not found"):
        load("hf-hub:someone/missing")


def test_corrupted_download_is_rejected_and_evicted(published, hub, tmp_path):
    good = hub.files("rmp-zoo/tiny-rmp")[WEIGHTS]
    hub.corrupt[("rmp-zoo/tiny-rmp", WEIGHTS)] = good[:-8] + bytes(8)
    with pytest.raises(IntegrityError, match="removed from the cache; retry"):
        load("tiny-rmp")
    assert not any(p.name == WEIGHTS for p in (tmp_path / "hf_home").rglob("*"))
    assert not any(p.is_file() and p.stat().st_size == len(good) for p in (tmp_path / "hf_home").rglob("blobs/*"))
    hub.corrupt.clear()
    assert load("tiny-rmp").pretrained_cfg["revision"] == published.revision  # the retry works


def test_dropped_connection_asks_to_retry_and_the_retry_works(published, hub, no_backoff):
    hub.cut[("rmp-zoo/tiny-rmp", WEIGHTS)] = 1000
    with pytest.raises(HubUnavailableError, match="downloading model.safetensors .* failed.*Retry"):
        load("tiny-rmp")
    hub.cut.clear()
    load("tiny-rmp")


def test_truncated_download_without_registry_hash_is_rejected(hub, folder):
    push(folder, "someone/tiny")
    hub.corrupt[("someone/tiny", WEIGHTS)] = hub.files("someone/tiny")[WEIGHTS][:-100]
    with pytest.raises(IncompleteFolderError, match="removed from the cache; retry"):
        load("hf-hub:someone/tiny")
    hub.corrupt.clear()
    load("hf-hub:someone/tiny")


def test_local_registry_folder_must_match_the_pinned_hashes(published, folder, tmp_path):
    local = tmp_path / "checkpoints" / "tiny-rmp"
    local.mkdir(parents=True)
    for f in folder.iterdir():
        (local / f.name).write_bytes(f.read_bytes())
    assert load("tiny-rmp").pretrained_cfg["folder"] == str(local)
    with open(local / METRICS, "a") as f:
        f.write("\n")  # still valid JSON, but not the published file
    with pytest.raises(IntegrityError, match=f"local-dir:{local}"):
        load("tiny-rmp")


def test_the_readme_zoo_table_quotes_the_manifests():
    """Every number in the README's zoo table row of a built entry is its manifest's: no stale accuracies."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    header = next(line for line in readme.splitlines() if line.startswith("| name | ANN: ours / paper |"))
    steps = [int(t) for t in re.search(r"T = ([\d / ]+)\|", header).group(1).split("/")]
    built = [entry for entry in ZOO.values() if entry.built]
    assert built
    for entry in built:
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{entry.name}` |"))
        ann, snn = row.split("|")[2:4]
        assert float(ann.split("/")[0]) == entry.ann_top1
        assert [float(v.strip(" *")) for v in snn.split("/")] == [entry.snn_top1[t] for t in steps]


def test_every_entry_trains_from_its_recipe_file_without_overrides():
    """Issue 13: `rmp-zoo info` names `python train.py recipe=R` and nothing more, and R is a recipe file."""
    recipes = Path(__file__).resolve().parents[1] / "recipes" / "recipe"
    for entry in ZOO.values():
        command = entry.recipe.split()
        assert command[:2] == ["python", "train.py"] and len(command) == 3, entry.recipe
        assert (recipes / f"{command[2].removeprefix('recipe=')}.yaml").is_file(), entry.recipe
