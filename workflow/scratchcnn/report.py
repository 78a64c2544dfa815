"""The auto-filled report: results in, LaTeX text out.

:func:`build_context` turns the results files (already parsed by the caller)
into a dict of pre-formatted strings and computed facts; :func:`render` fills
``report/report.tex.j2`` with it. The wording lives in the template; every
number and every data-dependent choice (best/worst class, how the validation
loss ends, what more filters cost, which sweep point won) is computed here.

No file I/O here except :func:`render` reading the template.

Escaping rules (enforced at render time by :func:`_finalize`): every string
that reaches the LaTeX output must pass through one of the filters

* ``tex``     -- text (class names, device names, statuses ...),
* ``texpath`` -- a path shown as text (escaped, with line-break points after ``/``),
* ``texfile`` -- a file name given to ``\\includegraphics`` (checked, not escaped),

or be a number pre-formatted by this module (digits, ``,``, ``.``, sign).
"""

from __future__ import annotations

import math
import posixpath
import re
from pathlib import Path

import jinja2
import numpy as np

from . import model as cnn

#: Test accuracy of the study being reproduced (61.3 %).
STUDY_TEST_ACCURACY = 0.613

#: Figure names written by the figures step (docs/outputs.md).
FIGURES = (
    "loss_curve", "val_accuracy", "sweep_heatmap", "filters_sweep", "per_class_accuracy",
    "conv1_kernels", "conv2_kernels", "fc_weights", "histograms", "confusion_matrix",
    "test_samples",
)  # fmt: skip

#: The standard CIFAR-10 classes split into vehicles and animals (for a group comparison).
VEHICLES = ("airplane", "automobile", "ship", "truck")
ANIMALS = ("bird", "cat", "deer", "dog", "frog", "horse")

#: Differences smaller than this many percentage points count as "equal".
EQUAL_PP = 0.05
#: A relative change of the validation loss over the last epochs below this counts as flat.
FLAT_REL = 0.02

# ---------------------------------------------------------------------------- escaping


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
}
_TEX_RE = re.compile("|".join(re.escape(c) for c in _TEX_SPECIALS))


