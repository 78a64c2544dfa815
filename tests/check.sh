#!/usr/bin/env bash
# The project's whole check, as CI runs it (./setup.sh bash tests/check.sh sets up first):
#   unit tests, tests/test_cupy.py on a NumPy stand-in for CuPy, the slow ones (SCRATCHCNN_SLOW=1:
#   the device calls' plumbing on the demo), snakemake --lint, snakefmt, a dry run of the full default pipeline, the demo end to end to
#   report/report.pdf through the README's command as typed (cores and the gpu resource come from
#   profiles/default), its final seed 0 copied from the chosen grid point, and Snakemake's HTML report of it,
#   then what the demo's outputs must do: be readable by others, and rerun only where something a step uses changed.
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022  # the usual umask, so the outputs must come out 0644

echo "== unit tests"
python -m pytest -q

echo "== the GPU tests on a NumPy stand-in for CuPy (tests/fake_cupy: the CUDA kernels emulated, about a minute)"
PYTHONPATH=tests/fake_cupy:workflow python -m pytest -q -p fake_cupy_grids tests/test_cupy.py

echo "== the device calls' plumbing on the demo (benchmarks/device_run.sh --cpu, one to two minutes)"
SCRATCHCNN_SLOW=1 python -m pytest -q -m slow tests/test_gpu_study.py

echo "== snakemake --lint and snakefmt"
snakemake --lint
snakefmt --check Snakefile workflow/rules/

echo "== dry run of the full default pipeline"
snakemake -n --quiet rules

echo "== the demo, end to end: snakemake report/report.pdf --configfile config/demo.yaml"
snakemake report/report.pdf --configfile config/demo.yaml
python - <<'PY'
import json, subprocess
m = json.load(open("results/final/test_metrics.json"))
text = subprocess.run(["pdftotext", "report/report.pdf", "-"], capture_output=True, text=True, check=True).stdout
acc = f"{100 * m['test_accuracy']:.2f}"
assert acc in text, f"report/report.pdf does not show the test accuracy {acc}%"
assert "合成数据" in text, "report/report.pdf does not say that the demo's data are synthetic"
print(f"demo: test accuracy {acc}% (chance 10%), report/report.pdf shows it")
# the report's structure: its sections, the two tables that set it beside the study, the seeds
sections = ["概述", "引言", "数据集", "模型设计", "训练过程", "参数查找", "测试与评估", "与原研究的比较",
            "参数可视化", "优点、不足与改进", "参考文献", "各层的形状与参数量",
            "小批量随机梯度下降与全批量梯度下降", "损失的记录与检查点的保存、载入", "实现上的差异", "数字的对照"]
missing = [s for s in sections if s.replace(" ", "") not in "".join(text.split())]


def body(page):
    """A page without its running header (chapter number or letter, chapter title, page number),
    which pdftotext puts first: a sentence that runs over a page break reads on as one."""
    lines = [line.strip() for line in page.split("\n") if line.strip()]
    while lines and (lines[0].isdigit() or (len(lines[0]) == 1 and lines[0].isupper()) or lines[0] in sections):
        lines.pop(0)
    return "".join(lines)


flat = "".join("".join(body(page).split()) for page in text.split("\f"))  # lines break anywhere: no whitespace
assert not missing, f"report/report.pdf lacks the sections {missing}"
for row in ("原研究与本复现的差异", "批归一化", "梯度缩放", "原研究未说明之处", "原研究与本复现的数字", "第 7 节",
            "最终配置在各随机种子下的结果", "种子 0 的训练与参数查找中选中点的那次训练完全相同"):
    assert row.replace(" ", "") in flat, f"report/report.pdf lacks {row!r}"
s = m["seeds"]
stat = f"{100 * s['mean']:.2f}% ± {100 * s['std']:.2f}%"
assert stat.replace(" ", "") in flat, f"report/report.pdf does not show the seeds' {stat}"
for r in s["runs"]:
    assert f"种子{r['seed']}：{100 * r['test_accuracy']:.2f}%" in flat, f"seed {r['seed']} missing"
print(f"demo: every section, the deviation and study tables, and {s['n']} seeds ({stat}) are in the PDF")
PY

