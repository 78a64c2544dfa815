#!/usr/bin/env bash
# Issue 10's GPU checks as one prepared script, for the device machine (an H100 with CuPy and
# PyTorch, no network, no Snakemake: nothing is installed, PYTHONPATH=workflow is the package).
# Steps, each under `timeout` (capped by the time left in $GPU_CHECK_BUDGET), exit status kept:
#   preflight        an elementwise op, a reduction, a matmul and a custom kernel on the GPU; stops all if it fails
#   tests            pytest -rs -m gpu tests/test_cupy.py but the CUDA graph's; a skipped test counts as a failure
#   graph-tests      the CUDA graph's GPU tests, in a process of their own: a cuBLAS call through ctypes
#                    gone wrong cannot take the other tests' report with it
#   accuracy         gradients at 256 filters against NumPy float64, layer by layer, with the kernels on and
#                    off, the reference's near-tied pooling windows routed as each run's (informative)
#   speed            epoch seconds per filter count, ours (printed first), then PyTorch eager's
#   launches         kernel launches per training step, custom kernels on and off (CUDA graph node count,
#                    else PyTorch's profiler), and wall and device milliseconds per step
#   stages           where a training step goes at 32 and 256 filters: each layer, then each part of a layer
#                    (im2col, col2im, the weight-gradient product, the column sums), timed one call at a
#                    time; each matrix product as written and transposed
#   memory           peak training (256 filters, batch 64) and evaluation (batches of 1000) memory
#   parity           prepare + train + evaluate: 32 filters, lr 0.1, L2 1e-4, 20 epochs, seed 0, on the
#                    stand-in archive joined by benchmarks/device_data.sh
#   parity-study     instead of parity (not in the default steps): the same recipe's point of the grid, taken
#                    from benchmarks/gpu_study.sh's run in $STUDY_WORK (point $PARITY_POINT); see device_run.sh
#   speed-nokernels  our epoch seconds with SCRATCHCNN_KERNELS=0
#   speed-graph      our epoch seconds with SCRATCHCNN_GRAPH=1 (the training step replayed as a CUDA graph)
# then one summary, $OUT/gpu_results.json, with $OUT/gpu_check.log, $OUT/gpu_details.json (every raw
# number) and $OUT/parity_history.csv. Exit status 1 if any step failed or any GPU test failed or skipped.
# STEPS="preflight tests" runs only those steps; results of earlier calls on the same (warm) machine
# stay in $WORK (default /tmp/gpu-check) and count in the summary, a step run again replacing its row.
#
#   COMMIT=<sha> bash benchmarks/gpu_check.sh   # on the GPU machine; see benchmarks/NOTES.md for the calls
#   bash benchmarks/gpu_check.sh --cpu          # dry run of the plumbing on NumPy, tiny sizes, 20 s
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--parity" ]; then  # the parity step, run by `step` below: --parity DEVICE WORK
    dev=$2 dir=$3/parity
    mkdir -p "$dir"
    # the rest of the recipe from the pipeline's config, as the Snakefile passes it
    recipe_flags=$(python3 - <<'EOF'
import yaml
c = yaml.safe_load(open("config/config.yaml"))
m, t = c["model"], c["train"]
flags = {"batch-size": t["batch_size"], "lr-decay": t["lr_decay"], "lr-step": t["lr_step"], "clip": t["clip"],
         "bn-momentum": m["bn_momentum"], "kernel-size": m["kernel_size"], "padding1": m["padding1"],
         "padding2": m["padding2"], "pool-size": m["pool_size"], "pool-stride": m["pool_stride"]}
print(" ".join(f"--{k} {v}" for k, v in flags.items()))
EOF
    ) || exit 1
    read -r -a recipe <<<"$recipe_flags"
    if [ "$dev" = gpu ]; then
        archive=$(bash benchmarks/device_data.sh join) || exit 1
        data_args=(--n-val 5000 --split-seed 0 --expected-train 50000 --expected-test 10000)
        train_args=(--filters 32 --epochs 20)
    else
        archive=$dir/demo.tar.gz
        python3 workflow/scripts/make_demo_archive.py --out "$archive" --n-train-per-class 12 --n-test-per-class 5 --seed 0 || exit 1
        data_args=(--n-val 20 --split-seed 0 --expected-train 120 --expected-test 50)
        train_args=(--filters 4 --epochs 2)
    fi
    python3 workflow/scripts/prepare.py --archive "$archive" --out "$dir/cifar10.npz" "${data_args[@]}" || exit 1
    python3 workflow/scripts/train.py --data "$dir/cifar10.npz" --out-dir "$dir" --lr 0.1 --reg 1e-4 --seed 0 \
        "${recipe[@]}" --device "$dev" --train-subset 0 --jobs-per-gpu 1 "${train_args[@]}" || exit 1
    python3 workflow/scripts/evaluate.py --model "$dir/model.npz" --data "$dir/cifar10.npz" --out-dir "$dir" \
        --device "$dev" --batch-size 1000 || exit 1
    exit 0
