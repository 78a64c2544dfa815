#!/usr/bin/env bash
# Set up what this project needs, then run a command with it:
#
#   ./setup.sh snakemake              set up, then the whole study, to report/report.pdf
#   ./setup.sh bash tests/check.sh    set up, then every check (what CI runs)
#   ./setup.sh                        set up only; then `source .venv/bin/activate`
#   ./setup.sh --check                say what is missing and what set-up would do; change nothing
#
# Python as pyproject.toml's requires-python asks (Snakemake needs 3.11): the active virtual
# environment (or conda environment other than base), else ./.venv, made here with python3 or,
# where that is older, the newest python3.N on PATH (Debian's and Ubuntu's own Python refuse pip
# installs: PEP 668). Into it goes the project with its test tools (pip install -e ".[test]";
# --gpu adds CuPy for the driver's CUDA version), again only when pyproject.toml has changed.
# The .venv sees none of the system's packages: else `snakemake` could be the system's, blind to
# what is installed here.
# The PDF report needs XeLaTeX with ctex, latexmk and a CJK font, and the tests pdftotext: when
# they are missing, apt-get installs them (through sudo when not root); without apt-get this
# says what to install and stops. --no-tex goes on without them (everything but the PDF works).
# The tests need g++ (a CPU emulator of the CUDA kernels): apt-get installs it when missing.
# The command runs in the repository root, with the environment's bin/ first on PATH.
set -euo pipefail
cd "$(dirname "$0")"

# The system packages setup.sh installs (Debian/Ubuntu); .ci/run and the README point here. The
# PDF needs the TeX and font ones, which compile_report.py names when they are missing; fontconfig
# and poppler-utils serve the tests.
APT_PACKAGES=(texlive-xetex texlive-lang-chinese texlive-fonts-recommended texlive-latex-recommended
  latexmk fonts-noto-cjk fontconfig poppler-utils)

say() { printf 'setup.sh: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

check=0 with_tex=1 gpu=0
flags=""  # the options that change what is installed, for --check's closing hint
while [ $# -gt 0 ]; do
  case $1 in
    --check) check=1 ;;
    --no-tex) with_tex=0 flags="$flags --no-tex" ;;
    --gpu) gpu=1 flags="$flags --gpu" ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    --) shift && break ;;
    -*) die "unknown option $1 (see ./setup.sh --help)" ;;
    *) break ;;
  esac
  shift
done
[ $check -eq 0 ] || [ $# -eq 0 ] || die "--check runs no command"
todo=0      # --check: something is left to do
env_ready=1 # --check: 0 while the environment is still to be made

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    return 1
  fi
}

apt_install() {
  say "installing with apt-get: $*"
  as_root apt-get update -q \
    && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# -- Python environment
# the oldest Python the project runs on has one home, pyproject.toml
py_min=$(sed -n 's/^requires-python = ">=\(3\.[0-9]*\)"$/\1/p' pyproject.toml)
[ -n "$py_min" ] || die "pyproject.toml: no requires-python = \">=3.N\" line to read the Python it needs from"
py_new_enough() { "$1" -c "import sys; sys.exit(sys.version_info < (3, ${py_min#3.}))" 2>/dev/null; }
if [ -n "${VIRTUAL_ENV:-}" ] || { [ -n "${CONDA_PREFIX:-}" ] && [ "${CONDA_DEFAULT_ENV:-}" != base ]; }; then
  say "Python: the active environment ${VIRTUAL_ENV:-$CONDA_PREFIX}"
  py_new_enough python || die "the active environment has $(python -V 2>&1); this project needs Python $py_min or later" \
    "(Snakemake does): activate one with a newer Python, or deactivate it so that setup.sh makes .venv"
elif [ -x .venv/bin/python ] && .venv/bin/python -m pip --version >/dev/null 2>&1 && py_new_enough .venv/bin/python; then
  say "Python: .venv"
  export VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH"
else
  # python3 where new enough, else the newest python3.N (Ubuntu 22.04's python3 is 3.10 beside an installable python3.11)
  python=""
  for candidate in python3 $(seq -f "python3.%g" 30 -1 "${py_min#3.}"); do
    if command -v "$candidate" >/dev/null && py_new_enough "$candidate"; then
      python=$candidate
      break
    fi
  done
  if [ -z "$python" ]; then
    found=$(command -v python3 >/dev/null && python3 -V 2>&1 || echo "no python3")
    die "this project needs Python $py_min or later (Snakemake does); PATH has $found and no newer python3.N." \
      "Install one (Debian/Ubuntu: apt-get install python$py_min python$py_min-venv), then run this again"
  fi
  if [ $check -eq 1 ]; then
    say "would create the virtual environment .venv with $($python -V 2>&1) ($python)"
    todo=1 env_ready=0
  else
    say "Python: creating the virtual environment .venv with $($python -V 2>&1) ($python)"
    rm -rf .venv
    if ! "$python" -m venv .venv; then
      rm -rf .venv # Debian and Ubuntu ship venv's pip separately, python3-venv or python3.N-venv
      if command -v apt-get >/dev/null && apt_install "$python-venv"; then
        "$python" -m venv .venv
      else
        die "$python -m venv failed: install Python's venv module (Debian/Ubuntu: $python-venv), then run this again"
      fi
    fi
    export VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH"
  fi
fi

# -- the project and its Python packages
extras=test
if [ $gpu -eq 1 ] && [ $env_ready -eq 1 ] && cupy_version=$(python -c 'import cupy; print(cupy.__version__)' 2>/dev/null); then
  # conda-forge's cupy (environment-gpu.yml), say: a pip CuPy beside it would conflict with it
  say "--gpu: CuPy $cupy_version is already installed here; left as it is"
elif [ $gpu -eq 1 ]; then
  cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\).*/\1/p' || true)
  case $cuda in
    12) extras=test,gpu ;;
    1[3-9]) extras=test,gpu13 ;;
    "") die "--gpu: no NVIDIA driver answers here (nvidia-smi is missing or failed); see README.md, GPU" ;;
    *) die "--gpu: nvidia-smi reports no CUDA 12 or later driver (CUDA $cuda); see README.md, GPU" ;;
  esac