echo "== the demo's final seed 0 is the chosen point's own run (sweep.epochs = train.epochs): copied, not trained"
python - <<'PY'
import filecmp, json
best = json.load(open("results/sweep/best.json"))
final = json.load(open("results/final/seeds/0/metrics.json"))
assert final.get("reused_from") == best["path"], f"seed 0 was not reused from {best['path']}: {final.get('reused_from')}"
for name in ("model.npz", "history.csv"):
    assert filecmp.cmp(f"{best['path']}/{name}", f"results/final/seeds/0/{name}", shallow=False), name
assert "reused_from" not in json.load(open("results/final/seeds/1/metrics.json")), "seed 1 was not trained"
print(f"seed 0: {best['path']}'s run, copied; seed 1 trained")
PY

echo "== Snakemake's HTML report of the demo, as the README gives it"
snakemake --report report/snakemake_report.html --configfile config/demo.yaml
python - <<'PY'
import sys
sys.path.insert(0, "workflow")
from scratchcnn.figures import FIGURES
html = open("report/snakemake_report.html", encoding="utf-8").read()
missing = [name for name in FIGURES if f"{name}.png" not in html]
assert not missing, f"report/snakemake_report.html lacks the figures {missing}"
print(f"report/snakemake_report.html: {len(html) / 2**20:.1f} MiB, every one of the {len(FIGURES)} figures")
PY

echo "== every output is readable by group and others"
private=$(find results report logs -type f ! -perm -044)
[ -z "$private" ] || { printf 'not readable by others (umask 022):\n%s\n' "$private"; exit 1; }
echo "$(find results report logs -type f | wc -l) files, none private"

echo "== every step's log holds what it said"
empty=$(find logs -type f -name '*.log' -size 0)
[ -z "$empty" ] || { printf 'empty logs (their steps printed elsewhere):\n%s\n' "$empty"; exit 1; }
echo "$(find logs -type f -name '*.log' | wc -l) logs, none empty"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# plan EXTRA_YAML: the demo's dry run with one more config file; the jobs it would run, one
# "rule count" line each, in $tmp/plan (the whole output in $tmp/plan.log)
plan() {
  printf '%s\n' "$1" > "$tmp/extra.yaml"
  snakemake -n --configfile config/demo.yaml "$tmp/extra.yaml" > "$tmp/plan.log" 2>&1 \
    || { cat "$tmp/plan.log"; exit 1; }
  grep -E '^[a-z_]+ +[0-9]+$' "$tmp/plan.log" | awk '$1 != "total" {print $1, $2}' | sort -u > "$tmp/plan" || true
}

echo "== settings of where and how a step runs, not its recipe, rerun nothing (they are in the provenance)"
for setting in "device: auto" "train: {threads: 1}" "train: {jobs_per_gpu: 2}" "evaluate: {batch_size: 7}"; do
  plan "$setting"
  grep -q "Nothing to be done" "$tmp/plan.log" || { echo "'$setting' would rerun:"; cat "$tmp/plan"; exit 1; }
  echo "$setting: nothing to do"
done
plan "report: {language: en}"  # the figures' labels: those and the report, not the evaluation
figures=$(PYTHONPATH=workflow python -c "from scratchcnn.figures import FIGURES; print(len(FIGURES))")
awk '$1 != "all" && $1 != "figure" && $1 != "render_report" && $1 != "compile_report" {bad = 1} END {exit bad}' "$tmp/plan" \
  && grep -q "^figure $figures$" "$tmp/plan" || { echo "report.language would run:"; cat "$tmp/plan"; exit 1; }
echo "report.language: the $figures figures and the report only"

echo "== after a code update, the README's --forcerun figure render_report redraws the figures and the report alone"
snakemake -n --configfile config/demo.yaml --forcerun figure render_report > "$tmp/plan.log" 2>&1 || { cat "$tmp/plan.log"; exit 1; }
forced=$(grep -E '^[a-z_]+ +[0-9]+$' "$tmp/plan.log" | awk '$1 != "total" && $1 != "all" {print $1, $2}' | sort -u | xargs)
[ "$forced" = "compile_report 1 figure $figures render_report 1" ] || { echo "--forcerun would run: $forced"; exit 1; }
echo "--forcerun figure render_report: $forced"

