#!/usr/bin/env bash
# Integration test: the demo sweep through a real SLURM, equal to a local run bit for bit.
#
#   sudo bash tests/slurm/run_slurm_test.sh        (root: apt-get, munged, slurmctld, slurmd)
#
# It installs Debian's slurm-wlm and munge when missing, and snakemake-executor-plugin-slurm
# (the project's "slurm" extra), then starts a one-node cluster on 127.0.0.1 whose files all
# live in a temporary folder (its own munge key and socket, SLURM_CONF, spool, state and logs,
# ports 16817/16818), so a SLURM already on the machine is left alone. The node advertises one
# GPU as a generic resource with no device behind it (/dev/null), as a GPU cluster's would; the
# demo trains on the CPU (device: cpu), so its training jobs must ask SLURM for no GPU (the rules
# declare gpu=0 then; gpu=1 where a job may use one). It runs results/sweep/best.json with the demo config
# and --config "sweep={epochs: 2}" (each job's Snakemake must read that nested value as a number)
#   - in one copy of the repository (git ls-files) through --executor slurm and the project's
#     SLURM profile (the site placeholders untouched, short waits for the test),
#   - in another copy locally with --cores 2,
# then checks that the jobs went through sbatch (slurmctld's records, the kept SLURM logs) and
# that summary.csv's best_val_acc and every point's model.npz arrays are equal bit for bit.
# RUN_DIR=1 makes the SLURM run from a run directory of its own (config/ alone; snakemake -s the
# copy's Snakefile) and checks that nothing lands beside the code. The daemons are stopped on any
# exit; KEEP=1 keeps the temporary folder for a look.
# Not part of pytest: it needs root and takes a few minutes.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=results/sweep/best.json
CONFIG=config/demo.yaml
# a nested --config value, as users give one: each SLURM job's Snakemake must read it alike
SET="sweep={epochs: 2}"
[ "$(id -u)" -eq 0 ] || { echo "run as root (apt-get and the SLURM daemons need it)" >&2; exit 2; }
started=$(date +%s)
say() { printf '== [%4ss] %s\n' "$(($(date +%s) - started))" "$*"; }

