#!/usr/bin/env python
"""Compile report/report.tex to report/report.pdf with latexmk and XeLaTeX.

    python workflow/scripts/compile_report.py --tex report/report.tex \\
        --out report/report.pdf --log logs/report/compile.log [--build-dir report/build]

latexmk runs in the folder of the .tex (so ``../results/figures/...`` resolves
from there) with ``-xelatex -interaction=nonstopmode -halt-on-error
-file-line-error -outdir=<build dir>``; the finished PDF is then moved onto
``--out`` atomically. ``--log`` receives latexmk's output and a summary.
On failure the relevant lines of the LaTeX log are printed (and logged) and
the exit status is 1; an existing ``--out`` is left untouched. Missing
``xelatex``/``latexmk`` also gives exit status 1 and says what to install.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from scratchcnn.io import atomic_path
from scratchcnn.logs import exit_on_sigterm

INSTALL_HELP = """\
compile_report: {missing} not found on PATH; the report needs XeLaTeX, latexmk, ctex and a CJK font.
  Debian/Ubuntu:
    sudo apt-get install texlive-xetex texlive-lang-chinese texlive-fonts-recommended \\
        texlive-latex-recommended latexmk fonts-noto-cjk
    (texlive-xetex pulls in texlive-latex-extra; texlive-lang-chinese brings ctex and the Fandol fonts)
  Fedora: sudo dnf install texlive-scheme-medium texlive-ctex latexmk google-noto-serif-cjk-fonts
  TeX Live from tug.org (any OS, includes tlmgr): install scheme-medium, then
    tlmgr install ctex xecjk fandol latexmk booktabs tabularx placeins caption
  conda-forge has no complete TeX Live with ctex; there `conda install -c conda-forge tectonic`
    gives a XeTeX engine that fetches packages on first use (needs network), but this script
    drives latexmk; compile by hand with `cd report && tectonic report.tex`.
The rest of the pipeline does not need TeX: `snakemake report/report.tex` renders the source only."""

ERROR_RE = re.compile(r"^(!|.*:\d+: )|^l\.\d+ |Missing character|Emergency stop|Fatal error|not found")


def find_tools() -> list[str]:
    return [t for t in ("xelatex", "latexmk") if shutil.which(t) is None]


def relevant_log_lines(log_text: str, limit=40) -> list[str]:
    """Error lines of a LaTeX log with a little context, most relevant first."""
    lines = log_text.splitlines()
    picked = []
    for i, line in enumerate(lines):
        if ERROR_RE.search(line):
            for j in range(i, min(i + 3, len(lines))):
                if not picked or picked[-1][0] < j:
                    picked.append((j, lines[j]))
    out = [text for _, text in picked]
    if not out:
        out = lines[-limit:]
    return out[:limit]


def log_warnings(log_text: str) -> dict:
    return {
        "missing_characters": len(re.findall(r"Missing character: There is no", log_text)),
        "overfull_boxes": len(re.findall(r"^Overfull \\[hv]box", log_text, flags=re.M)),
        "undefined_references": len(re.findall(r"Reference `[^']*' on page \d+ undefined", log_text)),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tex", required=True, help="the .tex file (latexmk runs in its folder)")
    ap.add_argument("--out", required=True, help="where the PDF goes")
    ap.add_argument("--log", help="file for latexmk's output and a summary")
    ap.add_argument("--build-dir", help="auxiliary files (default: build/ beside the .tex)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds (default %(default)s)")
    args = ap.parse_args(argv)

    log_path = Path(args.log) if args.log else None
    log_chunks: list[str] = []

    def say(msg: str, err=False):
        print(msg, file=sys.stderr if err else sys.stdout, flush=True)
        log_chunks.append(msg)

    def finish(code: int) -> int:
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text("\n".join(log_chunks) + "\n", encoding="utf-8")
        return code

    missing = find_tools()
    if missing:
        say(INSTALL_HELP.format(missing=" and ".join(missing)), err=True)
        return finish(1)

    tex = Path(args.tex).resolve()
    if not tex.is_file():
        say(f"compile_report: {tex} does not exist", err=True)
        return finish(1)
    workdir = tex.parent
    build = Path(args.build_dir).resolve() if args.build_dir else workdir / "build"
    try:
        build.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        say(f"compile_report: cannot make the build folder {build} ({exc.strerror or exc})", err=True)
        return finish(1)
    out = Path(args.out).resolve()

    cmd = ["latexmk", "-xelatex", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
           f"-outdir={build}", tex.name]  # fmt: skip
    env = dict(os.environ, max_print_line="1000")  # unwrapped log lines
    say(f"compile_report: running {' '.join(cmd)} in {workdir}")
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                              errors="replace", timeout=args.timeout)  # fmt: skip
        output, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        output = (
            (exc.stdout or b"").decode(errors="replace")
            if isinstance(exc.stdout, bytes)
            else (exc.stdout or "")
        )
        code = "timeout"
    log_chunks.append(output)

    tex_log = build / (tex.stem + ".log")
    log_text = tex_log.read_text(encoding="utf-8", errors="replace") if tex_log.exists() else ""
    pdf = build / (tex.stem + ".pdf")
    if code != 0 or not pdf.is_file():
        say(f"compile_report: latexmk failed ({code}); relevant lines of {tex_log}:", err=True)
        for line in relevant_log_lines(log_text) if log_text else output.splitlines()[-40:]:
            say("  " + line, err=True)
        return finish(1)

    warnings = log_warnings(log_text)
    say("compile_report: " + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in warnings.items()))
    if warnings["missing_characters"]:
        for line in re.findall(r"Missing character: There is no.*", log_text)[:10]:
            say("  " + line, err=True)

    try:
        with atomic_path(out) as tmp:
            shutil.copyfile(pdf, tmp)
    except OSError as exc:  # an unwritable folder, a full disk: one line, the log still written
        say(f"compile_report: cannot write {out} ({exc.strerror or exc})", err=True)
        return finish(1)
    say(f"compile_report: wrote {out}")
    return finish(0)


if __name__ == "__main__":
    exit_on_sigterm()
    sys.exit(main())