fi

if [ "${1:-}" = "--parity-study" ]; then  # the parity-study step: --parity-study STUDY_WORK POINT WORK
    # the parity recipe is one of the grid's points (seed 0, 20 epochs, through the pipeline):
    # take its training record from gpu_study.sh's full run and its test metrics from the points step
    study=$2 point=$3 dir=$4/parity
    rm -rf "$dir" && mkdir -p "$dir" || exit 1
    for f in "$study/full/results/sweep/points/$point/metrics.json" "$study/full/results/sweep/points/$point/history.csv" \
        "$study/points/$point/test_metrics.json"; do
        cp "$f" "$dir/" || { echo "parity-study: no $f (did benchmarks/gpu_study.sh run its full and points steps?)"; exit 1; }
    done
    python3 - "$dir/metrics.json" "$point" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
hp = m["hyperparameters"]
want = dict(part.split("~") for part in sys.argv[2].split("/"))
got = {k: hp[k] for k in want}
if any(float(got[k]) != float(v) for k, v in want.items()) or m["status"] != "ok":
    sys.exit(f"parity-study: the point trained {got} with status {m['status']}, not {want}")
print(f"parity from the study's point {sys.argv[2]}: {m['backend']}, {hp['epochs']} epochs, seed {hp['seed']}, "
      f"best val {m['best_val_acc']:.4f} (epoch {m['best_epoch']})")
EOF
    exit $?
fi

MODE=gpu
[ "${1:-}" = "--cpu" ] && MODE=cpu
OUT=${OUT:-benchmarks/runs/gpu-check-$(date +%Y%m%d-%H%M%S)}
WORK=${WORK:-/tmp/gpu-check}
if [ -z "${STEPS:-}" ]; then  # a whole run starts from a clean work dir
    STEPS="preflight tests graph-tests accuracy speed launches stages memory parity speed-nokernels speed-graph"
    rm -rf "$WORK"
fi
BUDGET=${GPU_CHECK_BUDGET:-560}  # seconds for every step together; a device command may run 600
mkdir -p "$OUT" "$WORK"
LOG=$OUT/gpu_check.log
export PYTHONPATH="$PWD/workflow${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-/tmp/cupy-kernel-cache}  # writable, whatever $HOME is
# full float32 on both sides (some CUDA images switch PyTorch's TF32 back on through the environment)
unset CUPY_TF32 NVIDIA_TF32_OVERRIDE TORCH_ALLOW_TF32_CUBLAS_OVERRIDE
# the custom kernels on, unless the caller turned them off (device_run.sh's fallback) or a step does
export SCRATCHCNN_KERNELS=${SCRATCHCNN_KERNELS:-1}
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
START=$SECONDS
: >"$LOG"
touch "$WORK/steps.tsv"

# step NAME LIMIT CMD...: run CMD under timeout (LIMIT, or less if less is left), output to the log
# and stdout, status and seconds to steps.tsv. 25 s stay for the summary.
step() {
    local name=$1 limit=$2
    shift 2
    [[ " $STEPS " == *" $name "* ]] || return 0
    sed -i "/^$name\t/d" "$WORK/steps.tsv"  # a step run again replaces its row
    local left=$((BUDGET - (SECONDS - START) - 25))
    if [ "$left" -lt 10 ]; then
        echo "== $name: skipped, no time left" | tee -a "$LOG"
        printf '%s\tno-time\t0\n' "$name" >>"$WORK/steps.tsv"
        return 1
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (timeout ${limit}s): $*" | tee -a "$LOG"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >>"$WORK/steps.tsv"
    echo "== $name: exit $rc after $((SECONDS - t0))s" | tee -a "$LOG"
    return "$rc"
}