WORK=$(mktemp -d /tmp/scratchcnn-slurm-test.XXXXXX)
chmod 755 "$WORK"  # munged runs as user munge and must reach its folder
cleanup() {
  rc=$?
  set +e
  for pidfile in "$WORK"/slurm/slurmd.pid "$WORK"/slurm/slurmctld.pid "$WORK"/munge/munged.pid; do
    [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
  done
  sleep 1
  if [ "$rc" -ne 0 ]; then
    echo "-- failed (exit $rc); the last lines of the daemons' logs:" >&2
    tail -n 25 "$WORK"/slurm/slurmctld.log "$WORK"/slurm/slurmd.log 2>/dev/null >&2
  fi
  if [ "${KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
    echo "-- kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "install: slurm-wlm, munge, snakemake-executor-plugin-slurm (where missing)"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null
fi
python -c "import snakemake_executor_plugin_slurm" 2>/dev/null \
  || python -m pip install -q snakemake-executor-plugin-slurm  # = pip install -e ".[slurm]"
echo "   $(slurmctld -V), $(munged -V 2>&1 | awk '{print $1}'), plugin $(python -c \
  'import importlib.metadata as m; print(m.version("snakemake-executor-plugin-slurm"))')"

say "munge: a fresh key and a private socket"
mkdir -p "$WORK/munge" "$WORK/munge-socket"
dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1 count=1024 status=none
chown -R munge:munge "$WORK/munge" "$WORK/munge-socket"
chmod 700 "$WORK/munge"
chmod 755 "$WORK/munge-socket"  # munged wants its socket's folder open to all
chmod 400 "$WORK/munge/munge.key"
MUNGE_SOCKET="$WORK/munge-socket/munge.socket"
runuser -u munge -- munged --key-file="$WORK/munge/munge.key" --socket="$MUNGE_SOCKET" \
  --pid-file="$WORK/munge/munged.pid" --log-file="$WORK/munge/munged.log" --seed-file="$WORK/munge/munged.seed"
munge --socket="$MUNGE_SOCKET" -n | unmunge --socket="$MUNGE_SOCKET" >/dev/null

say "slurm: one node on 127.0.0.1 with a stand-in GPU, accounting off"
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(($(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024))
S="$WORK/slurm"
mkdir -p "$S/state" "$S/spool"
export SLURM_CONF="$S/slurm.conf"
cat >"$SLURM_CONF" <<EOF
ClusterName=scratchcnn-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/slurmctld.log
SlurmdLogFile=$S/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# squeue reports finished jobs while they are this young (the plugin reads it)
MinJobAge=600
ReturnToService=2
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
# a GPU the scheduler can hand out: SLURM drops a GPU without a device file, and /dev/null is one
printf 'AutoDetect=off\nNodeName=%s Name=gpu File=/dev/null\n' "$HOST" >"$S/gres.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
  state=$(sinfo -h -N -o %t 2>/dev/null || true)
  [ "$state" = idle ] && break
  sleep 1
done
sinfo -N -o "   %N %t cpus=%c mem=%m gres=%G"
[ "$state" = idle ] || { echo "the node did not come up idle (state: ${state:-none})" >&2; exit 1; }
probe=$(sbatch --parsable --gpus=1 --wrap "echo probe" -o "$S/probe.out")
for _ in $(seq 30); do
  [ "$(squeue -h -j "$probe" -t all -o %T)" = COMPLETED ] && break
  sleep 1
done
[ "$(cat "$S/probe.out")" = probe ] || { echo "an sbatch --gpus=1 probe job did not run" >&2; exit 1; }
echo "   sbatch --gpus=1 --wrap: job $probe completed"

# The jobstep plugin clears every SLURM_* variable, SLURM_CONF too, before the srun inside each
# job (snakemake-executor-plugin-slurm issue #164): give that srun the test's configuration back.
mkdir -p "$WORK/bin"
printf '#!/bin/sh\nSLURM_CONF=%s exec %s "$@"\n' "$SLURM_CONF" "$(command -v srun)" >"$WORK/bin/srun"
chmod +x "$WORK/bin/srun"

copy_repo() {  # the tracked and new files of the working tree (git ls-files), no results
  mkdir -p "$1"
  (cd "$REPO" && git ls-files -co --exclude-standard -z \
    | python -c 'import os, sys; sys.stdout.write("".join(f + "\0" for f in sys.stdin.read().split("\0") if f and os.path.lexists(f)))' \
    | tar --null -T - -cf -) | tar -xf - -C "$1"
}

say "local run: snakemake $TARGET --cores 2 in a copy"
local_start=$(date +%s)
copy_repo "$WORK/local"
(cd "$WORK/local" && snakemake "$TARGET" --configfile "$CONFIG" --config "$SET" --cores 2 --quiet >"$WORK/local.log" 2>&1) \
  || { tail -n 40 "$WORK/local.log"; exit 1; }
local_done=$(date +%s)

if [ "${RUN_DIR:-0}" = 1 ]; then  # the README's run directory of its own: config/ alone, the code elsewhere
  say "SLURM run: snakemake -s <another copy>/Snakefile $TARGET --executor slurm (profiles/slurm) in a run directory"
  copy_repo "$WORK/slurmrepo"
  mkdir -p "$WORK/slurmrun" && cp -r "$WORK/slurmrepo/config" "$WORK/slurmrun/"
  code=("$WORK/slurmrepo/Snakefile" "$WORK/slurmrepo/profiles/slurm")
else
  say "SLURM run: snakemake $TARGET --executor slurm (profiles/slurm) in another copy"
  copy_repo "$WORK/slurmrun"
  code=(Snakefile profiles/slurm)
fi
cd "$WORK/slurmrun"
first_job=$(squeue -h -t all -o %i | sort -n | tail -n 1)
set +e
PATH="$WORK/bin:$PATH" snakemake -s "${code[0]}" "$TARGET" --configfile "$CONFIG" --config "$SET" \
  --workflow-profile "${code[1]}" \
  --slurm-no-account --slurm-status-command squeue --slurm-init-seconds-before-status-checks 2 \
  --slurm-keep-successful-logs --latency-wait 5 --jobs 4 >"$WORK/slurmrun.log" 2>&1
snake_rc=$?
set -e
slurm_done=$(date +%s)
grep -E "^(rule|checkpoint|localrule|localcheckpoint) |Submitted job|Finished jobid|[0-9]+ of [0-9]+ steps|Error|error" \
  "$WORK/slurmrun.log" | sed 's/^/   | /' | tail -n 60
[ "$snake_rc" -eq 0 ] || { echo "snakemake through SLURM failed ($snake_rc):" >&2; tail -n 60 "$WORK/slurmrun.log" >&2; exit 1; }

say "checks"
python - "$WORK" "$first_job" <<'PY'
import re, subprocess, sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

work, first_job = Path(sys.argv[1]), int(sys.argv[2] or 0)
local, slurm = work / "local", work / "slurmrun"

# 1. the jobs went through sbatch: slurmctld still holds their records (MinJobAge), each with
#    the plugin's comment rule_<name>[_wildcards_...] and the profile's requests
out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True).stdout
jobs = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line.strip()]
jobs = [j for j in jobs if int(j["JobId"]) > first_job]
for j in jobs:
    j["rule"] = j.get("Comment", "").removeprefix("rule_").split("_wildcards_")[0]
rules = Counter(j["rule"] for j in jobs)
print("   SLURM jobs of this run (scontrol show job):", dict(rules))
bad = [(j["JobId"], j["rule"], j["JobState"]) for j in jobs if j["JobState"] != "COMPLETED"]
assert not bad, f"SLURM jobs not COMPLETED: {bad}"
n_points = len(list((local / "results/sweep").glob("*/lr~*/reg~*/filters~*/model.npz")))
assert rules["train_point"] == n_points >= 3, (rules, n_points)  # the demo grid shares one point
asks = {j["rule"]: (j.get("TresPerJob") or "-", j["MinMemoryNode"], j["TimeLimit"], j["NumCPUs"]) for j in jobs}
for rule, (gpu, mem, limit, cpus) in sorted(asks.items()):
    print(f"   {rule:18s} gpus {gpu:12s} mem {mem:6s} time {limit:9s} cpus {cpus}")
assert asks["train_point"][:3] == ("-", "8000M", "02:00:00"), asks["train_point"]  # a CPU job: no GPU
assert asks["prepare"][1:3] == ("8000M", "00:30:00"), asks["prepare"]
logs = sorted(p.relative_to(slurm / ".snakemake/slurm_logs") for p in (slurm / ".snakemake/slurm_logs").rglob("*.log"))
print(f"   {len(logs)} SLURM job logs in .snakemake/slurm_logs/, e.g. {logs[0] if logs else None}")
assert sum(str(p).startswith("rule_train_point/") for p in logs) == n_points

# 2. the same results as the local run, bit for bit
a = pd.read_csv(local / "results/sweep/summary.csv")
b = pd.read_csv(slurm / "results/sweep/summary.csv")
cols = [c for c in a.columns if c in ("sweep", "lr", "reg", "filters", "best_val_acc", "status")]
print(a[cols].to_string(index=False).replace("\n", "\n   ").join(["   ", ""]))
assert a["best_val_acc"].tolist() == b["best_val_acc"].tolist(), "best_val_acc differs"
assert (local / "results/sweep/best.json").read_text() == (slurm / "results/sweep/best.json").read_text()
for path in sorted((local / "results/sweep").glob("*/lr~*/reg~*/filters~*/model.npz")):
    rel = path.relative_to(local)
    with np.load(path) as x, np.load(slurm / rel) as y:
        assert sorted(x.files) == sorted(y.files), rel
        same = all(x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]) and x[k].tobytes() == y[k].tobytes()
                   for k in x.files if k not in ("meta_json",))
    assert same, f"{rel}: arrays differ between the local and the SLURM run"
    rows = len(pd.read_csv(slurm / rel.parent / "history.csv"))
    assert rows == 2, f"{rel.parent}: {rows} epochs, not the 2 of --config sweep={{epochs: 2}}"
    print(f"   {rel}: {len(x.files)} arrays equal bit for bit")
print(f"   summary.csv best_val_acc and best.json equal; {n_points} points' model.npz equal")
if (work / "slurmrepo").exists():  # RUN_DIR=1: the results went to the run directory, none beside the code
    assert not [p for p in ("results", "logs", ".snakemake") if (work / "slurmrepo" / p).exists()], "written beside the code"
    print("   the run directory holds every result; the code's copy none")
PY

say "passed: local run $((local_done - local_start))s, SLURM run $((slurm_done - local_done))s"
