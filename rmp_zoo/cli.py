"""rmp-zoo: list, inspect, download and evaluate zoo models; export a training run and publish it.

Publishing a model:  python train.py recipe=R  →  rmp-zoo export RUN_DIR --name NAME  →  rmp-zoo push
checkpoints/NAME --repo-id rmp-zoo/NAME, which pins the commit and hashes in rmp_zoo/zoo/manifests/NAME.json.
Without Hub access, commit checkpoints/NAME and pin it with `rmp-zoo hash checkpoints/NAME` instead.
"""
from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .conversion.neurons import NEURONS
from .conversion.settings import ENCODINGS, MAXPOOL_MODES
from .zoo.errors import ZooError
from .zoo.folder import CARD, CONFIG, LOAD_FILES, METRICS, PLOT, hash_folder, read_json, write_json
from .zoo.registry import HUB_ORG, ZOO, list_models, write_manifest

console = Console()
err_console = Console(stderr=True)
LIST_T = (8, 32, 128)


def _steps(text: str) -> list[int]:
    try:
        steps = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--T takes comma-separated integers like 8,16,32, got {text!r}") from None
    if not steps or min(steps) < 1:
        raise argparse.ArgumentTypeError(f"--T needs positive integers, got {text!r}")
    return steps


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _show(pairs) -> None:
    """Print ``key  value`` lines, values verbatim (no rich markup)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", justify="right")
    grid.add_column()
    for key, value in pairs:
        grid.add_row(key, Text(str(value)))
    console.print(grid)


def cmd_list(args: argparse.Namespace) -> int:
    from .zoo.loader import entry_status

    table = Table(title="rmp_zoo models: top-1 accuracy (%) of the ANN and of the SNN at T steps")
    table.add_column("name", no_wrap=True)
    for col in ("ANN", *(f"T={t}" for t in LIST_T)):
        table.add_column(col, justify="right")
    table.add_column("status", no_wrap=True)
    for name in list_models(args.pattern):
        e = ZOO[name]
        pct = [f"{e.ann_top1:.2f}" if e.ann_top1 is not None else "–",
               *(f"{e.snn_top1[t]:.2f}" if t in e.snn_top1 else "–" for t in LIST_T)]
        table.add_row(name, *pct, entry_status(e))
    console.print(table)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .zoo.errors import HubUnavailableError
    from .zoo.loader import entry_status, fetch, parse_name

    source = parse_name(args.name)
    if source.entry is not None:
        e = source.entry
        _show([("name", e.name), ("status", entry_status(e)), ("hub repo", e.hub_id),
               ("revision", e.revision or ("– (not on the Hub yet)" if e.built else "– (not built)")),
               ("architecture", e.architecture),
               ("dataset", e.dataset), ("data needed", e.data), ("recipe", e.recipe),
               *((f"sha256 {f}", h) for f, h in e.sha256.items())])
        if not e.built:
            return 0
    try:
        folder = fetch(source, (CONFIG, METRICS))
    except HubUnavailableError as err:
        err_console.print(f"details need {CONFIG} and {METRICS}: {err}", style="yellow", markup=False)
        return 0
    config, metrics = read_json(folder / CONFIG), read_json(folder / METRICS)
    conv = config["conversion"]
    _show([("folder", folder), ("neuron", conv["neuron"]), ("thresholds", conv["threshold_method"]),
           ("init. potential", conv["initial_potential"]), ("preprocessing", config["preprocessing"]),
           ("classes", f"{len(config['classes'])}: {', '.join(config['classes'][:5])}"
                       + (", ..." if len(config["classes"]) > 5 else "")),
           ("ANN top-1", f"{metrics['ann_top1']:.2f}% on {metrics['num_images']} test images"),
           ("SNN top-1", ", ".join(f"T={r['T']}: {r['top1']:.2f}%" for r in metrics["snn"])),
           ("measured by", metrics["command"])])
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from .zoo.hub import download
    from .zoo.loader import fetch, not_built_error, not_on_hub_error, parse_name

    if args.all == (args.name is not None):
        raise ValueError("give a model NAME or --all, not both or neither")
    for name in list_models() if args.all else [args.name]:
        source = parse_name(name)
        if source.kind == "local-dir":
            raise ValueError(f"{name} is a local folder already; nothing to download")
        e = source.entry
        if e is not None and not e.on_hub:
            if not args.all:
                raise not_built_error(e) if not e.built else not_on_hub_error(e)
            console.print(f"{name}: {'not built' if not e.built else 'not on the Hub yet'}, skipped")
            continue
        folder = download(e.hub_id, tuple(e.sha256), e.revision, e.sha256) if e else fetch(source)
        console.print(f"{name}: {folder}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .zoo.loader import load_pair
    from .conversion.record import measure
    from .conversion.report import plot_accuracy, results_table, write_csv
    from .zoo.measure import build_datamodule, launch

    sharding, device = launch(args.device, args.devices, args.strategy, args.num_nodes)
    ann, snn = load_pair(args.name, map_location=device)
    folder = Path(snn.pretrained_cfg["folder"])
    config, published = read_json(folder / CONFIG), read_json(folder / METRICS)
    steps = args.T or [row["T"] for row in published["snn"]]
    limit = args.limit if args.limit is not None else published["num_images"]
    batch_size = args.batch_size or published["batch_size"]
    datamodule = build_datamodule(config["dataset"], args.data_root, batch_size)
    datamodule.setup("test")
    command = ["rmp-zoo", "eval", args.name, "--T", ",".join(map(str, steps)), "--limit", str(limit),
               "--batch-size", str(batch_size), *(["--data-root", args.data_root] if args.data_root else [])]
    metrics = measure(snn, ann, datamodule.eval_batches("test", limit), steps, dataset=config["dataset"]["name"],
                      batch_size=batch_size, command=shlex.join(command), progress=not args.quiet, sharding=sharding)
    if not sharding.is_main:
        return 0
    metrics = {"model": args.name, "revision": snn.pretrained_cfg["revision"], **metrics}
    same_images = metrics["num_images"] == published["num_images"]  # else the published numbers do not compare
    console.print(results_table(metrics, args.name, published if same_images else None))
    out = Path(args.out or Path("outputs") / "eval" / re.sub(r"[^\w.-]+", "_", args.name))
    out.mkdir(parents=True, exist_ok=True)
    write_csv(metrics, out / "eval.csv")
    plot_accuracy(metrics, out / PLOT, args.name)
    console.print(f"wrote {out / 'eval.csv'} and {out / PLOT}")
    if args.json:
        write_json(args.json, metrics)
        console.print(f"wrote {args.json}")
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    import torch

    from .conversion import ConversionSettings, convert
    from .conversion.layer_error import conversion_error
    from .zoo.loader import load_pair
    from .zoo.measure import build_datamodule, calibration_batches
    from .conversion.report import layer_error_table, plot_layer_error, write_layer_error_csv

    ann, snn = load_pair(args.name, map_location=args.device)
    config = read_json(Path(snn.pretrained_cfg["folder"]) / CONFIG)
    datamodule = build_datamodule(config["dataset"], args.data_root, args.batch_size)
    datamodule.setup("fit")
    label = "published conversion"
    if args.conversion:  # another conversion of the same ANN; thresholds from training images only
        settings = ConversionSettings.parse(args.conversion)
        calibration = calibration_batches(datamodule, ann, [settings], 4096)
        snn, label = convert(ann, calibration, settings=settings), args.conversion
    with torch.inference_mode():
        result = conversion_error(ann, snn, datamodule.eval_batches(args.split, args.images), args.T)
    title = f"{args.name} ({label}), {result.num_images} {args.split} images"
    console.print(layer_error_table(result, title))
    out = Path(args.out or Path("outputs") / "diagnose" / re.sub(r"[^\w.-]+", "_", args.name))
    out.mkdir(parents=True, exist_ok=True)
    write_layer_error_csv(result, out / "layer_error.csv")
    plot_layer_error(result, out / "layer_error.png", title)
    console.print(f"wrote {out / 'layer_error.csv'} and {out / 'layer_error.png'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .zoo.export import export
    from .zoo.measure import launch
    from .conversion.report import results_table

    sharding, device = launch(args.device, args.devices, args.strategy, args.num_nodes)
    out = export(args.run_dir, args.name, args.out, conversion=_conversion_flags(args), T=args.T,
                 data_root=args.data_root, limit=args.limit, batch_size=args.batch_size,
                 calibration_images=args.calibration_images, device=str(device), repo_id=args.repo_id,
                 recipe=args.recipe, compare=args.compare, force=args.force, progress=not args.quiet,
                 sharding=sharding)
    if not sharding.is_main:
        return 0
    metrics = read_json(out / METRICS)
    console.print(results_table(metrics, args.name))
    console.print(f"wrote {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    repo_id = args.repo_id or f"{HUB_ORG}/{args.name}"
    console.print(f"publish it with: rmp-zoo push {shlex.quote(str(out))} --repo-id {repo_id}")
    return 0


def _conversion_flags(args: argparse.Namespace):
    """The run's recorded conversion with the flags given on the command line applied, or None without flags."""
    from .conversion import ConversionSettings
    from .zoo.export import recorded_conversion

    flags = {k: getattr(args, k) for k in ("neuron", "threshold", "initial_potential", "scale", "burst", "encoding",
                                           "maxpool", "bias_correction") if getattr(args, k) is not None}
    return ConversionSettings.of(recorded_conversion(args.run_dir), **flags) if flags else None


