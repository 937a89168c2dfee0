"""Search-match: the nearest entries of a database of simulated patterns, the routine a crystallographer
runs first on an unknown powder.

A measured pattern and every database pattern are put on one 2-theta grid and prepared alike:

1. the background is removed by a morphological opening (a running minimum, then a running maximum,
   over ``background_window`` points), which follows a slowly varying baseline under the peaks;
2. intensities stay linear (``intensity='linear'``), or become square roots or logarithms, which
   lift weak peaks (and noise). Square roots weigh where the peaks are more than how strong they
   are: :mod:`xtal_utils.identify` uses that view (:meth:`Library.rescaled`) to find the structure
   types near a pattern that has no twin in the database;
3. each pattern is scaled to unit length, so that the similarity is a cosine.

A measured pattern that covers only part of the grid is compared over the window it covers: both
patterns are normalised over that one window, so that every similarity lies in [-1, 1] (in [0, 1], as
prepared patterns are not negative) and peaks the instrument never reached do not count against a match.

The measured pattern is also compared after small changes of its 2-theta scale, a lattice strain
(``strains``: d is multiplied by 1 + e; by default 0, +-0.3 and +-0.6 %) and a zero shift
(``zero_shifts``, degrees), and the best similarity over those variants counts: refined cells and
real samples differ by about that much. The database patterns have Gaussian peaks of 0.25 degrees,
wider than the simulations used for training, which tolerates small mismatches of peak position.

The database is AMCSD (larixite's copy), simulated once per setting with
:class:`xtal_utils.diffraction.PowderSimulator` (:func:`xtal_utils.pattern_sets.amcsd_set`); the
prepared library is cached in the user's cache directory (:func:`default_library`,
:data:`xtal_utils.paths.USER_CACHE`).

    library = default_library()
    library.search(two_theta, intensity, wavelength=1.5418)   # a DataFrame of the nearest entries
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage, signal

from xtal_utils import symmetry
from xtal_utils.config import atomic_path, cache_key, to_jsonable
from xtal_utils.crystals.databases import amcsd_minerals
from xtal_utils.diffraction import CU_KALPHA1, SIMULATOR_VERSION
from xtal_utils.paths import USER_CACHE
from xtal_utils.pattern_sets import Grid, amcsd_set
from xtal_utils.patterns import MIN_COVERAGE, check_pattern, resample, to_d_spacing, to_two_theta

MATCH_COLUMNS = ("rank", "entry_id", "mineral", "formula", "space_group", "extinction_group", "similarity")
PEAK_HEIGHT = 0.05  # share of a pattern's strongest peak that a maximum needs (as height and prominence) to count


@dataclass(frozen=True)
class SearchSettings:
    """How patterns are prepared and compared; the defaults were chosen on RRUFF dev (notebook 08)."""

    n_points: int = 2048  # grid from two_theta_min to two_theta_max
    two_theta_min: float = 5.0  # degrees
    two_theta_max: float = 90.0  # degrees
    wavelength: float = CU_KALPHA1  # Angstrom, of the database patterns
    radiation: str = "xray"  # of the database patterns: 'xray' or 'neutron'
    fwhm: float = 0.25  # degrees, Gaussian peaks of the database patterns
    background_window: int = 101  # grid points of the opening that estimates the background; 0 = none
    intensity: str = "linear"  # 'linear', 'sqrt' or 'log'
    zero_shifts: tuple[float, ...] = (0.0,)  # degrees 2-theta tried on the measured pattern
    strains: tuple[float, ...] = (-0.006, -0.003, 0.0, 0.003, 0.006)  # relative changes of d tried on the measured pattern
    min_coverage: float = MIN_COVERAGE  # share of the grid a measured pattern must cover

    @property
    def two_theta(self) -> np.ndarray:
        return np.linspace(self.two_theta_min, self.two_theta_max, self.n_points)


def settings_for(classifier, **changes) -> SearchSettings:
    """The default settings on a classifier's grid, wavelength and radiation."""
    return dataclasses.replace(SearchSettings(), n_points=classifier.n_points,
                               two_theta_min=classifier.two_theta_range[0],
                               two_theta_max=classifier.two_theta_range[1], wavelength=classifier.wavelength,
                               radiation=classifier.radiation, min_coverage=classifier.min_coverage, **changes)


