"""Measured pattern files: reading, checking, and resampling onto a model's 2-theta grid.

Text files with two or three columns (2-theta in degrees, intensity, optional sigma), as .xy, .xye,
.csv or .dat: whitespace, comma or semicolon separated, with header and comment lines skipped. A file
that cannot be a powder pattern raises :class:`PatternFileError`, whose one-line message names the
file and the problem.

Patterns measured at another wavelength are moved onto the model's grid through the d-spacing,
``d = lambda / (2 sin theta)``, which is what the pattern really records.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

MIN_POINTS = 50  # fewer samples than this cannot resolve a powder pattern
MIN_COVERAGE = 0.5  # fraction of the model's 2-theta span that the measurement must cover
MIN_SIGNAL = 1e-6  # fraction of the pattern's own range that must lie on the grid; less is rounding noise
_NUMBER_ROW = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?[\s,;]")


class PatternFileError(ValueError):
    """A pattern file that cannot be used; the message is one line naming the file."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")


def read_pattern(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a two- or three-column pattern file.

    Returns:
        two_theta (n,) in degrees, strictly increasing; intensity (n,), finite.

    Raises:
        PatternFileError: no numeric rows, wrong or inconsistent column counts, NaN or infinite
            values, non-increasing angles, angles outside (0, 180), too few points, or no signal.
    """
    path = Path(path)
    if not path.is_file():
        raise PatternFileError(path, "no such file")
    rows, widths = [], set()
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as error:
        raise PatternFileError(path, f"cannot be read ({error.strerror})") from None
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text[0] in "#!;%'\"" or not (_NUMBER_ROW.match(text + " ") or text.lower().startswith("nan")):
            continue  # header or comment
        fields = [f for f in re.split(r"[\s,;]+", text) if f]
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise PatternFileError(path, f"line {number} is not numeric: {text[:60]!r}") from None
        widths.add(len(values))
        rows.append(values)
    if not rows:
        raise PatternFileError(path, "no numeric rows found; expected columns of 2-theta and intensity")
    if len(widths) > 1:
        raise PatternFileError(path, f"rows have different numbers of columns: {sorted(widths)}")
    width = widths.pop()
    if width not in (2, 3):
        raise PatternFileError(path, f"expected 2 or 3 columns (2-theta, intensity[, sigma]), found {width}")
    data = np.asarray(rows)
    two_theta, intensity = data[:, 0], data[:, 1]
    check_pattern(two_theta, intensity, source=path)
    return two_theta, intensity


def check_pattern(two_theta, intensity, *, source="pattern") -> None:
    """Raise :class:`PatternFileError` unless (two_theta, intensity) is a usable pattern."""
    two_theta, intensity = np.asarray(two_theta, dtype=float), np.asarray(intensity, dtype=float)
    if two_theta.shape != intensity.shape or two_theta.ndim != 1:
        raise PatternFileError(source, f"2-theta {two_theta.shape} and intensity {intensity.shape} differ in shape")
    bad = ~np.isfinite(two_theta) | ~np.isfinite(intensity)
    if bad.any():
        raise PatternFileError(source, f"{bad.sum()} NaN or infinite values (first at row {np.argmax(bad) + 1})")
    if len(two_theta) < MIN_POINTS:
        raise PatternFileError(source, f"only {len(two_theta)} points; at least {MIN_POINTS} are needed")
    steps = np.diff(two_theta)
    if (steps <= 0).any():
        raise PatternFileError(source, f"2-theta is not strictly increasing (at row {np.argmax(steps <= 0) + 2})")
    if two_theta[0] <= 0 or two_theta[-1] >= 180:
        raise PatternFileError(source, f"2-theta runs from {two_theta[0]:g} to {two_theta[-1]:g}; "
                               "expected degrees within (0, 180)")
    if np.ptp(intensity) <= 0:
        raise PatternFileError(source, "the intensity is constant: no signal")


def to_d_spacing(two_theta, wavelength: float) -> np.ndarray:
    """d = lambda / (2 sin theta), in Angstrom."""
    return wavelength / (2 * np.sin(np.deg2rad(np.asarray(two_theta)) / 2))


def to_two_theta(d_spacing, wavelength: float) -> np.ndarray:
    """2-theta in degrees of a d-spacing at ``wavelength``; NaN where no reflection is possible."""
    ratio = wavelength / (2 * np.asarray(d_spacing, dtype=float))
    with np.errstate(invalid="ignore"):
        return np.where(ratio <= 1, 2 * np.rad2deg(np.arcsin(np.minimum(ratio, 1))), np.nan)


def resample(two_theta, intensity, grid, *, wavelength: float, grid_wavelength: float,
             source="pattern") -> np.ndarray:
    """Put a measured pattern onto a model's 2-theta grid, converting wavelengths through d.

    Args:
        two_theta, intensity: (n,) the measurement, 2-theta in degrees at ``wavelength`` (Angstrom).
        grid: (m,) the model's 2-theta grid in degrees at ``grid_wavelength``.

    Returns:
        (m,) float32 intensity, zero where the measurement does not reach, scaled to a maximum of 1
        after subtracting its minimum.

    Raises:
        PatternFileError: if the measurement covers less than MIN_COVERAGE of the grid's span.
    """
    two_theta, intensity, grid = (np.asarray(a, dtype=float) for a in (two_theta, intensity, grid))
    if wavelength <= 0 or grid_wavelength <= 0:
        raise ValueError("wavelengths must be positive (Angstrom)")
    moved = to_two_theta(to_d_spacing(two_theta, wavelength), grid_wavelength)
    keep = np.isfinite(moved)
    moved, intensity = moved[keep], intensity[keep]
    lo, hi = (max(moved.min(), grid[0]), min(moved.max(), grid[-1])) if len(moved) else (0, 0)
    coverage = max(hi - lo, 0) / (grid[-1] - grid[0])
    if coverage < MIN_COVERAGE:
        measured = f"{two_theta[0]:.1f}-{two_theta[-1]:.1f} deg at {wavelength:g} A"
        raise PatternFileError(source, f"2-theta range {measured} covers {coverage:.0%} of the model's grid "
                               f"({grid[0]:.1f}-{grid[-1]:.1f} deg at {grid_wavelength:g} A); "
                               f"at least {MIN_COVERAGE:.0%} is needed")
    intensity = intensity - intensity.min()
    out = np.interp(grid, moved, intensity, left=0.0, right=0.0)
    if out.max() <= MIN_SIGNAL * intensity.max():
        raise PatternFileError(source, f"no signal above the minimum within the model's grid "
                               f"({grid[0]:.1f}-{grid[-1]:.1f} deg at {grid_wavelength:g} A)")
    return (out / out.max()).astype(np.float32)
