#!/usr/bin/env bash
# The project's whole check, as CI runs it:
#   unit tests, snakemake --lint, snakefmt, a dry run of the full default
#   pipeline, and the demo end to end to report/report.pdf.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== unit tests"
python -m pytest -q

echo "== snakemake --lint and snakefmt"
snakemake --lint
snakefmt --check Snakefile workflow/rules/

echo "== dry run of the full default pipeline"
snakemake -n --cores 1 --resources gpu=1 --quiet rules

echo "== the demo, end to end"
snakemake report/report.pdf --cores 2 --resources gpu=1 --configfile config/demo.yaml
python - <<'PY'
import json, subprocess
m = json.load(open("results/final/test_metrics.json"))
text = subprocess.run(["pdftotext", "report/report.pdf", "-"], capture_output=True, text=True, check=True).stdout
acc = f"{100 * m['test_accuracy']:.2f}"
assert acc in text, f"report/report.pdf does not show the test accuracy {acc}%"
print(f"demo: test accuracy {acc}% (chance 10%), report/report.pdf shows it")
PY

echo "== a new grid point trains alone; the final model stays unless the choice changes"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed 's/lr: \[0.05, 0.01\]/lr: [0.05, 0.01, 0.002]/' config/demo_grid.yaml > "$tmp/grid.yaml"
printf 'sweep:\n  grid: %s\n' "$tmp/grid.yaml" > "$tmp/more.yaml"
before=$(md5sum results/final/model.npz)
snakemake results/final/test_metrics.json --cores 2 --resources gpu=1 \
  --configfile config/demo.yaml "$tmp/more.yaml" 2>&1 | tee "$tmp/log"
trained=$(grep -c "^localrule train_point:\|^rule train_point:" "$tmp/log" || true)
[ "$trained" -eq 1 ] || { echo "expected exactly one new training job, got $trained"; exit 1; }
! grep -q "rule train_final:" "$tmp/log" || { echo "the final training reran although the choice did not change"; exit 1; }
[ "$before" = "$(md5sum results/final/model.npz)" ] || { echo "results/final/model.npz changed"; exit 1; }
echo "one new training job, final model untouched"
