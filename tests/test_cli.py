"""``rmp-zoo`` end to end: export a run, evaluate it, publish it to the test Hub, pin it, download it."""
from __future__ import annotations

import pytest
from rich.console import Console
from test_zoo import STEPS, folder, make_run, run_dir  # noqa: F401  (fixtures)

from rmp_zoo import cli
from rmp_zoo.zoo.folder import LOAD_FILES, METRICS, PLOT, hash_folder, read_json
from rmp_zoo.zoo.registry import ZOO, ZooEntry

pytestmark = pytest.mark.usefixtures("one_thread", "isolated_zoo")


@pytest.fixture
def run(capsys, monkeypatch):
    """Run ``rmp-zoo ARGS`` in-process; returns (exit code, stdout, stderr). Wide consoles, so nothing wraps."""
    monkeypatch.setattr(cli, "console", Console(width=250))
    monkeypatch.setattr(cli, "err_console", Console(width=250, stderr=True))

    def _run(*args: str) -> tuple[int, str, str]:
        code = cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def test_export_then_eval_reproduces_metrics(run, tmp_path):
    exported = tmp_path / "zoo" / "tiny-rmp"
    code, stdout, _ = run("export", make_run(tmp_path / "run"), "--name", "tiny-rmp", "--out", exported, "--T",
                          ",".join(map(str, STEPS)), "--limit", 16, "--device", "cpu", "--quiet")
    assert code == 0 and "rmp-zoo push" in stdout
    published = read_json(exported / METRICS)
    report = tmp_path / "eval"
    code, stdout, _ = run("eval", f"local-dir:{exported}", "--json", tmp_path / "eval.json", "--out", report,
                          "--device", "cpu", "--quiet")
    assert code == 0 and "published %" in stdout
    measured = read_json(tmp_path / "eval.json")
    assert measured["num_images"] == published["num_images"] == 16
    assert measured["ann_top1"] == published["ann_top1"]
    for ours, theirs in zip(measured["snn"], published["snn"], strict=True):
        assert ours["T"] == theirs["T"] and ours["top1"] == theirs["top1"]
        assert ours["spikes_per_image"] == pytest.approx(theirs["spikes_per_image"], rel=1e-6)
        assert ours["synops_per_image"] == pytest.approx(theirs["synops_per_image"], rel=1e-6)
    assert (report / "eval.csv").read_text().splitlines()[0].startswith("T,top1,")
    assert (report / PLOT).stat().st_size > 0


def test_push_pins_a_manifest_that_makes_a_working_entry(folder, run, hub, monkeypatch, tmp_path):
    from rmp_zoo.zoo.registry import read_manifest

    code, stdout, _ = run("push", folder, "--repo-id", "rmp-zoo/tiny-rmp", "--manifests", tmp_path)
    assert code == 0
    oid = hub.repos["rmp-zoo/tiny-rmp"].refs["main"]
    published = read_manifest("tiny-rmp", tmp_path)  # what the registry reads for an entry of that name
    assert published["revision"] == oid and published["sha256"] == hash_folder(folder)
    monkeypatch.setitem(ZOO, "tiny-rmp", ZooEntry("tiny-rmp", "resnet20", "synthetic", "python train.py",
                                                  "none", "rmp-zoo/tiny-rmp", **published))

    code, stdout, _ = run("download", "tiny-rmp")
    assert code == 0 and oid in stdout
    code, stdout, _ = run("list", "tiny*")
    assert code == 0 and "cached" in stdout and f"{published['ann_top1']:.2f}" in stdout
    code, stdout, _ = run("info", "tiny-rmp")
    assert code == 0 and "cached" in stdout and "measured by" in stdout and "rmp-zoo export" in stdout


def test_push_to_a_branch_and_keep_the_card(folder, run, hub, tmp_path):
    from rmp_zoo.zoo.registry import read_manifest

    assert run("push", folder, "--repo-id", "someone/tiny", "--revision", "dev", "--manifests", tmp_path)[0] == 0
    assert set(LOAD_FILES) <= set(hub.files("someone/tiny", "dev"))
    code, stdout, _ = run("push", folder, "--repo-id", "someone/tiny", "--revision", "dev", "--manifests", tmp_path)
    assert code == 0 and "kept the README.md" in stdout
    assert "README.md" not in read_manifest("tiny-rmp", tmp_path)["sha256"]
    code, stdout, _ = run("info", "hf-hub:someone/tiny@dev")
    assert code == 0 and "T=8:" in stdout


