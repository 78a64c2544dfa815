#!/usr/bin/env bash
# Issues 10 and 11 together on the device machine, in three calls made back to back. A session has
# 15 minutes of device time for everything, the machine's start included, and the stand-in archive
# needs three calls to travel (benchmarks/device_data.sh), so every call also does work:
#
#   call  carry                       command                                   work (device seconds, cap)
#   1     .gpudata/part1 .whl/1       bash benchmarks/device_run.sh 1           preflight, GPU tests, gradients
#                                                                               against float64, launches and
#                                                                               time per step, where a step
#                                                                               goes (160)
#   2     .gpudata/part2 .whl/2       bash benchmarks/device_run.sh 2           install Snakemake; epoch speed
#                                                                               against PyTorch, memory, epoch
#                                                                               speed without the custom
#                                                                               kernels (120)
#   3     .gpudata/part3              BUDGET=<s> bash benchmarks/device_run.sh 3
#         the whole pipeline through Snakemake with $FULL_JOBS jobs on the card (default 8 under CUDA
#         MPS, 8 without if MPS will not start; issue 11), every grid point's checkpoint on the test
#         set (time is kept for it even when the pipeline runs out of time), then the sweeps timed with
#         $JOBS jobs per GPU at $SWEEP_EPOCHS epochs while the budget lasts; issue 10's parity is the
#         grid's point of its recipe (lr 0.1, L2 1e-4, 32 filters, seed 0, 20 epochs); both summaries.
#
# The first run (an H200, 2026-11-28, benchmarks/NOTES.md) shaped this: 8 jobs without MPS did no
# more epochs per second than one job, and the whole pipeline did not finish in call 3's time.
# Each call's output_tail ends with its verdict; $OUT holds gpu_results.json, gpu_details.json and
# gpu_check.log (each call), and after call 3 also parity_history.csv, study.tar.gz, timing.json and
# study.log (7 files; 8 may come back). What a call leaves in /tmp (data, wheels, Snakemake, test
# and step results) stays while the machine is warm (30 s after a call).
# Call 3 chooses its SCRATCHCNN_KERNELS and SCRATCHCNN_GRAPH from calls 1 and 2 (gpu_summary.py
# --study-settings, printed in its output): the kernels off where a test failed for them, so that the
# study runs on the reference code path instead of being lost; the step as a CUDA graph where every
# test passed, the graph's included, and call 2's speed-graph beat speed at 32 filters. A setting
# given by the caller wins. Call 3 needs BUDGET (its timeout_s - 20) on the GPU.
# STUDY_ONLY=1 in all three calls (issue 10's measurements already committed): calls 1 and 2 only
# bring the data and wheels, check that the GPU answers and install Snakemake (a minute each).
#
#   bash benchmarks/device_run.sh --cpu     # the three calls one after another, on NumPy and the demo
#   bash benchmarks/device_run.sh --sizes   # here, before the calls: what each call carries (64 MiB at most)
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = --sizes ]; then  # the tree that travels (tracked and untracked-not-ignored files) and each call's carry
    tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
    limit=$((64 * 1024 * 1024)) rc=0
    for call in "1 .gpudata/part1 .whl/1" "2 .gpudata/part2 .whl/2" "3 .gpudata/part3"; do
        read -r n paths <<<"$call"
        carried=0
        for path in $paths; do
            [ -d "$path" ] || { echo "call $n: $path is missing (benchmarks/NOTES.md: split and download first)"; rc=1; continue; }
            carried=$((carried + $(du -sb "$path" | cut -f1)))
        done
        total=$((tree + carried))
        verdict=ok
        [ "$total" -le "$limit" ] || { verdict="OVER 64 MiB"; rc=1; }
        awk -v n="$n" -v t="$tree" -v c="$carried" -v s="$total" -v v="$verdict" \
            'BEGIN { printf "call %s: tree %.1f MiB + carried %.1f MiB = %.1f MiB of 64: %s\n", n, t/2^20, c/2^20, s/2^20, v }'
    done
    exit $rc
fi

CALL=${1:-}
MODE=gpu
if [ "$CALL" = --cpu ]; then
    MODE=cpu
    if [ -z "${CHECK_WORK:-}${STUDY_WORK:-}" ]; then  # work dirs of our own: gone afterwards
        CHECK_WORK=$(mktemp -d /tmp/device-run-check.XXXXXX) STUDY_WORK=$(mktemp -d /tmp/device-run-study.XXXXXX)
        trap 'rm -rf "$CHECK_WORK" "$STUDY_WORK"' EXIT
    fi
    CHECK_WORK=${CHECK_WORK:-$(mktemp -d /tmp/device-run-check.XXXXXX)}
    STUDY_WORK=${STUDY_WORK:-$(mktemp -d /tmp/device-run-study.XXXXXX)}
    PARITY_POINT=${PARITY_POINT:-lr~0.05/reg~0.001/filters~8}  # the demo grid's point of its own recipe
    CHECK_ARGS=(--cpu)
    STUDY_ARGS=(--cpu)
