#!/usr/bin/env bash
# Build the ResNet-20 CIFAR-10/100 zoo entries on a lent GPU within one short lease (issue 5).
#
# A call to the accelerator carries at most 64 MiB, and the CIFAR copies are six 17 MB sheets per dataset, so the
# data travels in parts, one per call, and `stash` keeps each part on the machine, which stays warm between calls.
# Each part is a folder laid out like ../shared/data (materialize.py, DATASET/meta.json, labels, some sheets).
#
#   scripts/accelerator_zoo.sh prepare DATA_DIR    here: wheels and data parts into .device/ (git-ignored)
#   scripts/accelerator_zoo.sh stash PART          there: keep a carried data part on the machine
#   scripts/accelerator_zoo.sh check               GPU smoke run and export, epoch time, simulation throughput
#   scripts/accelerator_zoo.sh train DATASET SEC   decode DATASET into data/, then train its recipe in the
#                                                  background, with as many epochs as fit in SEC seconds
#   scripts/accelerator_zoo.sh finish SEC          wait (at most SEC s) for the runs, export them, pack $OUT
#
# The lease that built the first ResNet-20 entries (since replaced by CPU runs of the recipes): four calls, each
# carrying .device/whl and one part, issued back to back
#   stash .device/part_cifar10_a && check
#   stash .device/part_cifar10_b && train cifar10 580
#   stash .device/part_cifar100_a
#   stash .device/part_cifar100_b && train cifar100 420 && finish 500
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
on_accelerator() {  # what every step there needs; hydra-core and omegaconf travel as wheels in .device/whl
    mkdir -p "$STASH" "$OUT" outputs/zoo
    if [ -d .device/whl ] && [ ! -d /tmp/site/hydra ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .device/whl/*.whl || return 1
    fi
    export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
}

recipe_args() {  # the training command's overrides for DATASET with E epochs, as the card records them
    echo "recipe=resnet20_$1 data.batch_size=$BATCH model.lr=$LR trainer.max_epochs=$2 hydra.run.dir=outputs/zoo/resnet20_$1"
}

prepare() {  # $1: a folder laid out like ../shared/data
    local ds half
    mkdir -p .device/whl
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 -d .device/whl hydra-core==1.3.8 omegaconf==2.3.1 || return 1
    python3 -m pip wheel -q --no-deps -w .device/whl antlr4-python3-runtime==4.9.3 || return 1  # an sdist on PyPI
    for ds in cifar10 cifar100; do
        for half in a b; do mkdir -p ".device/part_${ds}_$half/$ds" && cp "$1/materialize.py" ".device/part_${ds}_$half/"; done
        cp "$1/$ds"/{meta.json,train_labels.npz,test_labels.npz,train_0.webp,train_1.webp,train_2.webp} \
            ".device/part_${ds}_a/$ds/"
        cp "$1/$ds"/{train_3.webp,train_4.webp,test_0.webp} ".device/part_${ds}_b/$ds/"
    done
    du -sh .device/*
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
    prepare) prepare "${2:?prepare DATA_DIR: name a folder laid out like ../shared/data}" ;;
    stash) on_accelerator && stash "${2:?stash PART: name a carried folder such as .device/part_cifar10_a}" ;;
    check) on_accelerator && check ;;
    train) on_accelerator && train "${2:?train DATASET SEC: name cifar10 or cifar100}" \
               "${3:?train DATASET SEC: give the seconds the run may take}" ;;
    finish) on_accelerator && finish "${2:?finish SEC: give the seconds to wait for the runs}" ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
esac