elif command -v nvidia-smi >/dev/null && nvidia-smi >/dev/null 2>&1 && ! python -c 'import cupy' 2>/dev/null; then
  say "a GPU answers: ./setup.sh --gpu also installs CuPy, so that training runs on it"
fi
if [ $env_ready -eq 0 ]; then
  say "would install the project into it: pip install -e \".[$extras]\""
else
  stamp="$(python -c 'import sys; print(sys.prefix)')/.scratchcnn-setup"
  want="$PWD [$extras] $(cksum <pyproject.toml)"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    say "Python packages: installed (pyproject.toml unchanged)"
  elif [ $check -eq 1 ]; then
    say "would install the project: pip install -e \".[$extras]\""
    todo=1
  else
    say "Python packages: pip install -e \".[$extras]\""
    python -m pip install -q --disable-pip-version-check -e ".[$extras]"
    printf '%s\n' "$want" >"$stamp"
  fi
fi

# -- TeX for the PDF report, pdftotext for the tests
tex_missing() { # what the report and the tests need; the Noto CJK fonts only look better
  local missing=() tool
  for tool in xelatex latexmk pdftotext; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  if command -v kpsewhich >/dev/null && [ -z "$(kpsewhich ctexart.cls)" ]; then
    missing+=(ctex)
  fi
  echo "${missing[*]}"
}
# grep reads all of fc-list's output: with -q it would stop early, and pipefail would see SIGPIPE
have_noto() { command -v fc-list >/dev/null && fc-list 2>/dev/null | grep -i 'noto.*cjk' >/dev/null; }

what_to_install() {
  cat >&2 <<EOF
setup.sh: the PDF report needs $1, missing here, and there is no apt-get to install it.
  Install with the system's package manager, or with TeX Live (https://tug.org/texlive):
    tlmgr install collection-xetex collection-langchinese collection-latexrecommended \\
      collection-latexextra collection-fontsrecommended latexmk
    pdftotext, which the tests use: the package poppler-utils (poppler on some systems)
    fonts, optional (ctex's Fandol fonts serve otherwise): Noto Serif CJK SC, Noto Sans CJK SC
  (Debian and Ubuntu: apt-get install ${APT_PACKAGES[*]})
  Then run ./setup.sh again, or ./setup.sh --no-tex to go on without the PDF.
EOF
}

missing=$(tex_missing)
if [ -z "$missing" ] && have_noto; then
  say "TeX: xelatex, latexmk, ctex, the Noto CJK fonts and pdftotext are here"
elif [ $with_tex -eq 0 ]; then
  say "--no-tex: ${missing:-the Noto CJK fonts} missing; the pipeline stops at report/report.pdf (report/report.tex builds)"
elif ! command -v apt-get >/dev/null; then
  if [ -n "$missing" ]; then
    what_to_install "$missing"
    [ $check -eq 1 ] || exit 1
    todo=1
  else
    say "TeX: here, without the Noto CJK fonts (Noto Serif/Sans CJK SC); the report uses ctex's Fandol fonts"
  fi
elif [ $check -eq 1 ]; then
  say "missing ${missing:-the Noto CJK fonts}: would run apt-get install ${APT_PACKAGES[*]}"
  todo=1
else
  apt_install "${APT_PACKAGES[@]}" \
    || die "apt-get failed (not root and no sudo?): as root run  apt-get install ${APT_PACKAGES[*]}  then this again, or use --no-tex"
  missing=$(tex_missing)
  [ -z "$missing" ] || die "still missing after apt-get: $missing"
fi

# The CUDA kernels' tests run them on the CPU through an emulator that g++ builds (tests/kernel_emulator.h)
if ! command -v g++ >/dev/null; then
  if [ $check -eq 1 ]; then
    say "missing g++ (the CUDA kernels' tests build their CPU emulator with it): would run apt-get install g++"
    todo=1
  elif command -v apt-get >/dev/null; then
    apt_install g++ || die "apt-get failed (not root and no sudo?): as root run  apt-get install g++  then this again"
  else
    say "missing g++: the CUDA kernels' tests skip, and tests/check.sh stops at them; install a C++17 compiler as g++"
  fi
fi

if [ $check -eq 1 ]; then
  [ $todo -eq 0 ] && say "nothing to do" || say "run ./setup.sh$flags to do the above"
  exit $todo
fi
if [ $# -gt 0 ]; then
  say "running: $*"
  exec "$@"
fi
if [ "${VIRTUAL_ENV:-}" = "$PWD/.venv" ]; then
  say "ready; to use it in this shell: source .venv/bin/activate"
else
  say "ready"
fi