else
    CHECK_WORK=${CHECK_WORK:-/tmp/gpu-check}
    STUDY_WORK=${STUDY_WORK:-/tmp/scratchcnn-study}
    PARITY_POINT=${PARITY_POINT:-lr~0.1/reg~0.0001/filters~32}
    CHECK_ARGS=()
    STUDY_ARGS=()
fi
export OUT=${OUT:-benchmarks/runs/device-run-$(date +%Y%m%d-%H%M%S)}
export COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
export STUDY_WORK PARITY_POINT
mkdir -p "$OUT"

stash() {  # the carried data part and wheels, copied outside the repository copy (GPU machine only)
    [ $MODE = gpu ] || return 0
    bash benchmarks/device_data.sh stash || return 1
    if compgen -G ".whl/*/*.whl" >/dev/null; then bash benchmarks/device_wheels.sh stash || return 1; fi
}

check() {  # BUDGET STEPS: benchmarks/gpu_check.sh with those steps, results kept in $CHECK_WORK
    WORK=$CHECK_WORK GPU_CHECK_BUDGET=$1 STEPS=$2 bash benchmarks/gpu_check.sh "${CHECK_ARGS[@]}"
}

call1() {
    local rc=0
    stash || rc=1  # the checks need no data: they still run, and call 2 says what is missing
    # the preflight's first CuPy use compiles kernels into an empty cache, and it imports PyTorch
    if [ -n "${STUDY_ONLY:-}" ]; then check "${BUDGET:-90}" preflight || rc=1; else check "${BUDGET:-160}" "preflight tests graph-tests accuracy launches stages" || rc=1; fi
    return $rc
}

call2() {
    local rc=0
    stash || rc=1
    if [ $MODE = gpu ]; then
        bash benchmarks/device_wheels.sh install || { echo "SNAKEMAKE NOT INSTALLED: call 3 cannot run the study"; rc=1; }
    fi
    [ -n "${STUDY_ONLY:-}" ] || check "${BUDGET:-120}" "speed memory speed-nokernels speed-graph" || rc=1
    return $rc
}

study() {  # BUDGET: benchmarks/gpu_study.sh's steps in $STUDY_WORK
    WORK=$STUDY_WORK BUDGET=$1 STEPS="setup full points sweeps" \
        FULL_JOBS=${FULL_JOBS:-8+mps} JOBS=${JOBS:-1 8 4 2} SWEEP_EPOCHS=${SWEEP_EPOCHS:-2} \
        bash benchmarks/gpu_study.sh "${STUDY_ARGS[@]}"
}

call3() {
    local budget=${BUDGET:-} rc=0 chosen kv name
    if [ -z "$budget" ]; then  # a guess too large gets the call killed before it writes its results
        [ $MODE = gpu ] && { echo "call 3 needs BUDGET=<its timeout_s - 20> (benchmarks/NOTES.md)"; return 2; }
        budget=540
    fi
    # the kernels and the graph as calls 1 and 2 found them (a setting given by the caller wins):
    # chosen here, so that call 3 follows call 2 at once, before the machine goes back
    chosen=$(python3 benchmarks/gpu_summary.py "$CHECK_WORK" --study-settings) || chosen=""
    for kv in $chosen; do
        name=${kv%%=*}
        if [ $MODE = gpu ] && [ -z "${!name:-}" ]; then export "${kv?}"; fi  # on the CPU: said, not used
    done
    # the study has the call to itself; 40 s stay for taking the parity from its point of that recipe
    study $((budget - 40)) || rc=1
    check 40 "parity-study" || rc=1
    return $rc
}

case "$CALL" in
1) call1 ;;
2) call2 ;;
3) call3 ;;
--cpu)
    rc=0
    for n in 1 2 3; do
        echo "==== call $n (cpu)"
        "call$n" || rc=1
    done
    (exit $rc)
    ;;
*)
    sed -n '2,30p' "$0" >&2
    exit 2
    ;;
esac
rc=$?
echo "==== device_run $CALL: $([ $rc = 0 ] && echo 'every step passed' || echo 'SOME STEP FAILED') (results in $OUT)"
exit $rc
