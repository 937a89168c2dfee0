"""Measured pattern files: reading, checking, and resampling onto a model's 2-theta grid.

Formats read (:func:`read_pattern` tells them apart by their content):

- text columns (2-theta in degrees, intensity, optional sigma), as .xy, .xye, .csv or .dat:
  whitespace, comma or semicolon separated, with header and comment lines skipped;
- GSAS FXYE (a ``BANK`` line, then 2-theta in centidegrees, intensity, sigma);
- through CrysFML2008's reader (``crysfml.cfml_diffpatt.load_pattern``, the library behind
  FullProf): GSAS STD/ESD (``BANK ... CONST``), FullProf's D1A/D2B/3T2 instrument format
  (INSTRM 6) and its free format (INSTRM 0: start, step, end, then counts). Any other CrysFML mode
  can be named with ``format=``. CrysFML runs in one long-lived helper process, because its Fortran
  reader ends the whole process on some malformed files; here such a file only raises an error.

A file that cannot be a powder pattern raises :class:`PatternFileError`, whose one-line message
names the file and the problem. A wavelength stated in a header line (``wavelength: 1.912``,
``Lambda1 0.7093``, ``Anode: Mo``) is returned when asked for.

Patterns measured at another wavelength are moved onto the model's grid through the d-spacing,
``d = lambda / (2 sin theta)``, which is what the pattern really records.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

MIN_POINTS = 50  # fewer samples than this cannot resolve a powder pattern
MIN_COVERAGE = 0.5  # fraction of the model's 2-theta span that the measurement must cover
TRUNCATED_SHARE = 0.05  # an instrument file whose last 5% of points or more are exactly zero was cut short
MIN_PEAK_SNR = 8.0  # strongest feature over the noise (peak_to_noise): counting noise alone stays below 6
MIN_SIGNAL = 1e-6  # fraction of the pattern's own range that must lie on the grid; less is rounding noise
_NUMBER_ROW = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?[\s,;]")
# 'Wavelength: 1.912', 'Lambda1 0.7093', 'wave length = 1.54', 'K-Alpha1 [A] 1.5406', 'alpha1 1.54056'
_WAVELENGTH = re.compile(r"(wave\s*length|lambda|wave|alpha)\s*1?[^0-9\n]{0,24}?(\d+\.\d+)", re.IGNORECASE)
# 'Anode: Cu', 'Target = Mo', 'Radiation: CuKa', 'Tube Co': the K-alpha1 line of the anode, Angstrom
_ANODE = re.compile(r"(anode|target|tube|radiation)[^\n]{0,16}?\b(Cu|Co|Mo|Cr|Fe|Ag)(?=\b|K)", re.IGNORECASE)
TUBE_LINES = {"Cu": 1.54056, "Co": 1.78897, "Mo": 0.70930, "Cr": 2.28970, "Fe": 1.93604, "Ag": 0.55941}
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d+,\d+([\s;]+[-+]?\d+(,\d+)?)+\s*$")


class PatternFileError(ValueError):
    """A pattern file that cannot be used; the message is one line naming the file."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")


class NotAPatternError(PatternFileError):
    """A file with no numeric rows at all: some other file, not a damaged pattern."""


def read_pattern(path: str | Path, *, format: str | None = None, with_wavelength: bool = False):
    """Read a pattern file (see the module docstring for the formats).

    Args:
        path: the file.
        format: None tells the format from the content; 'columns', 'fxye', or a CrysFML mode
            ('gsas', 'd1a', '3t2', 'default' for FullProf's free format, 'xysigma', 'd20', 'hrpt', ...).
        with_wavelength: also return the wavelength stated in the file's header, or None.

    Returns:
        two_theta (n,) in degrees, strictly increasing; intensity (n,), finite; and the stated
        wavelength in Angstrom (or None) when ``with_wavelength``.

    Raises:
        PatternFileError: no numeric rows, wrong or inconsistent column counts, NaN or infinite
            values, non-increasing angles, angles outside (0, 180), too few points, or no signal.
    """
    path = Path(path)
    if not path.is_file():
        raise PatternFileError(path, "no such file")
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as error:
        raise PatternFileError(path, f"cannot be read ({error.strerror})") from None
    format = format or sniff_format(lines)
    if format == "columns":
        two_theta, intensity = _read_columns(path, lines)
    elif format == "fxye":
        two_theta, intensity = _read_fxye(path, lines)
    else:
        two_theta, intensity = _read_crysfml(path, format)
    check_pattern(two_theta, intensity, source=path)
    if not with_wavelength:
        return two_theta, intensity
    return two_theta, intensity, stated_wavelength(lines)