def _pin(folder: Path, revision: str | None, files: dict[str, str], manifests: str | None) -> None:
    """Write the folder's manifest, which turns its registry entry into a built one (or updates it)."""
    name = read_json(folder / CONFIG)["name"]
    path = write_manifest(name, revision, files, read_json(folder / METRICS),
                          *([Path(manifests)] if manifests else []))
    console.print(f"pinned {name} in {path}" + ("" if name in ZOO else
                                                 f"; add {name} to the table in rmp_zoo/zoo/registry.py"))


def cmd_push(args: argparse.Namespace) -> int:
    from .zoo.hub import push

    folder = Path(args.dir)
    card = (folder / CARD).read_text(encoding="utf-8") if (folder / CARD).is_file() else ""
    if "hf-hub:" in card and f'"hf-hub:{args.repo_id}"' not in card:
        err_console.print(f"warning: the model card names another Hub repo than {args.repo_id}; re-export with "
                          f"--repo-id {args.repo_id} to fix its usage lines", style="yellow", markup=False)
    info, kept_card = push(folder, args.repo_id, args.revision, force=args.force, private=args.private)
    console.print(f"pushed {folder} to {args.repo_id} as commit {info.oid} ({info.commit_url})")
    files = hash_folder(folder)
    if kept_card:
        console.print(f"kept the {CARD} already on the Hub; pass --force to replace it")
        files.pop(CARD, None)  # the Hub's card is not the one hashed here
    _pin(folder, info.oid, files, args.manifests)
    return 0


