#!/usr/bin/env bash
# Issue 11 on the GPU machine: the default pipeline through Snakemake on the stand-in archive, and
# the sweeps' wall time with 1, 2, 4 and 8 training jobs sharing the card. Each run works in its
# own copy of the pipeline under $WORK (default /tmp/scratchcnn-study, outside the repository
# copy, so it stays between calls on a warm machine). Steps (STEPS, in this order):
#   setup   install Snakemake from the carried wheels (benchmarks/device_wheels.sh install), join
#           the archive (benchmarks/device_data.sh join), record versions and the card
#   full    `snakemake results/final/test_metrics.json report/report.tex` (every figure with it),
#           train.jobs_per_gpu=N, --resources gpu=N for FULL_JOBS=N (N+mps: under CUDA MPS, or without
#           it if the daemon will not start): from archive to report.tex, stopped early enough to
#           leave the points step $POINTS_RESERVE_S seconds (default 40: 15 checkpoints, 8 at a time)
#   points  every grid point's checkpoint evaluated on the test set (the README's table), also
#           after a full run cut short, for the points it finished; $PARITY_POINT (issue 10's recipe)
#           first, so that it is tested even if time runs out
#   (a sweep setting left out for lack of time is reported as skipped, not as a failure)
#   sweeps  for each N in $JOBS: `snakemake results/sweep/best.json` from the prepared data, with
#           train.jobs_per_gpu=N, --resources gpu=N, sweep.epochs=$SWEEP_EPOCHS (fewer than the
#           full run's 20 so that four settings fit the device time; the full run gives the 20);
#           a setting starts only with $SWEEP_MIN_S seconds of the budget left; N+mps (8+mps) runs
#           it with CUDA MPS started, so that the jobs' kernels can share the card at once
# While Snakemake runs, nvidia-smi samples the card (utilisation, memory) and each process's memory.
# Every call ends by writing $OUT/study.tar.gz (everything so far, under 16 MiB) and
# $OUT/study.log. Each Snakemake run is under `timeout` (capped by what is left of $BUDGET seconds),
# its exit status kept in timing.json; the script exits 1 if any step of this call failed.
# RESUME=1 goes on with a run that a timeout stopped (Snakemake resumes from its snapshots) instead
# of starting it afresh; its wall time then adds the earlier call's (its phases are left out).
#
#   COMMIT=<sha> STEPS="setup full points" FULL_JOBS=8 bash benchmarks/gpu_study.sh   # GPU machine
#   COMMIT=<sha> STEPS="sweeps" JOBS="1 2 4 8" SWEEP_EPOCHS=4 bash benchmarks/gpu_study.sh
#   bash benchmarks/gpu_study.sh --cpu   # the same steps on config/demo.yaml with NumPy, 2 minutes
# benchmarks/NOTES.md lists the device calls in order.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

MODE=gpu
[ "${1:-}" = "--cpu" ] && MODE=cpu
if [ $MODE = cpu ]; then
    WORK=${WORK:-$(mktemp -d /tmp/scratchcnn-study-cpu.XXXXXX)}
    JOBS=${JOBS:-1 2} SWEEP_EPOCHS=${SWEEP_EPOCHS:-1} FULL_JOBS=${FULL_JOBS:-2} CORES=${CORES:-2}
else
    WORK=${WORK:-/tmp/scratchcnn-study}
    JOBS=${JOBS:-1 2 4 8} SWEEP_EPOCHS=${SWEEP_EPOCHS:-4} FULL_JOBS=${FULL_JOBS:-8} CORES=${CORES:-$(nproc)}
