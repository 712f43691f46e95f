#!/usr/bin/env bash
# Check that the lower bounds in pyproject.toml work: install the oldest release that each bound allows into a fresh
# venv and run the test suite there.
#
#   scripts/check_lower_bounds.sh [MODE] [-- PYTEST ARGS]
#
#   all (default)   every pure-Python dependency (project + [dev]) at its oldest allowed release, all together,
#                   as a "lowest-direct" resolver would pick them
#   current         the same venv with nothing downgraded: the baseline to compare failures with
#   each            one venv per dependency: that one at its oldest allowed release, the rest as installed
#   PKG[==VER] ...  only the named packages, at VER or else at their oldest allowed release (for bisecting a bound)
#
#   PYTEST ARGS default to "-x -q" (the default marker selection from pyproject, i.e. -m 'not slow'); give test paths
#   to run a subset, e.g.  scripts/check_lower_bounds.sh huggingface-hub==0.28.0 -- -q tests/test_zoo.py tests/test_hub.py
#
# The oldest allowed release is the oldest non-pre-release on the index that satisfies the whole specifier (timm>=1.0
# gives 1.0.3: 1.0.0-1.0.2 were never published; torchmetrics>=1.3 gives 1.3.0.post0). Each pin is installed with a
# normal `pip install PKG==VER`, so pip also brings in whatever older sub-dependencies that release needs; `pip check`
# is printed so conflicts are visible. The project goes in with `pip install -e . --no-deps`.
#
# torch and torchvision are NOT downgraded: the venv is made with --system-site-packages and reuses the torch and
# torchvision installed on the machine (multi-GB CUDA wheels per version are not practical to download here; see the
# notes in the results file for what was checked by reading the code instead).
#
# Environment: LB_VENV_ROOT (default /tmp/rmp-lower-bounds: venvs live outside the repo), LB_RESULTS (default
# scripts/results/lower_bounds), PYTHON (default python3). OMP/MKL threads default to 1 (the machine is shared).
# Each run writes LB_RESULTS/<label>.log (pip + pytest output) and appends a line to LB_RESULTS/summary.tsv.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
VENV_ROOT=${LB_VENV_ROOT:-/tmp/rmp-lower-bounds}
RESULTS=${LB_RESULTS:-scripts/results/lower_bounds}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
export PIP_DISABLE_PIP_VERSION_CHECK=1
# Reused from the system site-packages, never downgraded (see above); bench-only extras are not checked.
SKIP="torch torchvision spikingjelly"

MODE=all
SELECTED=()
while [ $# -gt 0 ]; do
    case $1 in
        --) shift; break ;;
        all|current|each) MODE=$1 ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) MODE=select; SELECTED+=("$1") ;;
    esac
    shift