def cmd_hash(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    files = hash_folder(folder)
    missing = [f for f in LOAD_FILES if f not in files]
    if missing:
        raise ZooError(f"{folder} lacks {', '.join(missing)}; it is not a zoo folder")
    for f, h in files.items():
        print(f"{h}  {f}")
    _pin(folder, args.revision, files, args.manifests)
    return 0


def cmd_prepare_data(args: argparse.Namespace) -> int:
    from .data.prepare import DownloadError, prepare_dataset

    try:
        path = prepare_dataset(args.dataset, args.dir)
    except DownloadError as err:
        err_console.print(f"error: {err}", style="red", markup=False, highlight=False)
        return 1
    console.print(f"wrote {path}; train.py reads it with data.root={shlex.quote(str(path.parent))}, rmp-zoo with "
                  f"--data-root {shlex.quote(str(path.parent))}", markup=False, highlight=False)
    return 0


def _add_scale_out(p: argparse.ArgumentParser) -> None:
    """Lightning's way to share one evaluation over processes; the result equals one process's."""
    p.add_argument("--devices", default=1, type=lambda v: v if v == "auto" else int(v),
                   help="processes (GPUs, or CPU processes with --strategy ddp) per node (default 1)")
    p.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp (default: one process)")
    p.add_argument("--num-nodes", type=int, default=1, help="nodes of a multi-node run (default 1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rmp-zoo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list zoo models with their accuracy and status")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. '*cifar10*'")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="show a model's registry entry, config and metrics")
    p.add_argument("name", help="registry name, local-dir:PATH or hf-hub:ORG/REPO[@REV]")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("download", help="fetch a model's files into the huggingface_hub cache")
    p.add_argument("name", nargs="?")
    p.add_argument("--all", action="store_true", help="every built registry model")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("eval", help="evaluate a model on its test split at several T")
    p.add_argument("name")
    p.add_argument("--T", type=_steps, help="time steps, e.g. 8,16,32,64 (default: those in metrics.json)")
    p.add_argument("--data-root", help="folder with the dataset (see `rmp-zoo info NAME`)")
    p.add_argument("--limit", type=int, help="first N test images (default: as many as metrics.json counted)")
    p.add_argument("--batch-size", type=int, help="default: the batch size metrics.json was measured with")
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--out", help="folder for eval.csv and the plot (default outputs/eval/NAME)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    _add_scale_out(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("diagnose", help="per-layer conversion error of a model against its ANN, at several T")
    p.add_argument("name")
    p.add_argument("--T", type=_steps, default=_steps("1,2,4,8,16,32"))
    p.add_argument("--conversion", metavar="NEURON:THRESHOLD[:INITIAL[:BURST]]",
                   help="diagnose this conversion of the model's ANN instead of the published one, e.g. "
                        "signed:trained:0.5")
    p.add_argument("--split", default="train", choices=("train", "test"),
                   help="images to measure on (default train, so that choices made from it never see the test set)")
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--data-root", help="folder with the dataset (see `rmp-zoo info NAME`)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--out", help="folder for layer_error.csv and the plot (default outputs/diagnose/NAME)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser("export", help="convert a training run's best checkpoint into a zoo folder")
    p.add_argument("run_dir", help="output folder of `python train.py recipe=...`")
    p.add_argument("--name", required=True, help="model name, e.g. resnet20-cifar10-rmp")
    p.add_argument("--out", help="default checkpoints/NAME")
    # Conversion flags default to the run's own SNN callback settings (ConversionSettings); each flag overrides one.
    p.add_argument("--neuron", choices=NEURONS)
    p.add_argument("--threshold", help="auto, trained, max or a percentile such as 99.9%%")
    p.add_argument("--initial-potential", type=float, help="fraction of the threshold at t=0")
    p.add_argument("--scale", type=float, help="factor on every threshold")
    p.add_argument("--burst", type=int, help="most spikes a neuron fires per step (rmp and signed)")
    p.add_argument("--encoding", choices=ENCODINGS)
    p.add_argument("--maxpool", choices=MAXPOOL_MODES, help="gate: spiking max pooling; error: refuse max pooling")
    p.add_argument("--bias-correction", type=int, metavar="T",
                   help="correct each layer's mean output at this T on the calibration images")
    p.add_argument("--T", type=_steps, default=_steps("1,2,4,8,16,32,64,128"))
    p.add_argument("--data-root", help="default: the run's data root")
    p.add_argument("--limit", type=int, help="evaluate on the first N test images only")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--calibration-images", type=int, default=4096,
                   help="training images for data-driven thresholds and bias correction")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    _add_scale_out(p)
    p.add_argument("--repo-id", help="Hub repo named in the card (default rmp-zoo/NAME)")
    p.add_argument("--recipe", help="training command for the card (default: the registry's)")
    p.add_argument("--compare", action="append", default=[], metavar="NEURON:THRESHOLD[:INITIAL[:BURST]]",
                   help="also measure this conversion of the same ANN for the card, e.g. if:max (repeatable)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("push", help="publish a zoo folder to the Hub as one commit")
    p.add_argument("dir")
    p.add_argument("--repo-id", required=True, help="ORG/NAME")
    p.add_argument("--revision", help="branch to commit to (default main)")
    p.add_argument("--force", action="store_true", help="replace a README.md card already on the Hub")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--manifests", help="folder for NAME.json (default rmp_zoo/zoo/manifests)")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("hash", help="print a zoo folder's sha256s and pin them in its registry manifest")
    p.add_argument("dir")
    p.add_argument("--revision", help="the Hub commit the folder was pushed as (omit for a folder published only "
                                      "in this repository's checkpoints/)")
    p.add_argument("--manifests", help="folder for NAME.json (default rmp_zoo/zoo/manifests)")
    p.set_defaults(func=cmd_hash)

    p = sub.add_parser("prepare-data", help="download CIFAR with torchvision and write the array file that "
                                            "machines without internet read",
                       description="Downloads CIFAR with torchvision into a temporary folder inside DIR and writes "
                                   "DIR/DATASET.npz, complete or not at all: x_train, x_test uint8 [N, 32, 32, 3]; "
                                   "y_train, y_test int64 [N]; classes str [C]. Needs internet; copy the file to "
                                   "machines without, into their data.root (train.py) or --data-root (rmp-zoo).")
    p.add_argument("dataset", choices=("cifar10", "cifar100"))
    p.add_argument("dir", help="folder for DATASET.npz (copy it into data.root / --data-root elsewhere)")
    p.set_defaults(func=cmd_prepare_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "device", "unset") is None:
        args.device = _default_device()
    try:
        return args.func(args)
    except (ZooError, ValueError, FileNotFoundError) as err:
        err_console.print(f"error: {err}", style="red", markup=False, highlight=False)
        return 1


if __name__ == "__main__":
    sys.exit(main())
