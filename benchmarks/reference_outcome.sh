#!/usr/bin/env bash
# Issue 11, here after the device run: from gpu_study.sh's study.tar.gz to the reference outcome
# in docs/reference/. The figures are drawn again here and the PDF compiled here (the GPU machine
# has no TeX, and without a CJK font its figures fall back to English labels), through the
# pipeline's own figure and report rules, from the result files the GPU run wrote: Snakemake runs
# with --allowed-rules, so nothing is trained or evaluated again. The data are prepared here from
# the stand-in archive exactly as there (same archive, md5 and split seed).
#
#   bash benchmarks/reference_outcome.sh STUDY_TARBALL [DEST]     # DEST: docs/reference
#   ARCHIVE=...   the stand-in archive here (default ../shared/data/cifar-10-python-jpeg.tar.gz)
#   KEEP=1        keep the build folder (printed) instead of removing it
#   ALLOW_DEMO=1  take a bundle of gpu_study.sh --cpu (a rehearsal) too; otherwise only a GPU run's
#
# DEST gets: summary.csv and best.json (the sweeps), points_test.csv (every point's validation and
# test accuracy and seconds per epoch), history.csv, metrics.json and per_class.csv (the seed the
# figures show), test_metrics.json (with every seed's), timing.json, report.pdf and README.md
# (benchmarks/reference_tables.py: the README's results section).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
[ $# -ge 1 ] && [ -f "$1" ] || { sed -n '2,18p' "$0" >&2; exit 2; }
TARBALL=$(realpath "$1")
DEST=$(realpath -m "${2:-docs/reference}")
ARCHIVE=$(realpath -m "${ARCHIVE:-$REPO/../shared/data/cifar-10-python-jpeg.tar.gz}")
CORES=${CORES:-2}
TMP=$(mktemp -d /tmp/reference-outcome.XXXXXX)
if [ "${KEEP:-0}" = 1 ]; then echo "build folder: $TMP"; else trap 'rm -rf "$TMP"' EXIT; fi

tar xzf "$TARBALL" -C "$TMP"
STUDY=$TMP/study
for f in full/configfiles.txt full/results/final/test_metrics.json full/results/sweep/best.json points_test.csv timing.json; do
    [ -f "$STUDY/$f" ] || { echo "reference_outcome: $TARBALL has no study/$f (a full run of gpu_study.sh?)" >&2; exit 1; }
done
# a rehearsal's bundle (the demo on NumPy) must not become the reference outcome by mistake
if [ "${ALLOW_DEMO:-0}" != 1 ] && ! python3 -c "import json, sys; sys.exit('mode: gpu' not in (json.load(open(sys.argv[1])).get('setup') or ''))" "$STUDY/timing.json"; then
    echo "reference_outcome: $TARBALL is not a GPU run's (its setup block lacks 'mode: gpu'); ALLOW_DEMO=1 takes it anyway" >&2
    exit 1
fi

BUILD=$TMP/build
mkdir -p "$BUILD"
cp -r "$REPO"/{Snakefile,config,workflow,report,profiles,environment.yml,environment-gpu.yml} "$BUILD/"
rm -f "$BUILD/report/report.tex" "$BUILD/report/report.pdf"
cp -rp "$STUDY/full/results" "$STUDY/full/study.yaml" "$BUILD/"
rm -rf "$BUILD/results/figures"  # drawn again here
mapfile -t CONFIGS <"$STUDY/full/configfiles.txt"
if grep -q "^  url:" "$BUILD/study.yaml"; then  # the archive's path here instead of the GPU machine's
    [ -f "$ARCHIVE" ] || { echo "reference_outcome: no archive at $ARCHIVE (set ARCHIVE)" >&2; exit 1; }
    printf 'data:\n  url: %s\n' "$ARCHIVE" >"$BUILD/here.yaml"
    CONFIGS+=(here.yaml)
fi

cd "$BUILD"
echo "== the data, prepared here"
snakemake results/data/cifar10.npz --configfile "${CONFIGS[@]}" --cores "$CORES" \
    --allowed-rules download make_demo_archive prepare >snakemake-data.log 2>&1 ||
    { tail -n 30 snakemake-data.log; exit 1; }
echo "== every figure and the report, from the GPU run's results"
snakemake report/report.pdf --configfile "${CONFIGS[@]}" --cores "$CORES" \
    --allowed-rules figure render_report compile_report >snakemake-report.log 2>&1 ||
    { tail -n 30 snakemake-report.log; exit 1; }
if grep -q "^rule \(train\|evaluate\|select\)\|^localrule \(train\|evaluate\|select\)" snakemake-report.log; then
    echo "reference_outcome: Snakemake ran a training, evaluation or selection job" >&2
    exit 1
fi

shown=$(python3 -c "import json; print(json.load(open('results/final/test_metrics.json'))['seeds']['shown'])")
mkdir -p "$DEST"
cp results/sweep/summary.csv results/sweep/best.json results/final/test_metrics.json report/report.pdf "$DEST/"
cp "results/final/seeds/$shown/history.csv" "results/final/seeds/$shown/metrics.json" \
    "results/final/seeds/$shown/per_class.csv" "$DEST/"
cp "$STUDY/points_test.csv" "$STUDY/timing.json" "$DEST/"
cd "$REPO"
python3 benchmarks/reference_tables.py "$DEST" --write
echo "reference_outcome: $(find "$DEST" -maxdepth 1 -type f | wc -l) files in $DEST"