def stated_wavelength(lines: list[str]) -> float | None:
    """The wavelength (Angstrom) stated in the first header lines, or None: a number after a wavelength
    keyword (:data:`_WAVELENGTH`), else the K-alpha1 line of a named anode (:data:`TUBE_LINES`)."""
    header = [line for line in lines[:40] if not _NUMBER_ROW.match(line.strip() + " ")]
    for line in header:
        found = _WAVELENGTH.search(line)
        if found and 0.1 <= float(found.group(2)) <= 10:
            return float(found.group(2))
    for line in header:
        found = _ANODE.search(line)
        if found:
            return TUBE_LINES[found.group(2).capitalize()]
    return None


def sniff_format(lines: list[str]) -> str:
    """'columns', 'fxye', or the CrysFML mode of a file's lines ('gsas', 'd1a', 'default')."""
    head = lines[:8]
    bank = next((line.split() for line in lines[:20] if line.startswith("BANK")), None)
    if bank is not None:
        return "fxye" if "FXYE" in bank else "gsas"
    if len(head) >= 5:
        second, third = head[1].split(), head[2].split()
        if len(second) == 6 and len(third) == 1 and re.match(r"^\s*\d+\s+\d+\s+\d+\s+\d+", head[4]):
            return "d1a"  # FullProf INSTRM 6: title, step line, 2-theta start, monitors, (n, counts) pairs
    numeric = [line.split() for line in lines[:60] if _NUMBER_ROW.match(line.strip() + " ")]
    if len(numeric) > 2 and len(numeric[0]) == 3 and len(numeric[1]) > 3 and len({len(r) for r in numeric[1:-1]}) == 1:
        return "default"  # FullProf INSTRM 0: start, step, end, then rows of counts
    return "columns"