done
PYTEST_ARGS=("$@")
[ ${#PYTEST_ARGS[@]} -eq 0 ] && PYTEST_ARGS=(-x -q)
mkdir -p "$RESULTS" "$VENV_ROOT"

# "name min spec" for each dependency with a lower bound in [project] dependencies and the dev extra.
bounds() {
    "$PY" - "$SKIP" <<'EOF'
import sys, tomllib
from packaging.requirements import Requirement
skip = set(sys.argv[1].split())
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for line in project["dependencies"] + project.get("optional-dependencies", {}).get("dev", []):
    req = Requirement(line)
    lows = [s.version for s in req.specifier if s.operator in (">=", "==", "~=")]
    if req.name in skip or not lows:
        continue
    print(req.name, lows[0], str(req.specifier))
EOF
}

# The oldest release on the index that satisfies SPEC (pre-releases excluded); MIN itself if the index can't say.
oldest() {  # NAME SPEC MIN
    local versions
    versions=$("$PY" -m pip index versions "$1" 2>/dev/null | sed -n 's/^Available versions: //p')
    "$PY" - "$2" "$3" "$versions" <<'EOF'
import sys
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version
spec, low, listed = SpecifierSet(sys.argv[1]), sys.argv[2], sys.argv[3]
versions = []
for v in listed.replace(",", " ").split():
    try:
        versions.append(Version(v))
    except InvalidVersion:
        pass
ok = sorted(v for v in versions if v in spec and not v.is_prerelease)
print(ok[0] if ok else low)
EOF
}

# Make VENV (system site-packages), install the pins and the project, run pytest; rc 90: an install failed.
install_and_test() {  # VENV PIN...
    local venv=$1; shift
    "$PY" -m venv --system-site-packages "$venv" || return 90
    if [ $# -gt 0 ]; then
        "$venv/bin/python" -m pip install -q "$@" || { echo "PIP INSTALL FAILED"; return 90; }
    fi
    "$venv/bin/python" -m pip install -q --no-deps -e . || { echo "PROJECT INSTALL FAILED"; return 90; }
    echo "-- pip check"
    "$venv/bin/python" -m pip check
    echo "-- versions in use"
    "$venv/bin/python" - <<'EOF2'
from importlib.metadata import version
for name in ("torch", "torchvision", "numpy", "pytorch-lightning", "lightning-utilities", "timm", "torchmetrics",
             "huggingface-hub", "safetensors", "hydra-core", "omegaconf", "matplotlib", "rich", "tensorboard",
             "protobuf", "pytest", "hypothesis"):
    try:
        print(f"   {name} {version(name)}")
    except Exception as err:
        print(f"   {name} MISSING ({err})")
EOF2
    echo "-- python -m pytest ${PYTEST_ARGS[*]}"
    "$venv/bin/python" -m pytest "${PYTEST_ARGS[@]}"
}

# Run the suite in a fresh venv with the given pins ("name==version" ...; none: current versions). LABEL names the run.
run_pinned() {  # LABEL PIN...
    local label=$1; shift
    local venv=$VENV_ROOT/$label log=$RESULTS/$label.log start end rc tail
    start=$(date +%s)
    rm -rf "$venv"
    echo "== $label: ${*:-(current versions)}" | tee "$log"
    install_and_test "$venv" "$@" >>"$log" 2>&1
    rc=$?
    end=$(date +%s)
    tail=$(grep -E "(passed|failed|error|no tests ran).* in [0-9.]+s" "$log" | tail -1 | tr -d '=' | sed 's/^ *//;s/ *$//')
    [ $rc -eq 90 ] && tail="install failed"
    printf '%s\t%s\t%s\trc=%s\t%ss\t%s\n' "$(date -u +%FT%TZ)" "$label" "${*:-current}" "$rc" "$((end - start))" \
        "${tail:-?}" | tee -a "$RESULTS/summary.tsv"
    grep -E "^(FAILED|ERROR) " "$log" | head -5
    return $rc
}

PINS=()
declare -A SPEC=() LOW=()
while read -r name low spec; do
    SPEC[$name]=$spec; LOW[$name]=$low
done < <(bounds)

pin_for() {  # NAME[==VER] -> NAME==VER (oldest allowed if no version given)
    local name=${1%%==*} ver
    if [[ $1 == *==* ]]; then ver=${1#*==}; else ver=$(oldest "$name" "${SPEC[$name]:->=0}" "${LOW[$name]:-0}"); fi
    echo "$name==$ver"
}

case $MODE in
    current) run_pinned current ;;
    all)
        for name in "${!SPEC[@]}"; do PINS+=("$(pin_for "$name")"); done
        run_pinned all-minimum "${PINS[@]}" ;;
    each)
        status=0
        for name in "${!SPEC[@]}"; do
            pin=$(pin_for "$name")
            run_pinned "min-${pin/==/-}" "$pin" || status=1
        done
        exit $status ;;
    select)
        for item in "${SELECTED[@]}"; do PINS+=("$(pin_for "$item")"); done
        label=$(printf '%s_' "${PINS[@]}" | sed 's/==/-/g;s/_$//')
        run_pinned "${label:0:120}" "${PINS[@]}" ;;
esac