fi
STEPS=${STEPS:-setup full points sweeps}
OUT=${OUT:-$REPO/benchmarks/runs/gpu-study-$(date +%Y%m%d-%H%M%S)}
BUDGET=${BUDGET:-570}  # seconds for this call; a device command may run 600
# a sweep run starts only with this much of the budget left: by the first run (2026-11-28, an H200),
# a 2-epoch sweep of 15 jobs one at a time took 90 to 105 s, and one cut short measures nothing
SWEEP_MIN_S=${SWEEP_MIN_S:-120}
SITE=${SITE:-/tmp/site}
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
MD5=90b78273681b59d9505503deffe130da  # the stand-in archive (../shared/data/README.md)
mkdir -p "$OUT" "$WORK/timing"
LOG=$OUT/study.log
START=$SECONDS
FAILED=0 SKIPPED=""
PARITY_POINT=${PARITY_POINT:-}  # device_run.sh names it; tested first by the points step
export PYTHONUNBUFFERED=1 SCRATCHCNN_GIT_COMMIT=$COMMIT
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-/tmp/cupy-kernel-cache}  # writable, shared by the jobs
export MPLCONFIGDIR=${MPLCONFIGDIR:-/tmp/mplconfig}
unset CUPY_TF32 NVIDIA_TF32_OVERRIDE TORCH_ALLOW_TF32_CUBLAS_OVERRIDE  # full float32
export SCRATCHCNN_KERNELS=${SCRATCHCNN_KERNELS:-1}  # on, unless the caller turned them off
export SCRATCHCNN_GRAPH=${SCRATCHCNN_GRAPH:-0}  # the step as a CUDA graph where the caller asks (device_run.sh)
[ $MODE = gpu ] && [ -d "$SITE" ] && export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
# the rules call `python`: make it this python3 (the one with CuPy there). A wrapper, not a link:
# a link to a virtual environment's python starts the base interpreter, without the environment.
mkdir -p "$WORK/bin"
printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v python3)" >"$WORK/bin/python"
chmod +x "$WORK/bin/python"
export PATH=$WORK/bin:$PATH

