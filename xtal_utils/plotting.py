"""One figure style at a journal's printed size, and one way to save figures (PNG and PDF) that checks it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

if not matplotlib.get_backend().lower().startswith(("module://matplotlib_inline", "module://ipympl")):
    matplotlib.use("agg")  # batch runs; JupyterLab keeps its inline backend
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.backends.backend_agg import RendererAgg
from PIL import Image

from xtal_utils.config import atomic_path, resolve
from xtal_utils.paths import FIGURES

SINGLE_COLUMN = 3.3  # inches: a journal's single column
DOUBLE_COLUMN = 6.9  # inches: a journal's full text width; no figure is wider
MIN_FONT = 7.0  # points: the smallest text at printed size
PNG_DPI = 300
EDGE_TOL = 1.0  # pixels: text may touch the figure's edge by this much (rounding of the layout)
RECORD_KEY = "xtal print size"  # PNG text chunk that holds the figure's PrintSize as JSON

# Figures are made at their printed size, so these are the printed fonts.
STYLE = {
    "figure.figsize": (SINGLE_COLUMN, 2.4),
    "figure.dpi": 150,
    "figure.constrained_layout.use": True,  # the saved file is exactly figsize: no trimming, no scaling
    "savefig.dpi": PNG_DPI,
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "legend.frameon": False,
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

# Names of the test sets in figures, for the keys that code uses.
TEST_SETS = {"from_random": "PyXtal random crystals", "fresh": "fresh stream crystals"}


class FigureNotPrintable(ValueError):
    """A figure is wider than a page, has text below :data:`MIN_FONT`, or has text cut off at its edge."""


@dataclass(frozen=True)
class PrintSize:
    """A figure at its printed size."""

    width: float  # inches
    height: float  # inches
    smallest_font: float  # points, over every text drawn
    smallest_text: str  # one text of that size, to find it by


def apply_style() -> None:
    """Use the study's style for every figure that follows."""
    plt.rcParams.update(STYLE)


def label_panels(axes, letters: str = "abcdefgh") -> None:
    """Mark each of ``axes`` with a bold "(a)", "(b)", ... as its left title, where the layout keeps room;
    a centred title moves to the right, clear of the letter."""
    for ax, letter in zip(axes, letters):
        title = ax.get_title()
        if title:
            ax.set_title("")
            ax.set_title(title, loc="right")
        ax.set_title(f"({letter})", loc="left", fontweight="bold")


def _drawn_texts(fig) -> list:
    """``(string, size in points, window extent, angle in degrees)`` of every text that drawing ``fig``
    renders: tick labels, axis labels, titles, legends, colour bars and annotations; hidden ones and empty
    strings are left out."""
    width, height = fig.get_size_inches() * fig.dpi
    renderer = RendererAgg(int(round(width)), int(round(height)), fig.dpi)
    drawn = []
    draw_text = renderer.draw_text

    def record(gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if s.strip():
            extent = mtext.get_window_extent(renderer) if mtext is not None else None
            drawn.append((s, prop.get_size_in_points(), extent, angle))
        return draw_text(gc, x, y, s, prop, angle, ismath, mtext)

    renderer.draw_text = record
    fig.draw(renderer)
    return drawn


def _overlapping(texts: list) -> list:
    """Pairs of ``(string, extent)`` whose extents overlap by more than :data:`EDGE_TOL` pixels each way."""
    if len(texts) < 2:
        return []
    box = np.array([[e.x0, e.y0, e.x1, e.y1] for _, e in texts])
    x = np.minimum(box[:, None, 2], box[None, :, 2]) - np.maximum(box[:, None, 0], box[None, :, 0])
    y = np.minimum(box[:, None, 3], box[None, :, 3]) - np.maximum(box[:, None, 1], box[None, :, 1])
    first, second = np.nonzero(np.triu((x > EDGE_TOL) & (y > EDGE_TOL), k=1))
    return [(texts[i][0], texts[j][0]) for i, j in zip(first, second)]


def check_print_size(fig) -> PrintSize:
    """Measure ``fig`` as it will print; raises :class:`FigureNotPrintable` if it is wider than
    :data:`DOUBLE_COLUMN`, if any text drawn is smaller than :data:`MIN_FONT`, or if any text runs off the
    figure (the figure is saved at exactly its size, so such text would be cut)."""
    width, height = (float(v) for v in fig.get_size_inches())
    drawn = _drawn_texts(fig)
    problems = []
    if width > DOUBLE_COLUMN + 1e-9:
        problems.append(f"it is {width:.2f} in wide, more than the page's {DOUBLE_COLUMN} in: make it at its "
                        "printed size instead of scaling it down")
    small = sorted({(size, s) for s, size, _, _ in drawn if size < MIN_FONT})
    if small:
        shown = "; ".join(f"{s!r} at {size:g} pt" for size, s in small[:5])
        problems.append(f"{len(small)} text(s) below {MIN_FONT:g} pt: {shown}")
    w_px, h_px = width * fig.dpi, height * fig.dpi
    cut = [s for s, _, e, _ in drawn if e is not None and (e.x0 < -EDGE_TOL or e.y0 < -EDGE_TOL
                                                         or e.x1 > w_px + EDGE_TOL or e.y1 > h_px + EDGE_TOL)]
    if cut:
        problems.append(f"text runs off the figure's edge: {', '.join(map(repr, cut[:5]))}; shorten it, or "
                        "place it with the layout (titles, labels, fig.legend(loc='outside ...')) rather than at "
                        "fixed coordinates")
    # the extent of slanted text is its bounding rectangle, wider than its glyphs: left out here
    overlaps = _overlapping([(s, e) for s, _, e, angle in drawn if e is not None and angle % 90 == 0])
    if overlaps:
        problems.append("texts overlap: " + ", ".join(f"{a!r} and {b!r}" for a, b in overlaps[:5]))
    if not drawn:
        problems.append("it has no text: label its axes with quantities and units")
    if problems:
        raise FigureNotPrintable("figure not fit for print: " + "; ".join(problems))
    size, text = min((size, s) for s, size, _, _ in drawn)
    return PrintSize(width, height, float(size), text)


def save_figure(fig, name: str, directory: str | Path = FIGURES) -> list[Path]:
    """Check ``fig`` (:func:`check_print_size`), then save it at its size as ``<directory>/<name>.png``
    (:data:`PNG_DPI`) and ``.pdf``, each written atomically; returns the two paths. The PNG carries the
    :class:`PrintSize` as a text chunk, which :func:`read_print_size` reads back."""
    size = check_print_size(fig)
    directory = resolve(directory)
    paths = [directory / f"{name}.{ext}" for ext in ("png", "pdf")]
    metadata = {"png": {RECORD_KEY: json.dumps(asdict(size))}, "pdf": {"CreationDate": None}}
    for path in paths:
        ext = path.suffix[1:]
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=PNG_DPI, metadata=metadata[ext])
    return paths


def read_print_size(png: str | Path) -> PrintSize:
    """The printed size of a PNG that :func:`save_figure` wrote: width and height from its pixels and
    resolution, the smallest font from its record. Raises ``ValueError`` for a PNG without the record."""
    with Image.open(png) as image:
        record = image.text.get(RECORD_KEY)
        (dpi_x, dpi_y), (w_px, h_px) = image.info["dpi"], image.size
    if record is None:
        raise ValueError(f"{png} has no print-size record: it was not written by save_figure; re-run its notebook")
    saved = json.loads(record)
    return PrintSize(w_px / round(dpi_x), h_px / round(dpi_y), saved["smallest_font"], saved["smallest_text"])
