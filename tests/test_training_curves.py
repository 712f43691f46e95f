"""benchmarks/training_curves.py keeps a resumed run's whole curve: one metrics.csv per invocation, merged by epoch."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "training_curves.py"


@pytest.fixture(scope="module")
def curves():
    spec = importlib.util.spec_from_file_location("training_curves", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_csv(path: Path, rows: list[str]) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("epoch,lr-SGD,step,test/acc1,test/loss,train/acc1,train/loss_epoch\n" + "\n".join(rows) + "\n")


@pytest.fixture
def resumed_run(tmp_path: Path) -> Path:
    """Epochs 0-2, killed during epoch 2's validation, then resumed from epoch 2 in a second invocation."""
    write_csv(tmp_path / "csv" / "2026-01-01_10-00-00" / "metrics.csv", [
        ",0.1,0,,,,", "0,,9,0.30,1.9,,", "0,,9,,,0.20,2.1", "1,,19,0.50,1.5,,", "1,,19,,,0.45,1.6",
        "2,,29,0.55,1.4,,"])
    write_csv(tmp_path / "csv" / "2026-01-01_12-00-00" / "metrics.csv", [
        "2,,29,0.60,1.3,,", "2,,29,,,0.62,1.2", "3,,39,0.58,1.35,,", "3,,39,,,0.70,1.0"])
    (tmp_path / "training.json").write_text(json.dumps({"train_time_s": 12.5, "epochs": 4}))
    return tmp_path


def test_invocations_merge_by_epoch_the_later_winning(curves, resumed_run):
    rows, split = curves.read_curves(resumed_run)
    assert split == "test"
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert [r["heldout_top1"] for r in rows] == [0.30, 0.50, 0.60, 0.58]
    assert [r["train_top1"] for r in rows] == [0.20, 0.45, 0.62, 0.70]
    stats = curves.summary(rows, split, last=2)
    assert stats["final_test_top1"] == pytest.approx(58.0)
    assert stats["best_test_top1"] == pytest.approx(60.0) and stats["best_test_epoch"] == 2
    assert stats["mean_last_2_test_top1"] == pytest.approx(59.0)
    assert stats["final_train_top1"] == pytest.approx(70.0) and stats["epochs"] == 4


def test_command_writes_curve_plot_and_summary(curves, resumed_run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["training_curves.py", str(resumed_run), "--out", str(out)])
    curves.main()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["training"]["train_time_s"] == 12.5 and summary["final_test_top1"] == pytest.approx(58.0)
    assert (out / "curves.png").stat().st_size > 0
    assert len((out / "curves.csv").read_text().splitlines()) == 5


def test_a_folder_without_csv_logs_names_the_cause(curves, tmp_path):
    with pytest.raises(FileNotFoundError, match="csv logger"):
        curves.read_curves(tmp_path)
