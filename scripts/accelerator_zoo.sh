#!/usr/bin/env bash
# Build the ResNet-20 CIFAR-10/100 zoo entries on a lent GPU within one short lease (issue 5).
#
# A call to the accelerator carries at most 64 MiB, and the CIFAR copies are six 17 MB sheets per dataset, so the
# data travels in parts, one per call, and `stash` keeps each part on the machine, which stays warm between calls.
# Each part is a folder laid out like ../shared/data (materialize.py, DATASET/meta.json, labels, some sheets).
#
#   scripts/accelerator_zoo.sh stash PART          keep a carried data part on the machine
#   scripts/accelerator_zoo.sh check               GPU smoke run and export, epoch time, simulation throughput
#   scripts/accelerator_zoo.sh train DATASET SEC   decode DATASET into data/, then train its recipe in the
#                                                  background, with as many epochs as fit in SEC seconds
#   scripts/accelerator_zoo.sh finish SEC          wait (at most SEC s) for the runs, export them, pack $OUT
#
# Runs go to outputs/zoo/resnet20_DATASET, zoo folders to checkpoints/resnet20-DATASET-rmp, results to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
STASH=${RMP_STASH:-/root/rmp_stash}
OUT=${OUT:-/tmp/accelerator_out}
PY=${PYTHON:-python3}
BATCH=256       # GPU batch; the lr scales with it from the recipes' 0.1 at 128
LR=0.2
SLOWDOWN=1.35   # two trainings share the GPU
DEVICE=${RMP_DEVICE:-cuda}
# For a rehearsal on a CPU: fewer generated images to time, and extra overrides for the runs and the exports.
TIMING_IMAGES=${RMP_TIMING_IMAGES:-50000}
THROUGHPUT_BATCHES=${RMP_THROUGHPUT_BATCHES:-256,2048}
TRAIN_EXTRA=${RMP_TRAIN_EXTRA:-}
EXPORT_EXTRA=${RMP_EXPORT_EXTRA:-}
mkdir -p "$STASH" "$OUT" outputs/zoo

# hydra-core and omegaconf are not on the accelerator image; they travel as wheels in .device/whl.
if [ -d .device/whl ] && [ ! -d /tmp/site/hydra ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .device/whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

recipe_args() {  # the training command's overrides for DATASET with E epochs, as the card records them
    echo "recipe=resnet20_$1 data.batch_size=$BATCH model.lr=$LR trainer.max_epochs=$2 hydra.run.dir=outputs/zoo/resnet20_$1"
}

stash() {
    cp -r "$1"/. "$STASH"/ && echo "stashed $1: $(ls "$STASH"/*/ | grep -c webp) sheets on this machine"
}

check() {
    nvidia-smi -L 2>/dev/null
    "$PY" -c "import torch, pytorch_lightning, hydra; print('torch', torch.__version__, 'lightning',
pytorch_lightning.__version__, 'hydra', hydra.__version__, 'cuda', torch.cuda.is_available())" || return 1
    # The whole pipeline on the GPU: smoke training with its SNN callback, then an export on cuda.
    rm -rf outputs/zoo/smoke outputs/zoo/smoke-export
    "$PY" train.py hydra.run.dir=outputs/zoo/smoke > "$OUT/check_smoke.log" 2>&1 || { tail -30 "$OUT/check_smoke.log"; return 1; }
    grep -E "test/acc1|snn/acc" "$OUT/check_smoke.log"
    "$PY" -m rmp_zoo.cli export outputs/zoo/smoke --name smoke-gpu --out outputs/zoo/smoke-export --T 1,4,16 \
        --compare if:max --device $DEVICE --quiet >> "$OUT/check_smoke.log" 2>&1 || { tail -30 "$OUT/check_smoke.log"; return 1; }
    echo "export on $DEVICE: ok"
    # Seconds per epoch of the GPU training settings on 45,000 generated 32x32 images (CIFAR's training split).
    rm -rf outputs/zoo/timing
    "$PY" train.py recipe=smoke data.train_size=$TIMING_IMAGES +data.val_size=$((TIMING_IMAGES / 10)) data.test_size=500 data.batch_size=$BATCH \
        data.eval_batch_size=500 model.lr=$LR trainer.max_epochs=3 callbacks.snn=null test=false \
        hydra.run.dir=outputs/zoo/timing > "$OUT/check_timing.log" 2>&1 || { tail -30 "$OUT/check_timing.log"; return 1; }
    "$PY" -c "import json; print(json.load(open('outputs/zoo/timing/training.json'))['train_time_s'] / 3)" \
        > "$STASH/epoch_seconds"
    echo "seconds per epoch: $(cat "$STASH/epoch_seconds")"
    "$PY" benchmarks/simulation_throughput.py --arch resnet20,vgg16 --batch-sizes $THROUGHPUT_BATCHES --steps 32 --repeats 5 \
        --device $DEVICE --out "$OUT/throughput" 2>&1 | tail -20
}