echo "== changing one grid value retrains exactly the point it names"
grid_plan() {  # OLD NEW POINT: the demo's grid with the text OLD replaced by NEW trains POINT alone
  sed "s/$(printf '%s' "$1" | sed 's/[][]/\\&/g')/$2/" config/demo_grid.yaml > "$tmp/grid.yaml"
  ! cmp -s config/demo_grid.yaml "$tmp/grid.yaml" || { echo "config/demo_grid.yaml has no '$1'"; exit 1; }
  plan "sweep: {grid: $tmp/grid.yaml}"
  trained=$(grep -A 8 "rule train_point:" "$tmp/plan.log" | grep -o "wildcards: .*" || true)
  [ "$(grep '^train_point ' "$tmp/plan")" = "train_point 1" ] && [[ $trained =~ $3 ]] \
    || { echo "'$1' -> '$2' would run:"; cat "$tmp/plan.log"; exit 1; }
  echo "$1 -> $2: one point trains, $trained"
}
grid_plan "lr: [0.05, 0.01]" "lr: [0.05, 0.02]" "lr=0.02, reg=0.001, filters=8"
grid_plan "filters: [4, 8]" "filters: [6, 8]" "filters=6"

rules_run() {  # LOG: the rules a Snakemake run's log shows it ran, sorted, on one line
  grep -oE "^(local)?(rule|checkpoint) [a-z_]+:" "$1" | sed -E 's/^(local)?(rule|checkpoint) //; s/:$//' | sort -u | xargs
}

echo "== a new grid point trains alone; the final model and what is made from it stay unless the choice changes"
sed 's/lr: \[0.05, 0.01\]/lr: [0.05, 0.01, 0.002]/' config/demo_grid.yaml > "$tmp/grid.yaml"
printf 'sweep:\n  grid: %s\n' "$tmp/grid.yaml" > "$tmp/more.yaml"
rm -rf "results/sweep/points/lr~0.002"  # trained by an earlier check in this checkout
shown=$(PYTHONPATH=workflow python -c "import json; print(json.load(open('results/final/test_metrics.json'))['seeds']['shown'])")
model="results/final/seeds/$shown/model.npz"
before=$(md5sum "$model" results/final/test_metrics.json)
snakemake results/final/test_metrics.json --configfile config/demo.yaml "$tmp/more.yaml" 2>&1 | tee "$tmp/log"
trained=$(grep -c "^localrule train_point:\|^rule train_point:" "$tmp/log" || true)
[ "$trained" -eq 1 ] || { echo "expected exactly one new training job, got $trained"; exit 1; }
ran=$(rules_run "$tmp/log")
[ "$ran" = "select select_sweep train_point" ] \
  || { echo "expected the new point's training and the selections alone, ran: $ran"; exit 1; }
[ "$before" = "$(md5sum "$model" results/final/test_metrics.json)" ] || { echo "the final results changed"; exit 1; }
echo "one new training job and the selections; final model, evaluation and seeds' summary untouched"

echo "== a grid without the chosen point changes the choice: the final training and what follows run again"
python - "$tmp/grid.yaml" <<'PY'
import json, sys, yaml
grid = yaml.safe_load(open("config/demo_grid.yaml"))
chosen = json.load(open("results/sweep/best.json"))["lr"]
grid["sweeps"]["lr_reg"]["lr"] = [lr for lr in grid["sweeps"]["lr_reg"]["lr"] if lr != chosen]
yaml.safe_dump(grid, open(sys.argv[1], "w"), sort_keys=False)  # the sweeps in their order
PY
snakemake results/final/test_metrics.json --configfile config/demo.yaml "$tmp/more.yaml" 2>&1 | tee "$tmp/log"
ran=$(rules_run "$tmp/log")
for rule in train_final evaluate summarize_seeds; do
  [[ " $ran " == *" $rule "* ]] || { echo "the choice changed but $rule did not run; ran: $ran"; exit 1; }
done
[ "$before" != "$(md5sum "$model" results/final/test_metrics.json)" ] || { echo "the final results did not change"; exit 1; }
echo "the choice changed; ran: $ran"
