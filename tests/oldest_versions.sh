#!/usr/bin/env bash
# The oldest versions pyproject.toml allows, tested: a fresh virtual environment made with the
# oldest Python of requires-python and every dependency at its lower bound (">=X" installed as
# "==X", the test tools' too), then the unit tests on a copy of this checkout. The bounds' one
# home is pyproject.toml; run this after raising or lowering one (about ten minutes, network for pip):
#
#   bash tests/oldest_versions.sh [PYTHON]    PYTHON: the interpreter (default: python3.N of requires-python)
#   bash tests/oldest_versions.sh --pins      print what it would install, one per line, and stop
set -euo pipefail
cd "$(dirname "$0")/.."

oldest=$(sed -n 's/^requires-python = ">=\(3\.[0-9]*\)"$/\1/p' pyproject.toml)
if [ "${1:-}" = --pins ]; then
  pins_only=1 python=python3 # reading pyproject.toml only
else
  pins_only=0 python=${1:-python$oldest}
fi
command -v "$python" >/dev/null || {
  echo "oldest_versions.sh: no $python on PATH (requires-python asks for $oldest); name an interpreter" >&2
  exit 1
}

# the package's dependencies and the test extra, each lower bound pinned exactly
mapfile -t pins < <("$python" - <<'PY'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for req in project["dependencies"] + project["optional-dependencies"]["test"]:
    print(re.sub(r">=\s*([0-9][0-9.]*)$", r"==\1", req))
PY
)
if [ $pins_only -eq 1 ]; then
  printf '%s\n' "${pins[@]}"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== $($python -V) and ${pins[*]}"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check "${pins[@]}"
"$work/venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
  | grep -i -E '^(numpy|pandas|matplotlib|jinja2|pyyaml|snakemake|pytest) '

# the tests on a copy (tracked and new files), so that nothing they write lands here
mkdir "$work/checkout"
git ls-files -z --cached --others --exclude-standard | tar --null -cf - -T - | tar -xf - -C "$work/checkout"
cd "$work/checkout"
git init -q && git add -A && git -c user.name=oldest -c user.email=oldest@localhost commit -q -m copy  # tests/test_commands.py copies a git checkout
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .  # as setup.sh does
PATH="$work/venv/bin:$PATH" VIRTUAL_ENV="$work/venv" python -m pytest -q -rs
