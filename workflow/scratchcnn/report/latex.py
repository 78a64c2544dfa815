"""LaTeX output: escaping filters and the jinja2 environment of ``report/report.tex.j2``.

Escaping rules (enforced at render time by :func:`_finalize`): every string
that reaches the LaTeX output must pass through one of the filters

* ``tex``     -- text (class names, device names, statuses ...),
* ``texpath`` -- a path shown as text (escaped, with line-break points after ``/``),
* ``texfile`` -- a file name given to ``\\includegraphics`` (checked, not escaped),

or be a number pre-formatted by :mod:`.fmt` (digits, ``,``, ``.``, sign).
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2

from ..data.classes import ANIMALS, CLASS_NAMES_ZH, VEHICLES


class TexStr(str):
    """A string that is safe to put into LaTeX as it is (the output of a filter)."""


_TEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    # harmless in text, but after \\ or \midrule (a value that starts a table row) LaTeX
    # would read "[" as an optional argument and swallow "*" as the starred form
    "[": "{[}",
    "]": "{]}",
    "*": "{*}",
}
_TEX_RE = re.compile("|".join(re.escape(c) for c in _TEX_SPECIALS))


def tex_escape(s) -> TexStr:
    """Escape ``\\ & % $ # _ { } ~ ^ [ ] *`` so ``s`` typesets literally in LaTeX text."""
    if isinstance(s, TexStr):
        return s
    if s is None:
        raise ValueError("tex_escape(None): a value is missing")
    return TexStr(_TEX_RE.sub(lambda m: _TEX_SPECIALS[m.group(0)], str(s)))


def tex_path(s) -> TexStr:
    """A path for running text: escaped, with an allowed line break after each ``/``."""
    return TexStr(tex_escape(s).replace("/", r"/\allowbreak{}"))


_BAD_IN_FILE = set("%#{}\\$&^\n")


def tex_file(s) -> TexStr:
    """A file name for ``\\includegraphics``: passed as is after a check.

    LaTeX reads ``_`` and ``~`` in file names literally, so they are left alone;
    characters that would break the argument are refused.
    """
    s = str(s)
    bad = sorted(set(s) & _BAD_IN_FILE)
    if bad:
        raise ValueError(f"figure path {s!r} contains {bad}, which \\includegraphics cannot take")
    return TexStr(s)


_SPECIALS = set(_TEX_SPECIALS)


def _finalize(value):
    """Guard every ``\\VAR{...}``: nothing unescaped, missing or unformatted gets through.

    Allowed: the output of a filter (:class:`TexStr`), ints, and plain strings
    without TeX specials (numbers formatted here, words written in the template).
    Refused: ``None``, booleans, floats (format them here first) and any other
    string holding one of ``\\ & % $ # _ { } ~ ^ [ ] *``.
    """
    if isinstance(value, (TexStr, jinja2.Undefined)):
        return value  # StrictUndefined raises when it is printed
    if value is None or isinstance(value, (bool, float)):
        raise ValueError(
            f"{value!r} interpolated into the report: test it with \\BLOCK{{if}} " "or format it in scratchcnn.report"
        )
    if isinstance(value, int):
        return value
    if isinstance(value, str) and not (_SPECIALS & set(value)):
        return value
    raise ValueError(
        f"unescaped value {value!r} ({type(value).__name__}) interpolated into the report: "
        "pass strings through |tex, |texpath or |texfile"
    )


def make_environment(search_path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(search_path)),
        block_start_string=r"\BLOCK{",
        block_end_string="}",
        variable_start_string=r"\VAR{",
        variable_end_string="}",
        comment_start_string=r"\#{",
        comment_end_string="}",
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
    )
    env.filters["tex"] = tex_escape
    env.filters["texpath"] = tex_path
    env.filters["texfile"] = tex_file
    # class names are data, not wording: the template reads them from their one home
    env.globals.update(class_names_zh=CLASS_NAMES_ZH, vehicle_classes=VEHICLES, animal_classes=ANIMALS)
    return env


def render(template_path, context: dict) -> str:
    """Fill the template at ``template_path`` with ``context``; missing keys raise."""
    template_path = Path(template_path)
    env = make_environment(template_path.parent)
    return env.get_template(template_path.name).render(**context)