def _read_columns(path: Path, lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
    first = next((i for i, line in enumerate(lines) if _NUMBER_ROW.match(line.strip() + " ")), None)
    if first is not None:  # fast path: numpy's C parser from the first numeric line on; any irregularity
        head = lines[first]  # falls through to the line-by-line reader, which names the bad line
        delimiter = "," if "," in head else ";" if ";" in head else None
        try:
            data = np.loadtxt(lines[first:], ndmin=2, comments=("#", "!", "%"), delimiter=delimiter)
            if len(data) and data.shape[1] in (2, 3):
                return data[:, 0], data[:, 1]
        except ValueError:
            pass
    rows, widths = [], set()
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if _DECIMAL_COMMA.match(text):
            raise PatternFileError(path, f"line {number} uses decimal commas ({text[:40]!r}); "
                                   "write the numbers with decimal points")
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
        raise NotAPatternError(path, "not a pattern file: no numeric rows; expected columns of 2-theta and intensity")
    if len(widths) > 1:
        raise PatternFileError(path, f"rows have different numbers of columns: {sorted(widths)}")
    width = widths.pop()
    if width not in (2, 3):
        hint = ""
        if width in (4, 6) and all("," in line for line in lines if _NUMBER_ROW.match(line.strip() + " ")):
            hint = "; if the numbers use decimal commas (10,5), write them with decimal points"
        raise PatternFileError(path, f"expected 2 or 3 columns (2-theta, intensity[, sigma]), found {width}{hint}")
    data = np.asarray(rows)
    return data[:, 0], data[:, 1]


def _read_fxye(path: Path, lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """GSAS FXYE: after the BANK line, columns of 2-theta (centidegrees), intensity, sigma."""
    start = next(i for i, line in enumerate(lines) if line.startswith("BANK")) + 1
    body = [line for line in lines[start:] if line.strip() and not line.startswith("BANK")]
    two_theta, intensity = _read_columns(path, body)
    return two_theta / 100.0, intensity


# The helper process: reads "[path, mode]" lines, answers one JSON line each. Fortran writes to file
# descriptor 1, so the answers go through a copy of it and descriptor 1 is pointed at /dev/null.
_CRYSFML_HELPER = """
import json, os, sys
answers = os.fdopen(os.dup(1), "w")
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
from crysfml import cfml_diffpatt
for line in sys.stdin:
    path, mode = json.loads(line)
    try:
        pattern = cfml_diffpatt.load_pattern(path, mode=mode)
        n = int(pattern["npts"])
        answer = {"x": [float(v) for v in pattern["x"][:n]], "y": [float(v) for v in pattern["y"][:n]]}
    except Exception as error:
        answer = {"error": str(error)}
    answers.write(json.dumps(answer) + "\\n")
    answers.flush()
"""


class _CrysfmlHelper:
    """One long-lived helper process running CrysFML's reader; restarted after it dies."""

    process: subprocess.Popen | None = None

    @classmethod
    def read(cls, path: Path, mode: str) -> dict:
        if cls.process is None or cls.process.poll() is not None:
            cls.process = subprocess.Popen([sys.executable, "-c", _CRYSFML_HELPER], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            cls.process.stdin.write(json.dumps([str(path), mode]) + "\n")
            cls.process.stdin.flush()
            line = cls.process.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:  # the Fortran reader ended the helper
            cls.process.wait()
            cls.process = None
            return {"error": "the reader aborted"}
        return json.loads(line)


def _read_crysfml(path: Path, mode: str) -> tuple[np.ndarray, np.ndarray]:
    if importlib.util.find_spec("crysfml") is None:
        raise PatternFileError(path, f"looks like a {mode!r} instrument file, which needs the CrysFML reader: "
                               "pip install crysfml")
    answer = _CrysfmlHelper.read(path.resolve(), mode)
    if "error" in answer:
        message = " ".join(answer["error"].split()).replace("f_load_pattern: ", "")
        raise PatternFileError(path, f"CrysFML's {mode!r} reader: {message[:160]}; "
                               "not a readable file of that format")
    two_theta, intensity = np.asarray(answer["x"]), np.asarray(answer["y"])
    if mode == "gsas" and two_theta.max() > 180:  # CrysFML leaves GSAS ALT records in centidegrees
        two_theta = two_theta / 100.0
    keep = two_theta > 0  # FullProf files often start at 2-theta = 0, where no detector sits
    if not keep.any():
        raise PatternFileError(path, f"CrysFML's {mode!r} reader found no points")
    two_theta, intensity = two_theta[keep], intensity[keep]
    nonzero = np.flatnonzero(intensity)
    padded = len(intensity) - 1 - (nonzero[-1] if len(nonzero) else -1)
    if padded >= max(10, TRUNCATED_SHARE * len(intensity)):
        raise PatternFileError(path, f"the last {padded} of {len(intensity)} points are exactly zero: the file "
                               "looks truncated (CrysFML fills the points a file lacks with zeros)")
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
    if np.count_nonzero(intensity) < MIN_POINTS:
        raise PatternFileError(source, f"only {np.count_nonzero(intensity)} of {len(intensity)} points have a non-zero "
                               f"intensity; at least {MIN_POINTS} are needed")
    snr = peak_to_noise(intensity)
    if snr < MIN_PEAK_SNR:
        raise PatternFileError(source, f"no peak stands out of the noise: the strongest feature is {snr:.1f} noise s.d. "
                               f"above the median; at least {MIN_PEAK_SNR:g} are needed")


def peak_to_noise(intensity, window: int = 5) -> float:
    """The strongest feature's height above the median, in noise standard deviations, both after a moving
    average over ``window`` points: peaks wider than the window keep their height while the noise shrinks.

    The noise of one point is estimated from point-to-point differences (a robust s.d. by the median
    absolute deviation, divided by sqrt(2)), which a smooth background and peaks hardly change. A pattern
    without noise gives infinity."""
    intensity = np.asarray(intensity, dtype=float)
    steps = np.diff(intensity)
    sigma = 1.4826 * np.median(np.abs(steps - np.median(steps)))
    if sigma == 0:  # mostly equal neighbours (very low counts): fall back to the plain s.d. of the steps
        sigma = steps.std()
    smooth = np.convolve(intensity, np.ones(window) / window, mode="valid")
    height = smooth.max() - np.median(smooth)
    return float("inf") if sigma == 0 else float(height / (sigma / np.sqrt(2 * window)))


def to_d_spacing(two_theta, wavelength: float) -> np.ndarray:
    """d = lambda / (2 sin theta), in Angstrom."""
    return wavelength / (2 * np.sin(np.deg2rad(np.asarray(two_theta)) / 2))


def to_two_theta(d_spacing, wavelength: float) -> np.ndarray:
    """2-theta in degrees of a d-spacing at ``wavelength``; NaN where no reflection is possible."""
    ratio = wavelength / (2 * np.asarray(d_spacing, dtype=float))
    with np.errstate(invalid="ignore"):
        return np.where(ratio <= 1, 2 * np.rad2deg(np.arcsin(np.minimum(ratio, 1))), np.nan)


def resample(two_theta, intensity, grid, *, wavelength: float, grid_wavelength: float,
             source="pattern", min_coverage: float = MIN_COVERAGE) -> np.ndarray:
    """Put a measured pattern onto a model's 2-theta grid, converting wavelengths through d.

    Args:
        two_theta, intensity: (n,) the measurement, 2-theta in degrees at ``wavelength`` (Angstrom).
        grid: (m,) the model's 2-theta grid in degrees at ``grid_wavelength``.

    Returns:
        (m,) float32 intensity, zero where the measurement does not reach, scaled to a maximum of 1
        after subtracting its minimum.

    Raises:
        PatternFileError: if the measurement covers less than ``min_coverage`` of the grid's span.
    """
    two_theta, intensity, grid = (np.asarray(a, dtype=float) for a in (two_theta, intensity, grid))
    if wavelength <= 0 or grid_wavelength <= 0:
        raise ValueError("wavelengths must be positive (Angstrom)")
    moved = to_two_theta(to_d_spacing(two_theta, wavelength), grid_wavelength)
    keep = np.isfinite(moved)
    moved, intensity = moved[keep], intensity[keep]
    lo, hi = (max(moved.min(), grid[0]), min(moved.max(), grid[-1])) if len(moved) else (0, 0)
    coverage = max(hi - lo, 0) / (grid[-1] - grid[0])
    if coverage < min_coverage:
        measured = f"{two_theta[0]:.1f}-{two_theta[-1]:.1f} deg at {wavelength:g} A"
        raise PatternFileError(source, f"2-theta range {measured} covers {coverage:.0%} of the model's grid "
                               f"({grid[0]:.1f}-{grid[-1]:.1f} deg at {grid_wavelength:g} A); "
                               f"at least {min_coverage:.0%} is needed")
    intensity = intensity - intensity.min()
    out = np.interp(grid, moved, intensity, left=0.0, right=0.0)
    if out.max() <= MIN_SIGNAL * intensity.max():
        raise PatternFileError(source, f"no signal above the minimum within the model's grid "
                               f"({grid[0]:.1f}-{grid[-1]:.1f} deg at {grid_wavelength:g} A)")
    return (out / out.max()).astype(np.float32)
