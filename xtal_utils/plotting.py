"""One figure style for the study, and one way to save figures (PNG and PDF)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

if not matplotlib.get_backend().lower().startswith(("module://matplotlib_inline", "module://ipympl")):
    matplotlib.use("agg")  # batch runs; JupyterLab keeps its inline backend
import matplotlib.pyplot as plt

from xtal_utils.config import resolve
from xtal_utils.paths import FIGURES

# Sized for a journal column (3.4 in) or page (7 in); fonts stay legible after scaling.
STYLE = {
    "figure.figsize": (3.4, 2.6),
    "figure.dpi": 150,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "lines.linewidth": 1.0,
    "pdf.fonttype": 42,  # TrueType in PDFs, as journals ask
    "ps.fonttype": 42,
    "axes.prop_cycle": matplotlib.cycler(
        color=["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
    ),  # Okabe-Ito, safe for colour-blind readers
}


def apply_style() -> None:
    """Use the study's style for every figure that follows."""
    plt.rcParams.update(STYLE)


def save_figure(fig, name: str, directory: str | Path = FIGURES) -> list[Path]:
    """Save ``fig`` as ``<directory>/<name>.png`` and ``.pdf``; returns the two paths."""
    directory = resolve(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{name}.{ext}" for ext in ("png", "pdf")]
    for path in paths:
        fig.savefig(path, metadata={"CreationDate": None} if path.suffix == ".pdf" else None)
    return paths
