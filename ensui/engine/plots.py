"""Figures for papers: the Figure B heatmap and pairwise member × member heatmaps,
written as PNG and PDF with matplotlib (headless backend, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; works over SSH and in CI
    import matplotlib.pyplot as plt

    return plt


def heatmap(values: list[list[float | None]], rows: list[str], cols: list[str], title: str,
            stem: Path, diverging: bool = True, label: str = "") -> list[Path]:
    """Annotated heatmap; diverging colours centred on 0 when `diverging`."""
    plt = _pyplot()
    data = np.array([[np.nan if v is None else v for v in row] for row in values], float)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(cols), 0.8 + 0.45 * len(rows)),
                           constrained_layout=True)
    if diverging:
        bound = max(np.nanmax(np.abs(data)) if np.isfinite(data).any() else 1.0, 1e-9)
        image = ax.imshow(data, cmap="RdBu_r", vmin=-bound, vmax=bound)
    else:
        image = ax.imshow(data, cmap="viridis")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for (i, k), value in np.ndenumerate(data):
        text = "—" if np.isnan(value) else f"{value:+.2f}" if diverging else f"{value:.2f}"
        ax.text(k, i, text, ha="center", va="center", fontsize=8,
                color=_text_colour(image, value, diverging))
    fig.colorbar(image, ax=ax, label=label)
    ax.set_title(title)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return paths


def _text_colour(image, value: float, diverging: bool) -> str:
    """White on dark cells, black on light ones."""
    if np.isnan(value):
        return "black"
    shade = image.norm(value)
    dark = abs(shade - 0.5) > 0.3 if diverging else shade < 0.55
    return "white" if dark else "black"


def figure_b_plot(figure: dict, folder: Path) -> list[Path]:
    return heatmap(figure["values"], figure["metrics"], figure["sets"],
                   f"Correlation with {figure.get('improvement') or 'improvement'}\n"
                   f"({figure['consensus']} consensus, across teams)",
                   folder / "figure_b", label="Pearson r")


def pairwise_plots(matrices: list[dict], folder: Path) -> list[Path]:
    paths = []
    for m in matrices:
        paths += heatmap(m["matrix"], m["members"], m["members"],
                         f"{m['metric']} on {m['val_set']}",
                         folder / f"pairwise-{m['val_set']}-{m['metric'].replace(':', '-')}",
                         diverging=False,
                         label=m["metric"])
    return paths