main() {
SAMPLERS=()
trap 'sampler_stop; mps_stop' EXIT  # no sampler or daemon of ours outlives the script
echo "gpu_study ($MODE) commit $COMMIT, steps '$STEPS', work $WORK, out $OUT, budget ${BUDGET}s, SCRATCHCNN_KERNELS=$SCRATCHCNN_KERNELS, SCRATCHCNN_GRAPH=$SCRATCHCNN_GRAPH"
has() { [[ " $STEPS " == *" $1 "* ]]; }
left() { echo $((BUDGET - (SECONDS - START) - 20)); }  # 20 s stay for the bundle

# limited LIMIT CMD...: CMD under timeout, at most what is left of the budget; its exit status
limited() {
    local limit=$1 l
    shift
    l=$(left)
    [ "$l" -lt 10 ] && { echo "no time left for: $*"; return 124; }
    [ "$limit" -gt "$l" ] && limit=$l
    local rc=0
    timeout --kill-after=10 "$limit" "$@" || rc=$?
    return $rc
}

sampler_start() {  # DIR: the card's and each process's use, every 0.5 / 1 s, until sampler_stop
    SAMPLERS=()
    command -v nvidia-smi >/dev/null || return 0
    nvidia-smi --query-gpu=timestamp,utilization.gpu,utilization.memory,memory.used,memory.total,power.draw \
        --format=csv,noheader,nounits -lms 500 >>"$1/gpu_samples.csv" 2>/dev/null &
    SAMPLERS+=($!)
    (while :; do
        t=$(date +%s.%N)
        nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null |
            sed "s/^/$t, /" || true
        sleep 1
    done) >>"$1/gpu_apps.csv" 2>/dev/null &  # not on the pipe into tee, which would then wait for it
    SAMPLERS+=($!)
}
sampler_stop() {
    local p
    for p in "${SAMPLERS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${SAMPLERS[@]}"; do wait "$p" 2>/dev/null || true; done
    SAMPLERS=()
}

# CUDA MPS (a JOBS entry such as 8+mps): the jobs' kernels may then run side by side on the card
# instead of taking turns. Its pipe and log folders live in $WORK; the jobs find them through the
# exported variables. mps_start fails (and the setting is left out) if the daemon or a client fails.
mps_start() {
    command -v nvidia-cuda-mps-control >/dev/null || { echo "mps: no nvidia-cuda-mps-control"; return 1; }
    export CUDA_MPS_PIPE_DIRECTORY=$WORK/mps/pipe CUDA_MPS_LOG_DIRECTORY=$WORK/mps/log
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    # the daemon keeps its inherited descriptors: not this script's, whose stdout is the pipe into tee
    timeout 10 nvidia-cuda-mps-control -d </dev/null >"$CUDA_MPS_LOG_DIRECTORY/start.txt" 2>&1 ||
        { echo "mps: the daemon did not start"; cat "$CUDA_MPS_LOG_DIRECTORY/start.txt"; return 1; }
    if [ $MODE = gpu ]; then  # one client through the daemon as the jobs use the card (a product, a kernel of ours), or no MPS
        limited 30 env PYTHONPATH="$REPO/workflow:$REPO/benchmarks:${PYTHONPATH:-}" python3 benchmarks/gpu_probe.py \
            preflight --device gpu --json "$CUDA_MPS_LOG_DIRECTORY/client.json" >"$CUDA_MPS_LOG_DIRECTORY/client.txt" 2>&1 ||
            { echo "mps: a CuPy client failed"; tail -n 5 "$CUDA_MPS_LOG_DIRECTORY"/*.txt "$CUDA_MPS_LOG_DIRECTORY"/*.log 2>/dev/null; return 1; }
    fi
    echo "mps: started"
}
mps_stop() {
    [ -n "${CUDA_MPS_PIPE_DIRECTORY:-}" ] || return 0
    # quit waits for the daemon's clients: bounded, since a killed run's may not go quietly
    echo quit | timeout --kill-after=5 15 nvidia-cuda-mps-control 2>/dev/null || true
    sleep 1
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
}

# run NAME N EPOCHS LIMIT TARGET...: Snakemake in a fresh copy $WORK/NAME with jobs_per_gpu N;
# EPOCHS overrides sweep.epochs ("" keeps the config's); timing in $WORK/timing/NAME.json
run() {
    local name=$1 n=$2 epochs=$3 limit=$4
    shift 4
    local dir=$WORK/$name before=0
    if [ "${RESUME:-0}" = 1 ] && [ -f "$WORK/timing/$name.json" ]; then  # go on where a killed run stopped
        before=$(python3 -c "import json; t = json.load(open('$WORK/timing/$name.json')); print(t['end'] - t['start'] + t['before'])")
        echo "== $name: resuming after ${before} s"
    else
        rm -rf "$dir"
    fi
    mkdir -p "$dir"
    if [ ! -f "$dir/Snakefile" ]; then
        cp -r "$REPO"/{Snakefile,config,workflow,report,profiles,environment.yml,environment-gpu.yml} "$dir/"
        rm -f "$dir/report/report.tex" "$dir/report/report.pdf"
    fi
    {
        if [ $MODE = gpu ]; then
            printf 'device: gpu\ndata:\n  url: %s\n  md5: %s\n' "$ARCHIVE" "$MD5"
            # one core per job: a GPU job is one thread launching kernels, and with the default two
            # Snakemake would fit only $(nproc)/2 jobs on the cores, whatever --resources gpu says
            printf 'train:\n  jobs_per_gpu: %s\n  threads: 1\n' "$n"
        else
            printf 'device: cpu\ntrain:\n  jobs_per_gpu: %s\n  threads: 1\n' "$n"
        fi
        if [ -n "$epochs" ]; then printf 'sweep:\n  epochs: %s\n' "$epochs"; fi
    } >"$dir/study.yaml"
    local configs=(study.yaml)
    [ $MODE = cpu ] && configs=(config/demo.yaml study.yaml)
    printf '%s\n' "${configs[@]}" >"$dir/configfiles.txt"  # for benchmarks/reference_outcome.sh
    if [ "$name" != full ] && [ ! -d "$dir/results/data" ]; then  # the sweeps start from the full run's prepared data
        mkdir -p "$dir/results"
        cp -rpl "$WORK/full/results/data" "$dir/results/" 2>/dev/null || cp -rp "$WORK/full/results/data" "$dir/results/"
    fi
    echo "== $name: jobs_per_gpu $n, sweep.epochs ${epochs:-as configured}, targets $*"
    sampler_start "$dir"
    local t0 t1 rc=0
    t0=$(date +%s.%N)
    (cd "$dir" && limited "$limit" python3 -m snakemake "$@" --configfile "${configs[@]}" --cores "$CORES" \
        --resources gpu="$n" --scheduler greedy --rerun-incomplete --nolock >>snakemake.log 2>&1) || rc=$?
    t1=$(date +%s.%N)
    sampler_stop
    printf '{"name": "%s", "jobs_per_gpu": %s, "mps": %s, "sweep_epochs": %s, "targets": "%s", "exit": %s, "start": %s, "end": %s, "before": %s}\n' \
        "$name" "$n" "${MPS:-false}" "${epochs:-null}" "$*" "$rc" "$t0" "$t1" "$before" >"$WORK/timing/$name.json"
    echo "== $name: exit $rc after $(python3 -c "print(round($t1 - $t0, 1))") s"
    [ $rc = 0 ] || { tail -n 30 "$dir/snakemake.log"; FAILED=1; }
    return 0
}

if has setup; then
    echo "== setup"
    if ! python3 -c "import snakemake" 2>/dev/null; then
        SITE=$SITE bash benchmarks/device_wheels.sh install || { echo "SETUP FAILED: Snakemake"; FAILED=1; }
        export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
    fi
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "commit: $COMMIT"
        echo "mode: $MODE"
        python3 -c "import sys, numpy, snakemake; print('python:', sys.version.split()[0]); print('numpy:', numpy.__version__); print('snakemake:', snakemake.__version__)" || true
        [ $MODE = gpu ] && python3 -c "import cupy; print('cupy:', cupy.__version__)" || true
        command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
        echo "cpus: $(nproc)"
    } >"$WORK/setup.txt" 2>&1
    cat "$WORK/setup.txt"
fi
if [ $MODE = gpu ]; then
    ARCHIVE=$(bash benchmarks/device_data.sh join) || { echo "NO ARCHIVE: carry the three parts first"; FAILED=1; }
fi

if has full && [ $FAILED = 0 ]; then
    n=${FULL_JOBS%+mps} mps=false
    if [ "$FULL_JOBS" != "$n" ]; then
        if mps_start; then mps=true; else echo "== full: MPS did not start: $n jobs without it"; mps_stop; fi
    fi
    # the points step evaluates whatever the sweeps left, even when the pipeline runs out of time: keep
    # it time, and what a stopped run may still take: timeout's --kill-after (10 s), then under MPS
    # mps_stop (up to 21 s: its quit's 15 s and --kill-after 5, then 1)
    limit=$(($(left) - $(has points && echo $((${POINTS_RESERVE_S:-40} + 11 + $([ $mps = true ] && echo 21 || echo 0))) || echo 0)))
    if [ "$limit" -lt 30 ]; then
        echo "== full: not started, ${limit} s left"
        FAILED=1
    else
        MPS=$mps run full "$n" "" "$limit" results/final/test_metrics.json report/report.tex
    fi
    [ $mps = false ] || mps_stop
fi

if has points && [ -d "$WORK/full/results/sweep/points" ] && [ "$(left)" -lt 30 ]; then
    # an earlier call's evaluations stay as they are, rather than be removed for a run cut short
    echo "== points: not started, $(left) s left"
    FAILED=1
elif has points && [ -d "$WORK/full/results/sweep/points" ]; then  # the points trained so far
    echo "== points: every grid point's checkpoint on the test set"
    dev=$([ $MODE = gpu ] && echo gpu || echo cpu)
    rm -rf "$WORK/points"
    trained=$(cd "$WORK/full/results/sweep/points" && find . -name model.npz | sed 's|^\./||; s|/model.npz$||' | sort)
    { grep -Fx "$PARITY_POINT" <<<"$trained" || true; grep -vFx "$PARITY_POINT" <<<"$trained" || true; } |
        limited 120 xargs -P 8 -I{} sh -c "mkdir -p '$WORK/points/{}' && PYTHONPATH='$REPO/workflow:${PYTHONPATH:-}' python3 workflow/scripts/evaluate.py \
            --model '$WORK/full/results/sweep/points/{}/model.npz' --data '$WORK/full/results/data/cifar10.npz' \
            --out-dir '$WORK/points/{}' --device $dev --batch-size 1000 2>'$WORK/points/{}/evaluate.log'" ||
        { echo "points: failed"; FAILED=1; }
fi

if has sweeps; then
    if [ ! -f "$WORK/full/results/data/cifar10.npz" ]; then
        echo "sweeps: no prepared data in $WORK/full (run the full step first)"
        FAILED=1
    else
        for setting in $JOBS; do
            n=${setting%+mps} name=sweep-j${setting/+/-}
            if [ "$(left)" -lt "$SWEEP_MIN_S" ]; then  # a run cut short measures nothing: leave it to a later call
                echo "== $name: SKIPPED, not started with $(left) s left (SWEEP_MIN_S=$SWEEP_MIN_S)"
                SKIPPED="$SKIPPED $name"
                continue
            fi
            if [ "$setting" != "$n" ]; then
                # an extra measurement: without MPS here the others still stand, so no failure
                mps_start || { echo "== $name: not run, MPS did not start"; mps_stop; continue; }
                MPS=true run "$name" "$n" "$SWEEP_EPOCHS" 540 results/sweep/best.json
                mps_stop
            else
                run "$name" "$n" "$SWEEP_EPOCHS" 540 results/sweep/best.json
            fi
        done
    fi
fi

echo "== bundle ($((SECONDS - START)) s so far)"
python3 benchmarks/study_summary.py "$WORK" --out "$OUT/study.tar.gz" --json "$OUT/timing.json" || FAILED=1
echo "== done after $((SECONDS - START)) s, $([ $FAILED = 0 ] && echo 'every step that ran passed' || echo 'SOME STEP FAILED')${SKIPPED:+; skipped for time:$SKIPPED}"
return $FAILED
}

main 2>&1 | tee -a "$LOG"
exit "${PIPESTATUS[0]}"