def test_two_process_eval_equals_one_process(folder, tmp_path):
    """``--devices 2 --strategy ddp``: two CPU processes (gloo) share the images and sum their counts."""
    import json
    import os
    import subprocess
    import sys

    results = {}
    for devices in (1, 2):
        out = tmp_path / f"eval{devices}.json"
        proc = subprocess.run([sys.executable, "-m", "rmp_zoo.cli", "eval", f"local-dir:{folder}", "--device", "cpu",
                               "--devices", str(devices), "--strategy", "ddp" if devices > 1 else "auto", "--quiet",
                               "--json", str(out), "--out", str(tmp_path / f"report{devices}")],
                              capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[devices] = json.loads(out.read_text())
    one, two = results[1], results[2]
    assert one["num_images"] == two["num_images"] == 16 and one["ann_top1"] == two["ann_top1"]
    for a, b in zip(one["snn"], two["snn"], strict=True):
        assert (a["T"], a["top1"], a["spikes_per_image"]) == (b["T"], b["top1"], b["spikes_per_image"])
        assert a["synops_per_image"] == pytest.approx(b["synops_per_image"], rel=1e-12)


def test_list_and_info_of_unbuilt_models(run):
    code, stdout, _ = run("list")
    assert code == 0 and stdout.count("not built") == sum(not e.built for e in ZOO.values())
    code, stdout, _ = run("info", "resnet34-imagenet-rmp")
    assert code == 0 and "python train.py recipe=resnet34_imagenet" in stdout and "ImageNet" in stdout


def test_errors_name_the_fix(run):
    code, _, stderr = run("eval", "vgg16-imagenet-rmp")
    assert code == 1 and "python train.py recipe=vgg16_imagenet" in stderr
    code, _, stderr = run("download", "resnet20-cifar10")
    assert code == 1 and "Did you mean resnet20-cifar10-rmp" in stderr
    code, stdout, _ = run("download", "--all")
    assert code == 0 and stdout.count("not built, skipped") == sum(not e.built for e in ZOO.values())
    assert stdout.count("not on the Hub yet, skipped") == sum(e.built and not e.on_hub for e in ZOO.values())


def test_hash_pins_the_folder_in_its_manifest(folder, run, tmp_path):
    from rmp_zoo.zoo.registry import read_manifest

    code, stdout, _ = run("hash", folder, "--revision", "b" * 40, "--manifests", tmp_path)
    assert code == 0 and read_manifest("tiny-rmp", tmp_path)["revision"] == "b" * 40
    code, stdout, _ = run("hash", folder, "--manifests", tmp_path)  # published in checkpoints/ only: no revision
    manifest = read_manifest("tiny-rmp", tmp_path)
    assert code == 0 and manifest["revision"] is None and manifest["sha256"] == hash_folder(folder)
    assert manifest["snn_top1"] == {row["T"]: round(row["top1"], 2) for row in read_json(folder / "metrics.json")["snn"]}
    for name, digest in hash_folder(folder).items():
        assert f"{digest}  {name}" in stdout


def test_diagnose_writes_the_per_layer_error(run, folder, tmp_path):
    out = tmp_path / "diag"
    code, stdout, _ = run("diagnose", f"local-dir:{folder}", "--T", "1,4", "--images", 8, "--batch-size", 4,
                          "--conversion", "signed:trained:0.5", "--out", out, "--device", "cpu")
    assert code == 0 and "off by ≥ 1 spike" in stdout and "class = ANN's" in stdout
    lines = (out / "layer_error.csv").read_text().splitlines()
    assert lines[0].startswith("layer,T,threshold,mse,mean_error,off_by_spike,over,under")
    layers = {line.split(",")[0] for line in lines[1:]}
    assert "output" in layers and len(lines) - 1 == 2 * len(layers)
    assert (out / "layer_error.png").stat().st_size > 0