train() {
    local ds=$1 budget=$2 epoch_s epochs run=outputs/zoo/resnet20_$1
    epoch_s=$(cat "$STASH/epoch_seconds" 2>/dev/null || echo 4)
    epochs=$("$PY" -c "print(max(5, min(200, int(($budget - 60) / ($epoch_s * $SLOWDOWN)))))")
    mkdir -p data
    "$PY" "$STASH/materialize.py" data "$ds" || { echo "$ds: data incomplete on this machine"; return 1; }
    rm -rf "$run" "$run".{rc,log,export.log} && mkdir -p "$run"
    echo "python train.py $(recipe_args "$ds" "$epochs")" > "$run.recipe"
    # The Timer stops a run that would overrun the lease (the card then shows fewer epochs than the recipe).
    setsid nohup bash -c "$PY train.py $(recipe_args "$ds" "$epochs") '+callbacks.timer.duration={seconds:$((budget - 40))}' \
        $TRAIN_EXTRA > $run.log 2>&1; echo \$? > $run.rc" > /dev/null 2>&1 &
    echo "$ds: training $epochs epochs (${epoch_s}s each measured alone) in the background -> $run"
}

export_entry() {
    local ds=$1 run=outputs/zoo/resnet20_$1 name=resnet20-$1-rmp
    # TF32 off, so that the card's numbers are what a CPU `rmp-zoo eval` gets.
    NVIDIA_TF32_OVERRIDE=0 "$PY" -m rmp_zoo.cli export "$run" --name "$name" --threshold trained \
        --initial-potential 0.5 --data-root data --compare if:max --compare rmp:max --device $DEVICE --force --quiet $EXPORT_EXTRA \
        --recipe "$(cat "$run.recipe")" > "$run.export.log" 2>&1
    echo "$name: export exit $?"; tail -3 "$run.export.log"
}

pack() {
    local ds=$1 run=outputs/zoo/resnet20_$1 files=()
    for f in "$run".{log,rc,recipe,export.log} "$run"/{config.yaml,results.json,training.json,csv/metrics.csv} \
             "$run"/checkpoints/best.ckpt "$run"/snn checkpoints/resnet20-"$ds"-rmp; do
        [ -e "$f" ] && files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] && tar czf "$OUT/$ds.tar.gz" "${files[@]}" && echo "packed $OUT/$ds.tar.gz (${#files[@]} paths)"
}

finish() {
    local deadline=$((SECONDS + $1)) ds
    for ds in cifar10 cifar100; do
        local run=outputs/zoo/resnet20_$ds
        while [ ! -e "$run.rc" ] && [ $SECONDS -lt $deadline ] && [ -e "$run.recipe" ]; do sleep 5; done
        echo "$ds: training exit $(cat "$run.rc" 2>/dev/null || echo 'none (still running or never started)')"
        tail -4 "$run.log" 2>/dev/null
        [ "$(cat "$run.rc" 2>/dev/null)" = 0 ] && export_entry "$ds"
        pack "$ds"
    done
}

case "${1:-}" in
    stash) stash "$2" ;;
    check) check ;;
    train) train "$2" "$3" ;;
    finish) finish "$2" ;;
    *) sed -n '2,13p' "$0"; exit 2 ;;
esac