def tex_escape(s) -> TexStr:
    """Escape ``\\ & % $ # _ { } ~ ^`` so ``s`` typesets literally in LaTeX text."""
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
    string holding one of ``\\ & % $ # _ { } ~ ^``.
    """
    if isinstance(value, (TexStr, jinja2.Undefined)):
        return value  # StrictUndefined raises when it is printed
    if value is None or isinstance(value, (bool, float)):
        raise ValueError(
            f"{value!r} interpolated into the report: test it with \\BLOCK{{if}} " "or format it in report.py"
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
    return env


def render(template_path, context: dict) -> str:
    """Fill the template at ``template_path`` with ``context``; missing keys raise."""
    template_path = Path(template_path)
    env = make_environment(template_path.parent)
    return env.get_template(template_path.name).render(**context)


# ---------------------------------------------------------------------------- formatting


def pct(x, digits=2) -> str:
    """A fraction as a percentage number without the sign: ``0.6247 -> "62.47"``."""
    return f"{100.0 * float(x):.{digits}f}"


def fixed(x, digits=4) -> str:
    return f"{float(x):.{digits}f}"


def integer(x) -> str:
    return f"{int(round(float(x))):,}"


def plain(x) -> str:
    """A hyper-parameter as written in a config: ``0.001``, ``1e-05 -> 0.00001``, ``64``."""
    x = float(x)
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return np.format_float_positional(x, trim="-")


def seconds(x) -> str:
    x = float(x)
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def stat(x, digits=4) -> str:
    """A statistic with fixed decimals and no negative zero."""
    out = f"{float(x):.{digits}f}"
    return out[1:] if out.startswith("-") and float(out) == 0 else out


def duration(sec) -> dict:
    """``{"value", "unit"}`` with unit ``s`` below 2 minutes, ``min`` below 2 hours, else ``h``."""
    sec = float(sec)
    if sec < 120:
        return {"value": seconds(sec), "unit": "s"}
    if sec < 7200:
        return {"value": f"{sec / 60:.1f}", "unit": "min"}
    return {"value": f"{sec / 3600:.2f}", "unit": "h"}


def ratio(x) -> str:
    return f"{float(x):.2f}"


def shape(t) -> TexStr:
    """A shape for math mode: ``(32, 32, 3) -> 32\\times 32\\times 3``."""
    return TexStr(r"\times ".join(str(int(v)) for v in t))


# ---------------------------------------------------------------------------- layer table


def layer_table(arch: dict) -> list[dict]:
    """Every layer's input and output shape (H, W, C) and parameter count.

    ``params`` counts the learnable parameters, ``buffers`` the BN running
    statistics (saved in the checkpoint, not trained). Pure function of ``arch``
    (the ``arch_json`` of a checkpoint); the shapes come from the model itself.
    """
    shapes = {k: tuple(int(v) for v in t) for k, t in cnn.layer_shapes(arch).items()}
    size = {k: int(np.prod(t)) for k, t in cnn.param_shapes(arch).items()}
    k, s = int(arch["kernel_size"]), int(arch.get("stride", 1))
    rows, cur = [], shapes["input"]
    for i in (1, 2):
        conv, pool = shapes[f"conv{i}"], shapes[f"pool{i}"]
        rows += [
            dict(name=f"conv{i}", kind="conv", input=cur, output=conv, params=size[f"W{i}"] + size[f"b{i}"],
                 buffers=0, kernel=k, stride=s, padding=int(arch[f"padding{i}"]), filters=conv[2]),
            dict(name=f"bn{i}", kind="batchnorm", input=conv, output=conv,
                 params=size[f"gamma{i}"] + size[f"beta{i}"],
                 buffers=size[f"running_mean{i}"] + size[f"running_var{i}"]),
            dict(name=f"relu{i}", kind="relu", input=conv, output=conv, params=0, buffers=0),
            dict(name=f"pool{i}", kind="maxpool", input=conv, output=pool, params=0, buffers=0,
                 kernel=int(arch["pool_size"]), stride=int(arch["pool_stride"])),
        ]  # fmt: skip
        cur = pool
    d, n_classes = int(np.prod(cur)), shapes["fc"][0]
    rows += [
        dict(name="flatten", kind="flatten", input=cur, output=(d,), params=0, buffers=0),
        dict(name="fc", kind="affine", input=(d,), output=(n_classes,), params=size["W3"] + size["b3"], buffers=0),
        dict(name="softmax", kind="softmax", input=(n_classes,), output=(n_classes,), params=0, buffers=0),
    ]  # fmt: skip
    return rows


# ---------------------------------------------------------------------------- facts


def compare(a, b, equal_pp=EQUAL_PP) -> str:
    """``"above"``, ``"below"`` or ``"equal"``: fraction ``a`` against fraction ``b``."""
    d = 100.0 * (float(a) - float(b))
    if abs(d) < equal_pp:
        return "equal"
    return "above" if d > 0 else "below"


def val_loss_trend(history, window=None, flat_rel=FLAT_REL) -> dict:
    """How the validation loss behaves over the last ``window`` epochs.

    ``direction`` is ``rising``, ``falling``, ``flat`` (least-squares change over
    the window below ``flat_rel`` of its mean), ``short`` (fewer than 3 epochs)
    or ``nonfinite`` (the loss diverged).
    """
    vl = [float(v) for v in history["val_loss"]]
    ep = [int(e) for e in history["epoch"]]
    n = len(vl)
    if not all(math.isfinite(v) for v in vl):
        return {"direction": "nonfinite", "window": n}
    if n < 3:
        return {"direction": "short", "window": n}
    if window is None:
        window = max(3, min(10, n // 4))
    window = min(window, n)
    y = np.array(vl[-window:])
    x = np.arange(window, dtype=float)
    slope, intercept = (float(v) for v in np.polyfit(x, y, 1))
    change = slope * (window - 1)
    # relative to the fitted value at the start of the window (the mean when that is not positive)
    base = intercept if intercept > 0 else float(np.mean(y))
    rel = change / base
    direction = "flat" if abs(rel) < flat_rel else ("rising" if rel > 0 else "falling")
    i_min = int(np.argmin(vl))
    return {
        "direction": direction,
        "window": window,
        "first_epoch": ep[-window],
        "last_epoch": ep[-1],
        "first": vl[-window],
        "last": vl[-1],
        "rel_change": rel,
        "min_epoch": ep[i_min],
        "min": vl[i_min],
        "min_in_window": i_min >= n - window,
    }


def class_extremes(per_class: list[dict], key="accuracy") -> dict:
    """The best and worst classes by ``key`` (all tied classes are listed)."""
    vals = [float(r[key]) for r in per_class]
    hi, lo = max(vals), min(vals)
    return {
        "best": [r for r in per_class if float(r[key]) == hi],
        "worst": [r for r in per_class if float(r[key]) == lo],
        "best_value": hi,
        "worst_value": lo,
    }


def filter_cost(summary) -> dict | None:
    """Seconds per epoch and best validation accuracy per filter count.

    Uses the sweep in which ``filters`` takes the most distinct values (the
    filters sweep); ``None`` when no sweep varies the filter count.
    """
    if summary is None or len(summary) == 0 or "filters" not in summary:
        return None
    best_sweep, best_n = None, 1
    for name, g in summary.groupby("sweep", sort=False):
        n = g["filters"].nunique()
        if n > best_n:
            best_sweep, best_n = name, n
    if best_sweep is None:
        return None
    g = summary[summary["sweep"] == best_sweep]
    ok = g[g["status"] == "ok"] if (g["status"] == "ok").any() else g
    rows = []
    for filt, gg in ok.groupby("filters", sort=False):
        rows.append({
            "filters": filt,
            "seconds_per_epoch": float(gg["seconds_per_epoch"].mean()),
            "best_val_acc": float(gg["best_val_acc"].max()),
        })  # fmt: skip
    rows.sort(key=lambda r: _sort_key(r["filters"]))
    if len(rows) < 2:
        return None
    lo, hi = rows[0], rows[-1]
    base = lo["seconds_per_epoch"]
    for r in rows:
        r["ratio"] = r["seconds_per_epoch"] / base if base > 0 else float("nan")
    try:
        per_filter = (hi["seconds_per_epoch"] - lo["seconds_per_epoch"]) / (
            float(hi["filters"]) - float(lo["filters"])
        )
    except (TypeError, ValueError, ZeroDivisionError):
        per_filter = None
    best_acc = max(rows, key=lambda r: r["best_val_acc"])
    return {
        "sweep": best_sweep,
        "rows": rows,
        "low": lo,
        "high": hi,
        "ratio": hi["ratio"],
        "per_filter_seconds": per_filter,
        "cost_direction": compare(hi["seconds_per_epoch"], lo["seconds_per_epoch"], 1e-9),
        "acc_direction": compare(hi["best_val_acc"], lo["best_val_acc"]),
        "best_acc_filters": best_acc["filters"],
    }


def _sort_key(v):
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def _same_point(row, best, tol=1e-12) -> bool:
    for key in ("lr", "reg"):
        a, b = float(row[key]), float(best[key])
        if abs(a - b) > tol * max(1.0, abs(a), abs(b)):
            return False
    return str(_norm(row["filters"])) == str(_norm(best["filters"]))


def _norm(v):
    try:
        f = float(v)
        return int(f) if f == int(f) else f
    except (TypeError, ValueError):
        return v


def selection(summary, best: dict) -> dict:
    """Where the chosen point stands among all grid points (ties and margins)."""
    ok = summary[summary["status"] == "ok"]
    is_chosen = summary.apply(lambda r: _same_point(r, best), axis=1)
    others = ok[~is_chosen.loc[ok.index]] if len(ok) else ok
    chosen_acc = float(best["best_val_acc"])
    runner = None
    if len(others):
        r = others.loc[others["best_val_acc"].astype(float).idxmax()]
        runner = {"sweep": r["sweep"], "lr": r["lr"], "reg": r["reg"], "filters": r["filters"],
                  "best_val_acc": float(r["best_val_acc"])}  # fmt: skip
    max_acc = float(ok["best_val_acc"].max()) if len(ok) else chosen_acc
    return {
        "n_points": int(len(summary)),
        "n_unique": int(summary[["lr", "reg", "filters"]].astype(str).drop_duplicates().shape[0]),
        "n_ok": int(len(ok)),
        "n_diverged": int((summary["status"] == "diverged").sum()),
        "is_max": chosen_acc >= max_acc - 1e-12,
        "runner_up": runner,
        "margin_pp": None if runner is None else 100.0 * (chosen_acc - runner["best_val_acc"]),
        "max_acc": max_acc,
    }


def _groups(per_class: list[dict]):
    names = [str(r["name"]) for r in per_class]
    if sorted(names) != sorted(VEHICLES + ANIMALS):
        return None

    def mean(group):
        return float(np.mean([float(r["accuracy"]) for r in per_class if r["name"] in group]))

    v, a = mean(VEHICLES), mean(ANIMALS)
    return {"vehicles": pct(v), "animals": pct(a), "higher": compare(v, a),
            "diff_pp": pct(abs(v - a))}  # fmt: skip


# ---------------------------------------------------------------------------- context


def _get(d: dict, *keys, default=None):
    """The first present key among ``keys`` (dotted paths allowed)."""
    for key in keys:
        cur, ok = d, True
        for part in key.split("."):
            if isinstance(cur, dict) and part in cur and cur[part] is not None:
                cur = cur[part]
            else:
                ok = False
                break
        if ok:
            return cur
    return default


def _env_context(prov: dict) -> dict:
    versions = prov.get("versions") or {}
    commit = prov.get("git_commit")
    return {
        "backend": tex_escape(prov.get("backend", "?")),
        "device": tex_escape(prov.get("device", "?")),
        "python": tex_escape(versions.get("python", "?")),
        "numpy": tex_escape(versions.get("numpy", "?")),
        "cupy": tex_escape(versions["cupy"]) if versions.get("cupy") else None,
        "snakemake": tex_escape(versions["snakemake"]) if versions.get("snakemake") else None,
        "scratchcnn": tex_escape(versions["scratchcnn"]) if versions.get("scratchcnn") else None,
        "git_commit": tex_escape(commit) if commit else None,
        "created": tex_escape(prov.get("created", "?")),
        "created_date": tex_escape(str(prov.get("created", "?"))[:10]),
    }


def _data_context(data_meta: dict, test_metrics: dict, synthetic: bool) -> dict:
    shapes = data_meta.get("shapes") or {}

    def size(split):
        if f"x_{split}" in shapes:
            return int(shapes[f"x_{split}"][0])
        v = _get(data_meta, f"sizes.{split}", f"n_{split}", f"{split}_size", f"sizes.n_{split}")
        return int(v) if v is not None else None

    n_train, n_val, n_test = size("train"), size("val"), size("test")
    if n_test is None:
        n_test = int(test_metrics["n_test"])
    img = shapes.get("x_train") or shapes.get("x_test") or [None, 32, 32, 3]
    std = data_meta.get("standardize")
    seed = _get(data_meta, "seed", "split_seed", "val_seed", "split.seed")
    md5 = _get(data_meta, "md5", "archive_md5", "archive.md5")
    names = data_meta.get("class_names") or test_metrics["class_names"]
    archive = _get(data_meta, "archive", "archive_name")
    return {
        "archive": tex_escape(Path(str(archive)).name) if archive else None,
        "n_train": integer(n_train) if n_train is not None else None,
        "n_val": integer(n_val) if n_val is not None else None,
        "n_test": integer(n_test),
        "n_train_total": integer(n_train + n_val) if None not in (n_train, n_val) else None,
        "height": str(int(img[1])),
        "width": str(int(img[2])),
        "channels": str(int(img[3])),
        "flat": str(int(img[1]) * int(img[2]) * int(img[3])),
        "num_classes": str(len(names)),
        "class_names": [tex_escape(n) for n in names],
        "seed": str(int(seed)) if seed is not None else None,
        "synthetic": synthetic,
        "md5": tex_escape(md5) if md5 else None,
        "standardize": None if not std else {
            "mean": [fixed(v, 4) for v in std["mean"]],
            "std": [fixed(v, 4) for v in std["std"]],
        },
    }  # fmt: skip


def _hp_context(hp: dict) -> dict:
    def opt(key, fmt=plain):
        return fmt(hp[key]) if hp.get(key) is not None else None

    return {
        "lr": plain(hp["lr"]),
        "reg": plain(hp["reg"]),
        "filters": tex_escape(_norm(hp["filters"])),
        "batch_size": plain(hp["batch_size"]),
        "epochs": plain(hp["epochs"]),
        "lr_decay": plain(hp["lr_decay"]),
        "lr_step": plain(hp["lr_step"]),
        "clip": opt("clip"),
        "seed": opt("seed"),
        "bn_momentum": opt("bn_momentum"),
    }


def _history_rows(history, best_epoch, max_rows=14) -> list[dict]:
    n = len(history)
    if n <= max_rows:
        keep = set(range(n))
    else:
        stride = math.ceil(n / (max_rows - 2))
        keep = set(range(0, n, stride)) | {n - 1}
        keep |= {i for i in range(n) if int(history["epoch"].iloc[i]) == int(best_epoch)}
    rows = []
    for i in sorted(keep):
        r = history.iloc[i]
        rows.append({
            "epoch": str(int(r["epoch"])),
            "lr": plain(r["lr"]),
            "train_loss": _loss(r["train_loss"]),
            "train_acc": pct(r["train_acc"]),
            "val_loss": _loss(r["val_loss"]),
            "val_acc": pct(r["val_acc"]),
            "seconds": seconds(r["seconds"]),
            "is_best": int(r["epoch"]) == int(best_epoch),
        })  # fmt: skip
    return rows


def _loss(x):
    x = float(x)
    return fixed(x, 4) if math.isfinite(x) else None


def _point(row) -> dict:
    return {
        "sweep": tex_escape(row["sweep"]),
        "lr": plain(row["lr"]),
        "reg": plain(row["reg"]),
        "filters": tex_escape(_norm(row["filters"])),
        "val_pct": pct(row["best_val_acc"]),
    }


def _sweeps_context(summary, best: dict) -> list[dict]:
    out = []
    for name, g in summary.groupby("sweep", sort=False):
        g = g.copy()
        g["_key"] = [
            (_sort_key(a), _sort_key(b), _sort_key(c)) for a, b, c in zip(g["lr"], g["reg"], g["filters"])
        ]
        g = g.sort_values("_key", kind="stable")
        ok = g[g["status"] == "ok"]
        top = ok.sort_values("best_val_acc", ascending=False, kind="stable") if len(ok) else ok
        best_idx = top.index[0] if len(top) else None
        varying = [c for c in ("lr", "reg", "filters") if g[c].astype(str).nunique() > 1]
        rows = []
        for idx, r in g.iterrows():
            status = str(r["status"])
            rows.append({
                "lr": plain(r["lr"]),
                "reg": plain(r["reg"]),
                "filters": tex_escape(_norm(r["filters"])),
                "val_acc": pct(r["best_val_acc"]) if _finite(r["best_val_acc"]) else None,
                "best_epoch": str(int(r["best_epoch"])) if _finite(r["best_epoch"]) and r["best_epoch"] > 0 else None,
                "epochs": str(int(r["epochs"])),
                "seconds_per_epoch": seconds(r["seconds_per_epoch"]),
                "status": status,
                "status_tex": tex_escape(status),
                "chosen": str(r["sweep"]) == str(best.get("sweep", r["sweep"])) and _same_point(r, best),
                "sweep_best": idx == best_idx,
            })  # fmt: skip
        entry = {
            "name": tex_escape(name),
            "raw_name": str(name),
            "varying": varying,
            "rows": rows,
            "n_points": str(len(g)),
            "n_diverged": str(int((g["status"] == "diverged").sum())),
            "best": _point(top.iloc[0]) if len(top) else None,
            "margin_pp": (
                pct(top["best_val_acc"].iloc[0] - top["best_val_acc"].iloc[1]) if len(top) > 1 else None
            ),
            "spread_pp": (
                pct(top["best_val_acc"].iloc[0] - top["best_val_acc"].iloc[-1]) if len(top) > 1 else None
            ),
            "second": _point(top.iloc[1]) if len(top) > 1 else None,
            "worst": _point(top.iloc[-1]) if len(top) > 1 else None,
        }
        out.append(entry)
    return out


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _param_stats_context(param_stats) -> list[dict] | None:
    if not param_stats:
        return None
    rows = []
    for name, s in param_stats.items():
        rows.append({
            "name": tex_escape(name),
            "shape": shape(s["shape"]),
            "size": integer(s["size"]),
            "mean": stat(s["mean"]),
            "std": stat(s["std"]),
            "min": stat(s["min"]),
            "max": stat(s["max"]),
        })  # fmt: skip
    return rows


def array_stats(arrays: dict) -> dict:
    """Shape, size, mean, std, min, max of each array (host NumPy arrays)."""
    out = {}
    for name, a in arrays.items():
        a = np.asarray(a, dtype=np.float64)
        out[name] = {"shape": list(a.shape), "size": int(a.size), "mean": float(a.mean()),
                     "std": float(a.std()), "min": float(a.min()), "max": float(a.max())}  # fmt: skip
    return out


def build_context(
    test_metrics: dict,
    summary,
    history,
    best: dict,
    data_meta: dict,
    arch: dict,
    final_metrics: dict,
    figures_dir: str,
    *,
    param_stats: dict | None = None,
    study_accuracy: float = STUDY_TEST_ACCURACY,
) -> dict:
    """Everything the template needs, as pre-formatted strings and computed facts.

    ``summary`` and ``history`` are DataFrames of ``results/sweep/summary.csv`` and
    ``results/final/history.csv``; ``data_meta`` is the ``meta_json`` of the data
    file, optionally with ``shapes`` (array name -> shape) and ``class_names``;
    ``arch`` is the checkpoint's ``arch_json``; ``figures_dir`` is the figures
    folder as the LaTeX run will see it (relative to the folder of the .tex);
    ``param_stats`` is optional (:func:`array_stats` of the checkpoint arrays).
    """
    acc = float(test_metrics["test_accuracy"])
    n_test = int(test_metrics["n_test"])
    per_class = list(test_metrics["per_class"])

    # -- headline
    test = {
        "acc": fixed(acc, 4),
        "acc_pct": pct(acc),
        "loss": fixed(test_metrics["test_loss"], 4),
        "n": integer(n_test),
        "correct": integer(sum(int(r["correct"]) for r in per_class)),
        "vs_study": compare(acc, study_accuracy),
        "diff_pp": pct(abs(acc - study_accuracy)),
        "study_pct": pct(study_accuracy, 1),
    }
    tp = test_metrics.get("throughput") or {}
    test["images_per_second"] = integer(tp["images_per_second"]) if tp.get("images_per_second") else None
    test["throughput_backend"] = tex_escape(tp.get("backend", "?"))
    test["throughput_device"] = tex_escape(tp.get("device", "?"))
    ckpt = test_metrics.get("checkpoint") or {}
    test["checkpoint_path"] = tex_path(ckpt["path"]) if ckpt.get("path") else None
    test["checkpoint_epoch"] = str(int(ckpt["epoch"])) if ckpt.get("epoch") is not None else None
    test["checkpoint_val_pct"] = pct(ckpt["val_acc"]) if ckpt.get("val_acc") is not None else None

    # -- environment (training run and evaluation)
    train_env = _env_context(final_metrics.get("provenance") or {})
    train_env["backend"] = tex_escape(
        final_metrics.get("backend") or (final_metrics.get("provenance") or {}).get("backend", "?")
    )
    train_env["device"] = tex_escape(
        final_metrics.get("device") or (final_metrics.get("provenance") or {}).get("device", "?")
    )
    eval_env = _env_context(test_metrics.get("provenance") or {})
    env = {"train": train_env, "eval": eval_env,
           "same_device": str(train_env["device"]) == str(eval_env["device"])
           and str(train_env["backend"]) == str(eval_env["backend"])}  # fmt: skip

    # -- data, architecture, layers
    synthetic = any(
        bool(
            _get(
                d,
                "synthetic",
                "provenance.config.data.synthetic",
                "provenance.config.synthetic",
                default=False,
            )
        )
        for d in (data_meta, final_metrics, test_metrics)
    )
    data = _data_context(data_meta, test_metrics, synthetic)
    layers = layer_table(arch)
    layer_rows = []
    for r in layers:
        layer_rows.append({
            "name": tex_escape(r["name"]),
            "kind": r["kind"],
            "input": shape(r["input"]),
            "output": shape(r["output"]),
            "input_h": str(r["input"][0]),
            "output_h": str(r["output"][0]),
            "params": integer(r["params"]),
            "buffers": integer(r["buffers"]),
            "kernel": str(r["kernel"]) if "kernel" in r else None,
            "stride": str(r["stride"]) if "stride" in r else None,
            "padding": str(r["padding"]) if "padding" in r else None,
        })  # fmt: skip
    total = sum(r["params"] for r in layers)
    by_name = {r["name"]: r for r in layers}
    a = {
        "f1": str(int(arch["filters1"])),
        "f2": str(int(arch["filters2"])),
        "k": str(int(arch["kernel_size"])),
        "p1": str(int(arch["padding1"])),
        "p2": str(int(arch["padding2"])),
        "stride": str(int(arch.get("stride", 1))),
        "pool": str(int(arch["pool_size"])),
        "pool_stride": str(int(arch["pool_stride"])),
        "bn_eps": np.format_float_positional(float(arch["bn_eps"]), trim="-"),
        "num_classes": str(int(arch["num_classes"])),
        "h2": str(by_name["pool2"]["output"][0]),
        "w2": str(by_name["pool2"]["output"][1]),
        "d": integer(by_name["fc"]["input"][0]),
        "d_raw": str(by_name["fc"]["input"][0]),
        "conv1_out": shape(by_name["conv1"]["output"]),
        "pool1_out": shape(by_name["pool1"]["output"]),
        "conv2_out": shape(by_name["conv2"]["output"]),
        "pool2_out": shape(by_name["pool2"]["output"]),
        "total_params": integer(total),
        "total_buffers": integer(sum(r["buffers"] for r in layers)),
        "fc_share_pct": pct(by_name["fc"]["params"] / total, 1),
        "fc_params": integer(by_name["fc"]["params"]),
        "conv_params": integer(by_name["conv1"]["params"] + by_name["conv2"]["params"]),
    }

    # -- final training run
    hp = final_metrics.get("hyperparameters") or test_metrics.get("hyperparameters") or {}
    hpc = _hp_context(hp)
    h = history.sort_values("epoch")
    last = h.iloc[-1]
    best_epoch = int(final_metrics["best_epoch"])
    train = {
        "status": str(final_metrics.get("status", "ok")),
        "status_tex": tex_escape(final_metrics.get("status", "ok")),
        "epochs_run": str(int(final_metrics.get("epochs_run", len(h)))),
        "epochs_planned": str(int(final_metrics.get("epochs_planned", hp.get("epochs", len(h))))),
        "stopped_early": int(final_metrics.get("epochs_run", len(h)))
        < int(final_metrics.get("epochs_planned", len(h))),
        "best_epoch": str(best_epoch),
        "best_is_last": best_epoch == int(last["epoch"]),
        "best_val_pct": pct(final_metrics["best_val_acc"]),
        "seconds_total": seconds(final_metrics.get("seconds", h["seconds"].sum())),
        "duration": duration(final_metrics.get("seconds", h["seconds"].sum())),
        "seconds_per_epoch": seconds(final_metrics.get("seconds_per_epoch", h["seconds"].mean())),
        "last_train_pct": pct(last["train_acc"]),
        "last_val_pct": pct(last["val_acc"]),
        "last_train_loss": _loss(last["train_loss"]),
        "last_val_loss": _loss(last["val_loss"]),
        "gap_pp": pct(float(last["train_acc"]) - float(last["val_acc"])),
        "gap_sign": compare(last["train_acc"], last["val_acc"]),
        "first_val_pct": pct(h.iloc[0]["val_acc"]),
        "lr_first": plain(h.iloc[0]["lr"]),
        "lr_last": plain(last["lr"]),
        "n_lr_values": str(h["lr"].nunique()),
        "test_vs_val": compare(acc, final_metrics["best_val_acc"]),
        "test_val_diff_pp": pct(abs(acc - float(final_metrics["best_val_acc"]))),
    }
    trend = val_loss_trend(h)
    vl = {"direction": trend["direction"], "window": str(trend["window"])}
    if trend["direction"] not in ("short", "nonfinite"):
        vl.update({
            "first_epoch": str(trend["first_epoch"]),
            "last_epoch": str(trend["last_epoch"]),
            "first": fixed(trend["first"], 4),
            "last": fixed(trend["last"], 4),
            "change_pct": pct(abs(trend["rel_change"]), 1),
            "min_epoch": str(trend["min_epoch"]),
            "min": fixed(trend["min"], 4),
            "min_in_window": trend["min_in_window"],
        })  # fmt: skip

    # -- sweeps and selection
    sweeps = _sweeps_context(summary, best)
    sel = selection(summary, best)
    chosen = {
        "sweep": tex_escape(best.get("sweep", "?")),
        "lr": plain(best["lr"]),
        "reg": plain(best["reg"]),
        "filters": tex_escape(_norm(best["filters"])),
        "val_pct": pct(best["best_val_acc"]),
        "path": tex_path(best["path"]) if best.get("path") else None,
        "is_max": sel["is_max"],
        "n_points": str(sel["n_points"]),
        "n_unique": str(sel["n_unique"]),
        "n_ok": str(sel["n_ok"]),
        "n_diverged": str(sel["n_diverged"]),
        "max_pct": pct(sel["max_acc"]),
        "runner_up": None,
        "margin_pp": None,
        "margin_kind": None,
    }
    if sel["runner_up"] is not None:
        chosen["runner_up"] = _point(sel["runner_up"])
        chosen["margin_pp"] = pct(abs(sel["margin_pp"]) / 100.0)
        chosen["margin_kind"] = compare(float(best["best_val_acc"]), sel["runner_up"]["best_val_acc"], 1e-9)
    fc = filter_cost(summary)
    cost = None
    if fc is not None:
        cost = {
            "sweep": tex_escape(fc["sweep"]),
            "rows": [{"filters": tex_escape(_norm(r["filters"])), "seconds_per_epoch": seconds(r["seconds_per_epoch"]),
                      "ratio": ratio(r["ratio"]), "val_pct": pct(r["best_val_acc"])} for r in fc["rows"]],  # fmt: skip
            "low_filters": tex_escape(_norm(fc["low"]["filters"])),
            "high_filters": tex_escape(_norm(fc["high"]["filters"])),
            "low_seconds": seconds(fc["low"]["seconds_per_epoch"]),
            "high_seconds": seconds(fc["high"]["seconds_per_epoch"]),
            "ratio": ratio(fc["ratio"]),
            # cost of one more filter per epoch: milliseconds below one second, else seconds
            "per_filter": (
                None
                if fc["per_filter_seconds"] is None or fc["per_filter_seconds"] <= 0
                else (
                    {"value": f"{1000 * fc['per_filter_seconds']:.1f}", "unit": "ms"}
                    if fc["per_filter_seconds"] < 1
                    else {"value": seconds(fc["per_filter_seconds"]), "unit": "s"}
                )
            ),
            "cost_direction": fc["cost_direction"],
            "low_val_pct": pct(fc["low"]["best_val_acc"]),
            "high_val_pct": pct(fc["high"]["best_val_acc"]),
            "acc_direction": fc["acc_direction"],
            "acc_diff_pp": pct(abs(fc["high"]["best_val_acc"] - fc["low"]["best_val_acc"])),
            "best_acc_filters": tex_escape(_norm(fc["best_acc_filters"])),
        }
    heatmap_sweep = next((s for s in sweeps if {"lr", "reg"} <= set(s["varying"])), None) or next(
        (s for s in sweeps if {"lr", "reg"} & set(s["varying"])), None
    )

    # -- per class
    ext = class_extremes(per_class, "accuracy")
    ext_p = class_extremes(per_class, "precision")
    class_rows = []
    for r in per_class:
        p, rc, f1 = float(r["precision"]), float(r["recall"]), float(r["f1"])
        class_rows.append({
            "index": str(int(r["class"])),
            "name": tex_escape(r["name"]),
            "raw_name": str(r["name"]),
            "correct": integer(r["correct"]),
            "total": integer(r["total"]),
            "acc_pct": pct(r["accuracy"]),
            "precision_pct": pct(p),
            "recall_pct": pct(rc),
            "f1_pct": pct(f1),
            "is_best": r in ext["best"],
            "is_worst": r in ext["worst"],
        })  # fmt: skip

    def cls(rs):
        return [{"name": tex_escape(r["name"]), "raw_name": str(r["name"]), "acc_pct": pct(r["accuracy"]),
                 "precision_pct": pct(r["precision"]), "recall_pct": pct(r["recall"])} for r in rs]  # fmt: skip

    accs = [float(r["accuracy"]) for r in per_class]
    totals = {int(r["class"]): int(r["total"]) for r in per_class}
    confused = []
    pairs = {(int(c["true"]), int(c["pred"])) for c in test_metrics.get("most_confused", [])}
    for c in test_metrics.get("most_confused", []):
        t = int(c["true"])
        confused.append({
            "true_name": tex_escape(c["true_name"]),
            "pred_name": tex_escape(c["pred_name"]),
            "raw_true": str(c["true_name"]),
            "raw_pred": str(c["pred_name"]),
            "count": integer(c["count"]),
            "share_pct": pct(int(c["count"]) / totals[t], 1) if totals.get(t) else None,
            "mutual": (int(c["pred"]), t) in pairs,
        })  # fmt: skip
    mutual = []
    seen = set()
    for c in test_metrics.get("most_confused", []):
        t, p = int(c["true"]), int(c["pred"])
        if (p, t) in pairs and frozenset((t, p)) not in seen:
            seen.add(frozenset((t, p)))
            mutual.append({"a": tex_escape(c["true_name"]), "b": tex_escape(c["pred_name"]),
                           "raw_a": str(c["true_name"]), "raw_b": str(c["pred_name"])})  # fmt: skip
    errors = n_test - sum(int(r["correct"]) for r in per_class)
    top_share = (
        sum(int(c["count"]) for c in test_metrics.get("most_confused", [])) / errors if errors else 0.0
    )
    classes = {
        "rows": class_rows,
        "best": cls(ext["best"]),
        "worst": cls(ext["worst"]),
        "best_pct": pct(ext["best_value"]),
        "worst_pct": pct(ext["worst_value"]),
        "spread_pp": pct(ext["best_value"] - ext["worst_value"]),
        "mean_pct": pct(float(np.mean(accs))),
        "n_above": str(sum(a_ > acc for a_ in accs)),
        "n_classes": str(len(per_class)),
        "lowest_precision": cls(ext_p["worst"]),
        "highest_precision": cls(ext_p["best"]),
        "groups": _groups(per_class),
        "confused": confused,
        "mutual": mutual,
        "errors": integer(errors),
        "top_confused_share_pct": pct(top_share, 1),
    }

    # -- figures (paths as LaTeX sees them)
    figures = {
        name: tex_file(posixpath.join(str(figures_dir).replace("\\", "/"), f"{name}.pdf")) for name in FIGURES
    }

    history_rows = _history_rows(h, best_epoch)
    train["n_rows_shown"] = str(len(history_rows))
    return {
        "test": test,
        "env": env,
        "data": data,
        "arch": a,
        "layers": layer_rows,
        "hp": hpc,
        "train": train,
        "val_loss": vl,
        "history_rows": history_rows,
        "n_history": str(len(h)),
        "sweeps": sweeps,
        "heatmap_sweep": heatmap_sweep,
        "chosen": chosen,
        "filter_cost": cost,
        "classes": classes,
        "figures": figures,
        "param_stats": _param_stats_context(param_stats),
    }