def prepare(patterns: np.ndarray, settings: SearchSettings) -> np.ndarray:
    """Background removed, intensities scaled, rows of unit length: (n, n_points) float32.

    Rows with no signal left (all zero, or NaN) come back as zeros, so their similarity to anything is 0.
    """
    x = np.nan_to_num(np.asarray(patterns, dtype=np.float32), nan=0.0)
    x = np.atleast_2d(x)
    if settings.background_window:
        x = x - ndimage.grey_opening(x, size=(1, settings.background_window), mode="nearest")
    x = np.clip(x, 0.0, None)
    peak = x.max(axis=1, keepdims=True)
    x = x / np.where(peak > 0, peak, 1.0)
    if settings.intensity == "sqrt":
        x = np.sqrt(x)
    elif settings.intensity == "log":
        x = np.log1p(1000.0 * x)
    elif settings.intensity != "linear":
        raise ValueError(f"intensity must be 'linear', 'sqrt' or 'log', got {settings.intensity!r}")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def variants(two_theta, intensity, settings: SearchSettings, *, wavelength: float, source="pattern") -> np.ndarray:
    """(n_variants, n_points): the measured pattern on the settings' grid, once per zero shift and strain,
    NaN where the measurement does not reach (:meth:`Library.similarities` compares over the rest).

    A zero shift moves the measured 2-theta; a strain e multiplies the measured d by (1 + e). The
    intensity may have any baseline, negative included: it is measured from its minimum.
    """
    two_theta = np.asarray(two_theta, dtype=float)
    intensity = np.asarray(intensity, dtype=float)
    check_pattern(two_theta, intensity, source=source)
    d = to_d_spacing(two_theta, wavelength)
    grid = settings.two_theta
    rows = []
    for strain in settings.strains:
        moved = to_two_theta(d * (1 + strain), wavelength)
        keep = np.isfinite(moved)
        for shift in settings.zero_shifts:
            row = resample(moved[keep] + shift, intensity[keep], grid, wavelength=wavelength,
                           grid_wavelength=settings.wavelength, source=source, min_coverage=settings.min_coverage)
            on_grid = to_two_theta(to_d_spacing(moved[keep] + shift, wavelength), settings.wavelength)
            on_grid = on_grid[np.isfinite(on_grid)]  # a short d has no angle at a longer grid wavelength
            rows.append(np.where((grid >= on_grid.min()) & (grid <= on_grid.max()), row, np.nan))
    return np.stack(rows).astype(np.float32)


