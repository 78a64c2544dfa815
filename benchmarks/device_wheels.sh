#!/usr/bin/env bash
# Snakemake for the GPU machine (Python 3.12, no network, no Snakemake), as wheels.
#
#   here:  bash benchmarks/device_wheels.sh download   # .whl/1, .whl/2 (git-ignored); checks, prints sizes
#   there: bash benchmarks/device_wheels.sh stash      # copy the carried .whl/*/*.whl to $WHEEL_DIR
#   there: bash benchmarks/device_wheels.sh install    # stash, install all into $SITE, check; then
#          export PYTHONPATH=$SITE (default /tmp/site)
#
# `download` resolves Snakemake ($SNAKEMAKE_VERSION) and its whole closure for CPython 3.12 on
# manylinux x86-64 into a staging folder (an sdist-only pure-Python dependency, such as
# connection_pool, is built into a py3-none-any wheel here), proves the set complete with a
# `pip install --dry-run --no-index` resolution for that platform, then keeps in .whl/ only what
# the machine needs: every package its image lacks (DEVICE_PACKAGES below), and those it has but
# for which the closure asks a version range (we cannot know the image's version). Left out on
# purpose: pulp (16 MB; only Snakemake's ILP scheduler imports it, and gpu_study.sh runs
# `--scheduler greedy`). The wheels go into two folders of about equal size, each small enough
# to travel beside one 55 MiB part of the stand-in archive (benchmarks/device_data.sh).
# `install` installs them with --no-deps into $SITE (on the warm machine it stays there between
# calls) and checks every requirement of every installed package against what Python sees with
# PYTHONPATH=$SITE, and that `python3 -m snakemake --version` answers.
set -euo pipefail
cd "$(dirname "$0")/.."
SNAKEMAKE_VERSION=${SNAKEMAKE_VERSION:-9.27.1}
WHEEL_DIR=${WHEEL_DIR:-/tmp/scratchcnn-wheels}
SITE=${SITE:-/tmp/site}
FOLDERS=2
LEAVE_OUT="pulp"
# The device image's packages (the 'cuda' image, as listed on 2026-11-17 in the device notes).
DEVICE_PACKAGES="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings
cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet
filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-ml-py onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx
optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks
pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision
tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig
werkzeug wheel wrapt xarray xxhash yarl zipp"
PLATFORM=(--python-version 3.12 --implementation cp --abi cp312 --platform manylinux_2_28_x86_64
    --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
    --platform manylinux1_x86_64)