summary() {
    if [ -f "$WORK/parity/history.csv" ]; then
        cp "$WORK/parity/history.csv" "$OUT/parity_history.csv"
    elif [ -f "$WORK/parity/state.npz" ]; then  # the parity run was cut off: the epochs it finished
        python3 - "$WORK/parity/state.npz" "$OUT/parity_history.csv" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
import numpy as np, pandas as pd
from scratchcnn.training import HISTORY_COLUMNS
with np.load(sys.argv[1]) as z:
    history = json.loads(str(z["info_json"]))["history"]
pd.DataFrame(history, columns=list(HISTORY_COLUMNS)).to_csv(sys.argv[2], index=False)
print(f"parity cut off after {len(history)} epochs: their history from its snapshot in {sys.argv[2]}")
EOF
    fi
    echo "== summary ($((SECONDS - START))s so far)" | tee -a "$LOG"
    python3 benchmarks/gpu_summary.py "$WORK" "$OUT/gpu_results.json" --commit "$COMMIT" \
        --details "$OUT/gpu_details.json" 2>&1 | tee -a "$LOG"
    return "${PIPESTATUS[0]}"
}

if [ "$MODE" = gpu ]; then
    DEV=gpu FILTERS=(32 64 128 256) IMAGES=45000 EVAL_IMAGES=5000 PROBE_FILTERS=() STAGE_FILTERS=(--filters 32 256)
    TESTS=(-m gpu tests/test_cupy.py -k "not graph") GRAPH_TESTS=(-m gpu tests/test_cupy.py -k graph)
else
    DEV=cpu FILTERS=(4) IMAGES=128 EVAL_IMAGES=100 PROBE_FILTERS=(--filters 4) STAGE_FILTERS=(--filters 4)
    TESTS=(tests/test_kernels.py) GRAPH_TESTS=(tests/test_graph.py)  # the GPU tests skip without CuPy; these exercise the same plumbing
fi
echo "gpu_check ($MODE) commit $COMMIT, work dir $WORK, out $OUT, budget ${BUDGET}s, SCRATCHCNN_KERNELS=$SCRATCHCNN_KERNELS" | tee -a "$LOG"

step preflight 120 python3 benchmarks/gpu_probe.py preflight --device $DEV --json "$WORK/preflight.json"
rc=$?
if [ $rc -ne 0 ]; then
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        echo "PREFLIGHT FAILED: timed out (the GPU may be fine: give it more time); nothing else was run" | tee -a "$LOG"
    else
        echo "PREFLIGHT FAILED: no usable GPU through CuPy; nothing else was run" | tee -a "$LOG"
    fi
    summary
    exit 1
fi
step tests 200 python3 -m pytest -q -rs -p no:cacheprovider "${TESTS[@]}" --junitxml="$WORK/gpu_tests.xml"
step graph-tests 60 python3 -m pytest -q -rs -p no:cacheprovider "${GRAPH_TESTS[@]}" --junitxml="$WORK/gpu_tests_graph.xml"
step accuracy 75 python3 benchmarks/gpu_probe.py accuracy --device $DEV "${PROBE_FILTERS[@]}" --json "$WORK/accuracy.json"
step speed 150 python3 benchmarks/epoch_speed.py --device $DEV --filters "${FILTERS[@]}" --batch-size 64 \
    --images $IMAGES --json "$WORK/speed.json"
step launches 60 python3 benchmarks/gpu_probe.py launches --device $DEV "${PROBE_FILTERS[@]}" --json "$WORK/launches.json"
step stages 60 python3 benchmarks/gpu_probe.py stages --device $DEV "${STAGE_FILTERS[@]}" --json "$WORK/stages.json"
step memory 60 python3 benchmarks/gpu_probe.py memory --device $DEV "${PROBE_FILTERS[@]}" \
    --eval-images $EVAL_IMAGES --json "$WORK/memory.json"
step parity 300 bash benchmarks/gpu_check.sh --parity $DEV "$WORK"
step parity-study 30 bash benchmarks/gpu_check.sh --parity-study "${STUDY_WORK:-/tmp/scratchcnn-study}" \
    "${PARITY_POINT:-lr~0.1/reg~0.0001/filters~32}" "$WORK"
step speed-nokernels 90 env SCRATCHCNN_KERNELS=0 python3 benchmarks/epoch_speed.py --device $DEV --no-torch \
    --filters "${FILTERS[@]}" --batch-size 64 --images $IMAGES --json "$WORK/speed_nokernels.json"
step speed-graph 60 env SCRATCHCNN_GRAPH=1 python3 benchmarks/epoch_speed.py --device $DEV --no-torch \
    --filters "${FILTERS[@]}" --batch-size 64 --images $IMAGES --json "$WORK/speed_graph.json"
summary