@dataclass
class Library:
    """Prepared database patterns and the table that names them.

    Attributes:
        patterns: (n, n_points) float32, prepared (:func:`prepare`).
        table: n rows with entry_id, mineral, formula, space_group, extinction_group.
        settings: how the patterns were simulated and prepared.
    """

    patterns: np.ndarray
    table: pd.DataFrame
    settings: SearchSettings
    _views: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.table)

    def rescaled(self, intensity: str) -> Library:
        """The same entries prepared with another ``intensity`` scale ('linear', 'sqrt' or 'log'), made
        from this library's linear patterns once and kept. Exact: a prepared linear pattern divided by
        its maximum is the background-free pattern scaled to a maximum of 1, which :func:`prepare` scales."""
        if intensity == self.settings.intensity:
            return self
        if self.settings.intensity != "linear":
            raise ValueError(f"only a linear library can be rescaled, this one is {self.settings.intensity!r}")
        if intensity not in self._views:
            settings = dataclasses.replace(self.settings, intensity=intensity)
            peak = self.patterns.max(axis=1, keepdims=True)
            unit = np.clip(self.patterns, 0.0, None) / np.where(peak > 0, peak, 1.0)
            self._views[intensity] = Library(prepare(unit, dataclasses.replace(settings, background_window=0)),
                                             self.table, settings)
        return self._views[intensity]

    def similarities(self, queries: np.ndarray) -> np.ndarray:
        """Cosine similarities (batch, n) of queries (batch, n_variants, n_points), the best over variants;
        each lies in [-1, 1].

        Queries are on the library's grid, not yet prepared, and NaN where nothing was measured
        (:func:`variants`). A query that covers only part of the grid is compared with the database
        patterns over that window alone: the query is prepared as if measured to its edges, and each
        database pattern is normalised over the same window, so that peaks the instrument never
        reached do not count against a match. A database pattern with no intensity in the window
        has similarity 0.
        """
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim == 2:
            queries = queries[:, None]
        batch, n_variants, n_points = queries.shape
        flat = queries.reshape(batch * n_variants, n_points)
        measured = np.isfinite(flat)
        if not measured.any(axis=1).all():
            raise ValueError("a query has no measured point on the library's grid")
        first = measured.argmax(axis=1)
        last = n_points - 1 - measured[:, ::-1].argmax(axis=1)
        prepared = prepare(_edge_filled(flat, first, last), self.settings)
        prepared[~measured] = 0.0
        prepared /= np.clip(np.linalg.norm(prepared, axis=1, keepdims=True), 1e-12, None)  # unit length in the window
        best = np.empty((batch, len(self)), dtype=np.float32)
        step = max(1, 512 // n_variants)  # queries per block: bounds memory, reads the library once per block
        for start in range(0, batch, step):
            rows = np.arange(start * n_variants, min(batch, start + step) * n_variants)
            block = prepared[rows] @ self.patterns.T  # (queries x variants, n)
            partial = (first[rows] > 0) | (last[rows] < n_points - 1)
            for i in np.flatnonzero(partial):
                norms = self._window_norms(first[rows[i]], last[rows[i]])
                block[i] = np.where(norms > 1e-6, block[i] / np.maximum(norms, 1e-6), 0.0)
            best[start: start + step] = block.reshape(-1, n_variants, len(self)).max(axis=1)
        return np.clip(best, -1.0, 1.0)

    def _window_norms(self, first: int, last: int) -> np.ndarray:
        """(n,) the length of every database pattern over grid points first..last (float64 sums, so that
        a short window's length is not lost to rounding)."""
        if getattr(self, "_cumulative", None) is None:
            squares = np.square(self.patterns, dtype=np.float64)
            self._cumulative = np.concatenate([np.zeros((len(self), 1)), np.cumsum(squares, axis=1)], axis=1)
        total = self._cumulative[:, last + 1] - self._cumulative[:, first]
        return np.sqrt(np.clip(total, 0.0, None)).astype(np.float32)

    def matched_peaks(self, queries: np.ndarray, entries) -> tuple[np.ndarray, np.ndarray]:
        """How much of each query the given entry explains, as peaks: (batch,) the query's peaks and
        (batch,) how many of them lie within one database peak width (``settings.fwhm``) of a peak of the
        entry, in the query's variant nearest that entry. A cosine alone cannot tell a twin from a
        pattern with few peaks that many entries happen to share; matched peaks can.

        Args:
            queries: (batch, n_variants, n_points) as for :meth:`similarities`.
            entries: (batch,) the library row to explain each query by (say, the nearest entry).
        """
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim == 2:
            queries = queries[:, None]
        tolerance = self.settings.fwhm / (self.settings.two_theta[1] - self.settings.two_theta[0])
        found, matched = np.zeros(len(queries), dtype=int), np.zeros(len(queries), dtype=int)
        for i, (query, entry) in enumerate(zip(queries, np.asarray(entries))):
            measured = np.isfinite(query[0])
            first, last = measured.argmax(), len(measured) - 1 - measured[::-1].argmax()
            rows = prepare(_edge_filled(query, np.full(len(query), first), np.full(len(query), last)), self.settings)
            rows[:, ~measured] = 0.0
            row = rows[np.argmax(rows @ self.patterns[entry])]
            query_peaks = peak_positions(row)
            entry_peaks = peak_positions(np.where(measured, self.patterns[entry], 0.0))
            found[i] = len(query_peaks)
            if len(query_peaks) and len(entry_peaks):
                distance = np.abs(query_peaks[:, None] - entry_peaks[None]).min(axis=1)
                matched[i] = int((distance <= tolerance).sum())
        return found, matched

    def matches(self, similarity: np.ndarray, top: int = 5) -> pd.DataFrame:
        """The ``top`` nearest entries for one row of :meth:`similarities`."""
        order = np.argsort(-similarity, kind="stable")[:top]
        rows = self.table.iloc[order].reset_index(drop=True)
        rows.insert(0, "rank", np.arange(1, len(order) + 1))
        rows["similarity"] = similarity[order].astype(float)
        return rows[list(MATCH_COLUMNS)]

    def search(self, two_theta, intensity, *, wavelength: float = CU_KALPHA1, top: int = 5,
               source="pattern") -> pd.DataFrame:
        """The ``top`` database entries nearest one measured pattern (columns :data:`MATCH_COLUMNS`)."""
        queries = variants(two_theta, intensity, self.settings, wavelength=wavelength, source=source)
        return self.matches(self.similarities(queries[None])[0], top)

    def extinction_group_scores(self, similarity: np.ndarray, sharpness: float = 50.0) -> np.ndarray:
        """(batch, 99) a ranking of extinction groups from similarities (batch, n): each group scores
        ``softmax(sharpness * similarity)`` summed over its entries, a vote of the nearest entries
        weighted by how near they are. A group with several entries almost as near as the nearest
        one can outrank the nearest entry's group."""
        similarity = np.atleast_2d(similarity).astype(np.float64)
        weights = np.exp(sharpness * (similarity - similarity.max(axis=1, keepdims=True)))
        labels = self.table["extinction_group"].to_numpy() - 1
        out = np.zeros((symmetry.n_classes("extinction_group"), len(similarity)))
        np.add.at(out, labels, weights.T)  # each entry's weight onto its group, all patterns at once
        out = out.T
        return out / out.sum(axis=1, keepdims=True)


def peak_positions(pattern: np.ndarray, height: float = PEAK_HEIGHT) -> np.ndarray:
    """Grid indices of the peaks of one prepared pattern: local maxima whose height and prominence are at
    least ``height`` times the strongest."""
    pattern = np.nan_to_num(np.asarray(pattern, dtype=np.float64))
    top = pattern.max(initial=0.0)
    if top <= 0:
        return np.empty(0, dtype=int)
    return signal.find_peaks(pattern, height=height * top, prominence=height * top)[0]


def _edge_filled(rows: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Rows with the points outside first..last set to the nearest measured value, so that the
    background is estimated at a window's edge as at the grid's."""
    out = rows.copy()
    for i, (lo, hi) in enumerate(zip(first, last)):
        out[i, :lo], out[i, hi + 1:] = out[i, lo], out[i, hi]
    return np.nan_to_num(out, nan=0.0)


def amcsd_library(settings: SearchSettings | None = None, *, limit: int | None = None,
                  progress: bool = True) -> Library:
    """AMCSD's simulated patterns prepared for search-match (simulated once per setting, then cached).

    Entries whose pattern cannot be simulated on the grid are left out.
    """
    settings = settings or SearchSettings()
    grid = Grid(n_points=settings.n_points, two_theta_min=settings.two_theta_min,
                two_theta_max=settings.two_theta_max, fwhm=settings.fwhm, wavelength=settings.wavelength,
                radiation=settings.radiation)
    data = amcsd_set(limit)
    valid = data.valid(grid)
    patterns = np.asarray(data.patterns(grid, progress=progress))[valid]
    table = data.table.loc[valid, ["entry_id", "formula", "space_group"]].reset_index(drop=True)
    names = amcsd_minerals()
    table.insert(1, "mineral", table["entry_id"].map(names).fillna("").replace("<missing>", ""))
    table["extinction_group"] = symmetry.extinction_groups(table["space_group"].to_numpy())
    return Library(prepare(patterns, settings), table, settings)


LIBRARY_FORMAT = "xtal-search-library/1"


def save_library(library: Library, path) -> Path:
    """Write a library to one ``.npz`` file (patterns as float32: in float16 the weak peaks that a
    square-root view lifts lose their precision), atomically."""
    path = Path(path)
    arrays = {name: np.asarray(library.table[name].astype(str).tolist(), dtype=str)
              for name in ("entry_id", "mineral", "formula")}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would append '.npz'
        np.savez(f, format=LIBRARY_FORMAT, settings=json.dumps(to_jsonable(library.settings)),
                 patterns=library.patterns.astype(np.float32),
                 space_group=library.table["space_group"].to_numpy(dtype=np.int16), **arrays)
    return path


def load_library(path) -> Library:
    """Read a library written by :func:`save_library`.

    Raises:
        FileNotFoundError: no such file; ValueError: not a library file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such search-match library")
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["format"]) != LIBRARY_FORMAT:
                raise ValueError(f"{path}: not a {LIBRARY_FORMAT} file (format {str(f['format'])!r})")
            raw = json.loads(str(f["settings"]))
            settings = SearchSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
            space_groups = f["space_group"].astype(int)
            table = pd.DataFrame({"entry_id": f["entry_id"], "mineral": f["mineral"], "formula": f["formula"],
                                  "space_group": space_groups,
                                  "extinction_group": symmetry.extinction_groups(space_groups)})
            patterns = f["patterns"].astype(np.float32)
    except (KeyError, OSError, ValueError, TypeError) as error:
        if isinstance(error, ValueError) and str(error).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a search-match library ({type(error).__name__})") from None
    return Library(patterns, table, settings)


def library_path(settings: SearchSettings) -> Path:
    """Where :func:`default_library` keeps AMCSD's library for ``settings``: the user's cache directory,
    one file per grid, wavelength, radiation, peak width and intensity scale."""
    key = {k: v for k, v in to_jsonable(settings).items() if k not in ("zero_shifts", "strains", "min_coverage")}
    key = {"settings": key, "simulator": SIMULATOR_VERSION, "larixite": version("larixite"), "stored": "float32"}
    return USER_CACHE / "search_match" / f"amcsd-{cache_key(key)}.npz"


def default_library(settings: SearchSettings | None = None, *, progress: bool = True) -> Library:
    """AMCSD's library for ``settings`` (defaults: :class:`SearchSettings`), read from the user's cache
    directory (:func:`library_path`) and built there on first use: a few minutes, as AMCSD is parsed and
    simulated, with progress bars when ``progress``."""
    settings = settings or SearchSettings()
    path = library_path(settings)
    if path.is_file():
        library = load_library(path)
        return dataclasses.replace(library, settings=settings)  # tolerances are applied at search time
    if progress:
        print(f"building the search-match library for {settings.radiation} at {settings.wavelength:g} A "
              f"(AMCSD parsed and simulated once, a few minutes) in {path} ...", file=sys.stderr)
    library = amcsd_library(settings, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_library(library, path)
    return library