download() {
    local stage
    stage=$(mktemp -d /tmp/device-wheels.XXXXXX)
    mkdir -p "$stage/all" "$stage/built"
    # the closure for cp312; a requirement with no wheel at all is built here if it is pure Python
    local tries=0 log=$stage/download.log
    until python3 -m pip download -q --only-binary=:all: "${PLATFORM[@]}" --find-links "$stage/built" \
        -d "$stage/all" "snakemake==$SNAKEMAKE_VERSION" >"$log" 2>&1; do
        tries=$((tries + 1))
        local req
        req=$(sed -n 's/.*No matching distribution found for \([^ ]*\).*/\1/p' "$log" | head -1)
        if [ -z "$req" ] || [ $tries -gt 5 ]; then
            grep -v "is ignored" "$log" >&2
            echo "device_wheels: pip download failed" >&2
            exit 1
        fi
        echo "no wheel for $req: building it here" >&2
        python3 -m pip wheel -q --no-deps --no-binary :all: -w "$stage/built" "$req" 2>&1 | grep -v "is ignored" >&2 || true
        ls "$stage/built"/*-py3-none-any.whl >/dev/null 2>&1 || {
            echo "device_wheels: $req did not build as a pure-Python wheel" >&2
            exit 1
        }
    done
    # proof that the set is complete for CPython 3.12 manylinux, with nothing from the network
    python3 -m pip install -q --dry-run --ignore-installed --no-index --find-links "$stage/all" \
        --only-binary=:all: "${PLATFORM[@]}" --target "$stage/target" --report "$stage/report.json" \
        "snakemake==$SNAKEMAKE_VERSION" 2>&1 | grep -v "is ignored" >&2 || true
    [ -s "$stage/report.json" ] || { echo "device_wheels: the closure does not resolve offline" >&2; exit 1; }
    rm -rf .whl
    python3 - "$stage" "$FOLDERS" "$LEAVE_OUT" "$DEVICE_PACKAGES" <<'EOF'
import json, re, shutil, sys, zipfile
from pathlib import Path

stage, folders, leave_out, device = Path(sys.argv[1]), int(sys.argv[2]), set(sys.argv[3].split()), set(sys.argv[4].split())
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
report = json.loads((stage / "report.json").read_text())
wheels = {}
for item in report["install"]:
    name = norm(item["metadata"]["name"])
    path = Path(item["download_info"]["url"].removeprefix("file://"))
    wheels[name] = (path, item["metadata"]["version"])
# the closure's requirements (extras aside), to see which names are asked for with a version range
ranged = set()
for path, _ in wheels.values():
    with zipfile.ZipFile(path) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode().splitlines():
            if line.startswith("Requires-Dist:") and "extra ==" not in line:
                m = re.match(r"Requires-Dist:\s*([A-Za-z0-9_.\-]+)\s*(\[[^\]]*\])?\s*\(?\s*([<>=!~][^;)]*)?", line)
                if m and m.group(3) and m.group(3).strip():
                    ranged.add(norm(m.group(1)))
keep, rows = [], []
for name, (path, version) in sorted(wheels.items()):
    if name in leave_out:
        why = "left out (only the ILP scheduler uses it; run --scheduler greedy)"
    elif name in device and name not in ranged:
        why = "on the device, no version asked"
    else:
        why = "carried" + (" (on the device, but a version range is asked)" if name in device else "")
        keep.append(path)
    rows.append(f"  {name} {version}: {why}")
print("\n".join(rows))
bins = [[0, []] for _ in range(folders)]
for path in sorted(keep, key=lambda p: -p.stat().st_size):
    b = min(bins, key=lambda b: b[0])
    b[0] += path.stat().st_size
    b[1].append(path)
for i, (size, paths) in enumerate(bins, 1):
    out = Path(f".whl/{i}")
    out.mkdir(parents=True)
    for p in paths:
        shutil.copy2(p, out / p.name)
EOF
    rm -rf "$stage"
    sizes
}

sizes() {
    local f total=0 n=0 size
    for f in .whl/*; do
        size=$(du -b -s "$f" | cut -f1)
        total=$((total + size)) n=$((n + $(ls "$f" | wc -l)))
        awk -v f="$f" -v s="$size" 'BEGIN { printf "%s: %.1f MiB\n", f, s / 1048576 }'
    done
    awk -v s="$total" -v n="$n" 'BEGIN { printf "all wheels: %.1f MiB in %d files\n", s / 1048576, n }'
}

stash() {
    mkdir -p "$WHEEL_DIR"
    local found=0
    for f in .whl/*/*.whl; do
        [ -e "$f" ] || continue
        cp "$f" "$WHEEL_DIR/" && found=1
    done
    [ $found = 1 ] || { echo "device_wheels: no carried wheel in .whl/" >&2; return 1; }
    echo "device_wheels: $(ls "$WHEEL_DIR" | wc -l) wheels in $WHEEL_DIR" >&2
}

install() {
    stash 2>/dev/null || true  # the folder carried with this call, if any
    ls "$WHEEL_DIR"/*.whl >/dev/null 2>&1 || { echo "device_wheels: no wheels in $WHEEL_DIR" >&2; exit 1; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$WHEEL_DIR"/*.whl
    PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH} python3 - "$SITE" "$LEAVE_OUT" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, distributions, version
from pathlib import Path

from packaging.requirements import Requirement

site, leave_out = Path(sys.argv[1]), set(sys.argv[2].split())
problems, checked = [], 0
for dist in distributions(path=[str(site)]):
    for spec in dist.requires or []:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        checked += 1
        try:
            have = version(req.name)
        except PackageNotFoundError:
            if req.name.lower() not in leave_out:
                problems.append(f"{dist.metadata['Name']} needs {req}: not installed")
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            problems.append(f"{dist.metadata['Name']} needs {req}: {have} found")
print(f"device_wheels: {checked} requirements checked in {site}")
for p in problems:
    print("device_wheels: UNMET", p)
sys.exit(1 if problems else 0)
EOF
    PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH} python3 -m snakemake --version
}

case "${1:-}" in
download) download ;;
sizes) sizes ;;
stash) stash ;;
install) install ;;
*)
    sed -n '2,8p' "$0" >&2
    exit 2
    ;;
esac
