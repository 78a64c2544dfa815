"""The grid search: the lr x L2 heat map and the filter-count sweep."""

from __future__ import annotations

from typing import Sequence

from matplotlib.patches import Rectangle

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..sweeps import by_value, finished, shown_sweep
from .style import COLORS, new_figure, num_label, t, text_color, title


def _pick_sweep(summary: pd.DataFrame, vary: Sequence[str], sweep: str | None) -> pd.DataFrame:
    """The rows of the sweep named ``sweep``, or of the sweep ``scratchcnn.sweeps.shown_sweep`` picks
    for ``vary`` (the one the report describes beside the figure).

    A grid that varies none of them (a single point, say) gives all its rows.
    """
    if sweep is None:
        sweep = shown_sweep(summary, vary)
        if sweep is None:
            return summary
    rows = summary[summary["sweep"] == sweep]
    if rows.empty:
        raise ValueError(f"summary has no rows of sweep {sweep!r}")
    return rows


def sweep_heatmap(summary: pd.DataFrame, lang: str, sweep: str | None = None) -> Figure:
    """Best validation accuracy over the lr × reg grid; diverged cells hatched grey."""
    rows = _pick_sweep(summary, ("lr", "reg"), sweep)
    cells = by_value(rows, ("lr", "reg"))
    lrs = sorted(cells["lr"].unique())
    regs = sorted(cells["reg"].unique())
    acc = np.full((len(regs), len(lrs)), np.nan)
    div = np.zeros_like(acc, dtype=bool)
    seen = np.zeros_like(div)
    for cell in cells.itertuples():
        i, j = regs.index(cell.reg), lrs.index(cell.lr)
        seen[i, j], div[i, j], acc[i, j] = True, cell.diverged, 100 * cell.best_val_acc
    fig = new_figure(max(2.6, 0.55 * len(regs) + 1.5))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"]
    finite = acc[np.isfinite(acc)]
    vmin, vmax = (finite.min(), finite.max()) if finite.size else (0.0, 100.0)
    if vmax - vmin < 1e-9:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    im = ax.imshow(np.ma.masked_invalid(acc), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", origin="lower")
    best = None
    if finite.size:  # the first of equals in the summary's order, as the selection (sweeps.choose_best) breaks a tie
        done = rows[finished(rows)]
        top = done.loc[pd.to_numeric(done["best_val_acc"]).idxmax()]
        best = (regs.index(float(top["reg"])), lrs.index(float(top["lr"])))
    for i in range(len(regs)):
        for j in range(len(lrs)):
            if div[i, j] or not seen[i, j]:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.85", edgecolor="0.55",
                                       hatch="///", lw=0))  # fmt: skip
                label = t("diverged" if div[i, j] else "not_run", lang)
                ax.text(j, i, label, ha="center", va="center", fontsize=8, color="0.2",
                        bbox={"facecolor": "0.85", "edgecolor": "none", "pad": 1})  # fmt: skip
            else:
                color = text_color(cmap((acc[i, j] - vmin) / (vmax - vmin)))
                weight = "bold" if best is not None and (i, j) == tuple(best) else "normal"
                ax.text(j, i, f"{acc[i, j]:.1f}", ha="center", va="center", fontsize=9, color=color,
                        fontweight=weight)  # fmt: skip
    if best is not None:
        ax.add_patch(Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, edgecolor="#d62728", lw=2.2,
                               clip_on=False, zorder=4))  # fmt: skip
    ax.set_xticks(range(len(lrs)), num_label(lrs))
    ax.set_yticks(range(len(regs)), num_label(regs))
    ax.set_xlabel(t("lr", lang))
    ax.set_ylabel(t("reg", lang))
    ax.grid(False)
    for s in ax.spines.values():
        s.set_visible(False)
    ax.tick_params(length=0)
    fig.colorbar(im, ax=ax, label=t("best_val_pct", lang), shrink=0.9)
    ax.set_title(title("sweep_heatmap", lang))
    return fig


def filters_sweep(summary: pd.DataFrame, lang: str, sweep: str | None = None) -> Figure:
    """Best validation accuracy vs filters (left axis), seconds per epoch (right axis)."""
    table = by_value(_pick_sweep(summary, ("filters",), sweep), ("filters",))
    filters = [int(f) for f in table["filters"]]
    acc, spe = 100 * table["best_val_acc"].to_numpy(), table["seconds_per_epoch"].to_numpy()
    div = list(table["diverged"])
    fig = new_figure(3.4)
    ax = fig.add_subplot()
    ax2 = ax.twinx()
    ax2.grid(False)
    ax2.spines["right"].set_visible(True)
    h1 = ax.plot(filters, acc, marker="o", color=COLORS["train"], label=t("best_val_pct", lang))
    h2 = ax2.plot(filters, spe, marker="s", ls="--", color=COLORS["time"], label=t("sec_per_epoch", lang))
    for f, a in zip(filters, acc):
        if np.isfinite(a):
            ax.annotate(f"{a:.1f}", (f, a), xytext=(-5, 5), textcoords="offset points", ha="right",
                        va="bottom", fontsize=7.5, color=COLORS["train"], zorder=6,
                        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5})  # fmt: skip
    handles = h1 + h2
    if any(div):
        xs = [f for f, d in zip(filters, div) if d]
        handles += ax.plot(xs, [0.0] * len(xs), ls="none", marker="x", ms=8, color=COLORS["wrong"],
                           transform=ax.get_xaxis_transform(), clip_on=False,
                           label=t("diverged", lang))  # fmt: skip
    if len(filters) > 1 and filters[0] > 0 and filters[-1] / filters[0] >= 4:
        ax.set_xscale("log", base=2)
        ax.set_xlim(filters[0] / 1.35, filters[-1] * 1.35)  # room for the value labels
    ax.set_xticks(filters, [str(f) for f in filters])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel(t("filters", lang))
    ax.set_ylabel(t("best_val_pct", lang), color=COLORS["train"])
    ax2.set_ylabel(t("sec_per_epoch", lang), color=COLORS["time"])
    ax.tick_params(axis="y", colors=COLORS["train"])
    ax2.tick_params(axis="y", colors=COLORS["time"])
    if np.isfinite(acc).any():
        lo, hi = np.nanmin(acc), np.nanmax(acc)
        margin = max(1.0, 0.15 * (hi - lo))
        ax.set_ylim(lo - margin, hi + 1.6 * margin)
    else:  # every point diverged: no accuracy scale to show
        ax.set_ylim(0, 100)
    if np.isfinite(spe).any():
        ax2.set_ylim(0, np.nanmax(spe) * 1.15)
    # below the plot: inside it, the legend covered the points of the smallest filter count
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles))
    ax.set_title(title("filters_sweep", lang))
    return fig
