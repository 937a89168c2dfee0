"""Figures at print size: save_figure's check, and the figures that each notebook writes at the smoke preset.

The notebook smoke tests (tests/test_notebooks.py) call :func:`assert_smoke_figures_printable` right after
each run, so every notebook's figures are checked from the files that run wrote, without a second run.
"""

import time

import matplotlib.pyplot as plt
import numpy as np
import pytest

from xtal_utils import plotting
from xtal_utils.config import resolve
from xtal_utils.paths import FIGURES
from xtal_utils.study import load_preset

SMOKE_FIGURES = resolve(load_preset("smoke")["figure_dir"])


def assert_smoke_figures_printable(stem: str, since: float, directory=SMOKE_FIGURES) -> None:
    """Every figure that notebook ``stem`` wrote to ``directory`` at or after ``since`` (seconds since the
    epoch) is at most a page wide and has no text under the smallest printed font."""
    prefix = stem.split("_")[0] + "_"
    written = [p for p in sorted(directory.glob(f"{prefix}*.png")) if p.stat().st_mtime >= since]
    assert written, f"{stem} wrote no figure to {directory}"
    for png in written:
        assert png.with_suffix(".pdf").stat().st_mtime >= since, f"{png.name} has no PDF beside it"
        size = plotting.read_print_size(png)
        assert size.width <= plotting.DOUBLE_COLUMN + 1e-3, f"{png.name} is {size.width:.2f} in wide"
        assert size.smallest_font >= plotting.MIN_FONT, (
            f"{png.name}: {size.smallest_text!r} is {size.smallest_font:g} pt")


@pytest.fixture(autouse=True)
def study_style():
    with plt.rc_context(plotting.STYLE):
        yield
    plt.close("all")


def _figure(width=plotting.SINGLE_COLUMN, height=2.0):
    fig, ax = plt.subplots(figsize=(width, height))
    two_theta = np.linspace(5, 90, 200)
    ax.plot(two_theta, np.exp(-((two_theta - 40) / 0.5) ** 2), label="simulated")
    ax.set(xlabel="2θ (degrees)", ylabel="intensity (arbitrary units)")
    return fig, ax


def test_saves_a_printable_figure_with_its_print_size(tmp_path):
    fig, ax = _figure()
    ax.legend()
    png, pdf = plotting.save_figure(fig, "peak", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["peak.pdf", "peak.png"]  # no temporary file left
    assert pdf.read_bytes().startswith(b"%PDF")
    size = plotting.read_print_size(png)
    assert size.width == pytest.approx(plotting.SINGLE_COLUMN) and size.height == pytest.approx(2.0)
    assert size.smallest_font == plotting.STYLE["xtick.labelsize"] == plotting.MIN_FONT


def test_refuses_a_figure_wider_than_a_page(tmp_path):
    fig, _ = _figure(width=9.0)
    with pytest.raises(plotting.FigureNotPrintable, match=r"9\.00 in wide"):
        plotting.save_figure(fig, "wide", tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("where", ["label", "tick labels", "legend", "annotation", "colour bar"])
def test_refuses_text_below_the_smallest_printed_font(tmp_path, where):
    fig, ax = _figure()
    if where == "label":
        ax.set_xlabel("2θ (degrees)", fontsize=5)
    elif where == "tick labels":
        ax.tick_params(labelsize=5)
    elif where == "legend":
        ax.legend(fontsize=5)
    elif where == "annotation":
        ax.annotate("(111)", (40, 1.0), fontsize=5)
    else:
        fig.colorbar(ax.imshow(np.eye(3)), ax=ax).ax.tick_params(labelsize=5)
    with pytest.raises(plotting.FigureNotPrintable, match="below 7 pt.* at 5 pt"):
        plotting.save_figure(fig, "small", tmp_path)


def test_hidden_and_empty_text_does_not_count(tmp_path):
    fig, ax = _figure()
    ax.text(40, 0.5, "hidden", fontsize=5, visible=False)
    ax.set_title("", fontsize=5)
    plotting.save_figure(fig, "hidden", tmp_path)


def test_refuses_text_cut_off_at_the_edge(tmp_path):
    fig, ax = _figure()
    ax.text(-0.6, 1.0, "(a)", transform=ax.transAxes)  # outside the layout's reach
    with pytest.raises(plotting.FigureNotPrintable, match=r"off the figure's edge: '\(a\)'"):
        plotting.save_figure(fig, "cut", tmp_path)


def test_refuses_overlapping_text(tmp_path):
    fig, ax = _figure()
    ax.annotate("(111)", (40, 1.0))
    ax.annotate("(200)", (41, 1.0))
    with pytest.raises(plotting.FigureNotPrintable, match=r"texts overlap: '\(111\)' and '\(200\)'"):
        plotting.save_figure(fig, "crowded", tmp_path)


def test_panel_letters_keep_clear_of_a_title(tmp_path):
    fig, axes = plt.subplots(1, 2, figsize=(plotting.DOUBLE_COLUMN, 2.0))
    for ax in axes:
        ax.set(xlabel="2θ (degrees)", ylabel="intensity", title="simulated pattern")
    plotting.label_panels(axes)
    assert [(ax.get_title("left"), ax.get_title("center"), ax.get_title("right")) for ax in axes] == [
        ("(a)", "", "simulated pattern"), ("(b)", "", "simulated pattern")]
    plotting.save_figure(fig, "panels", tmp_path)


def test_a_png_without_its_record_is_reported(tmp_path):
    fig, _ = _figure()
    fig.savefig(tmp_path / "plain.png")
    with pytest.raises(ValueError, match="not written by save_figure"):
        plotting.read_print_size(tmp_path / "plain.png")


def test_the_smoke_check_reads_the_figures_a_run_wrote(tmp_path):
    started = time.time()
    plotting.save_figure(_figure()[0], "09_peak", tmp_path)
    assert_smoke_figures_printable("09_example", started, tmp_path)
    with pytest.raises(AssertionError, match="wrote no figure"):
        assert_smoke_figures_printable("09_example", time.time() + 60, tmp_path)


@pytest.mark.parametrize("png", sorted(FIGURES.glob("*.png")), ids=lambda p: p.stem)
def test_committed_figures_are_at_print_size(png):
    """The figures of the committed runs (``make study``) were saved by save_figure at print size."""
    size = plotting.read_print_size(png)
    assert size.width <= plotting.DOUBLE_COLUMN + 1e-3 and size.smallest_font >= plotting.MIN_FONT, size
