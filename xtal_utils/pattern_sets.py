"""Pattern sets: the grids patterns are simulated on, crystal sets with their cached patterns, and the
augmentation presets that make simulated patterns look measured.

- :class:`Grid` fixes radiation, 2-theta grid and peak width;
- :func:`amcsd_set` and :func:`balanced_set` give a :class:`CrystalSet` (structure arrays, true space
  groups, and the key that identifies them);
- :meth:`CrystalSet.patterns` simulates every crystal once per :class:`Grid` and caches the result in
  ``data/cache/patterns/<key>/``; a crystal the simulator cannot handle becomes a NaN row and is counted.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from xtal_utils import crystals
from xtal_utils.config import atomic_path, cache_dir, cache_key, default_device, write_json_atomic
from xtal_utils.diffraction import CU_KALPHA1, SIMULATOR_VERSION, Augmentation, PowderSimulator
from xtal_utils.structures import StructureBatch

SIMULATE_CHUNK = 512  # structures per simulate() call while filling a pattern cache
PATTERN_CACHE_BYTES = 8e9  # larger pattern sets (paper scale) are simulated on the fly instead of stored

# What measured laboratory patterns show and clean simulations lack (notebook 08): broader and varied
# peaks, a small zero error, strong texture, a weak residual background (published patterns are often
# background-subtracted) and counting noise. ``noise_level`` stays off (docs/learning.md).
REALISTIC = Augmentation(
    fwhm_scale=(0.7, 2.0), crystallite_size=(30.0, 300.0), strain=0.003, zero_shift=0.08,
    march_dollase=(0.5, 1.5), background=0.1, poisson_counts=(100.0, 20000.0), intensity_scale=None)
# Constant-wavelength neutron instruments: the same effects, on a wide 2-theta grid of which a measured
# pattern covers only part once moved there through d (DyAG on G4.1 at 2.43 A fills about a third).
NEUTRON_REALISTIC = dataclasses.replace(REALISTIC, coverage=(0.25, 1.0))
NEUTRON_MIN_COVERAGE = 0.2  # share of the neutron grid a measured pattern must cover


def augmentation_key(augmentation: Augmentation) -> dict:
    """The augmentation as cache-key data. Options added to :class:`Augmentation` later are left out
    while they are off, so that the models cached before them stay valid."""
    key = dataclasses.asdict(augmentation)
    for option in ("coverage", "noise_level", "cell_strain"):
        if not key.get(option):
            key.pop(option, None)
    return key
RRUFF_WAVELENGTH = 1.5418  # Angstrom, Cu K-alpha as recorded in data/rruff_dev/SOURCE.md


@dataclass(frozen=True)
class Grid:
    """How a set of patterns is simulated: radiation, 2-theta grid and peak width."""

    n_points: int = 2048
    two_theta_min: float = 5.0  # degrees
    two_theta_max: float = 90.0  # degrees
    fwhm: float = 0.1  # degrees, Gaussian
    radiation: str = "xray"
    wavelength: float = CU_KALPHA1  # Angstrom

    def simulator(self, device=None) -> PowderSimulator:
        return PowderSimulator(radiation=self.radiation, wavelength=self.wavelength,
                               two_theta_range=(self.two_theta_min, self.two_theta_max),
                               n_points=self.n_points, fwhm=self.fwhm, device=default_device(device))

    @property
    def two_theta(self) -> np.ndarray:
        return np.linspace(self.two_theta_min, self.two_theta_max, self.n_points)


def save_npy_atomic(path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` (.npy) through a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.save would append '.npy' to a name
        np.save(f, array)


def index_digest(index) -> str:
    """A short sha256 of an index array: names a subset of a crystal set in cache keys."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(index, dtype=np.int64)).tobytes()).hexdigest()[:16]


@dataclass
class CrystalSet:
    """Crystals with their labels, and the key that identifies them in every cache.

    Attributes:
        name: a short label for tables ('AMCSD', 'balanced').
        key: a JSON-able description precise enough to tell two sets apart (hashed into cache keys).
        structures: the structure arrays, n crystals.
        space_groups: (n,) true space groups.
        table: the database table aligned with ``structures`` (real databases only).
    """

    name: str
    key: dict
    structures: StructureBatch
    space_groups: np.ndarray
    table: pd.DataFrame | None = None
    _patterns: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.space_groups)

    def stored(self, grid: Grid) -> bool:
        """Whether the patterns on ``grid`` fit the pattern cache (else they are simulated when needed)."""
        return len(self) * grid.n_points * 4 <= PATTERN_CACHE_BYTES

    def patterns(self, grid: Grid, *, progress: bool = True) -> np.ndarray:
        """(n, n_points) clean simulated patterns, NaN rows for crystals that failed (cached)."""
        if not self.stored(grid):
            raise MemoryError(f"{self.name}: {len(self)} patterns of {grid.n_points} points exceed "
                              f"PATTERN_CACHE_BYTES; use source(), which simulates them on the fly")
        if grid in self._patterns:
            return self._patterns[grid]
        folder = cache_dir("patterns", {"crystals": self.key, "grid": dataclasses.asdict(grid),
                                        "simulator": SIMULATOR_VERSION})
        path = folder / "patterns.npy"
        if not path.exists():
            simulator = grid.simulator()
            out = np.full((len(self), grid.n_points), np.nan, dtype=np.float32)
            failures: dict[str, int] = {}
            starts = range(0, len(self), SIMULATE_CHUNK)
            for start in tqdm(starts, desc=f"simulating {self.name}", disable=not progress, leave=False):
                rows = np.arange(start, min(start + SIMULATE_CHUNK, len(self)))
                try:
                    out[rows] = simulator.simulate(self.structures[rows])
                except ValueError:  # one bad crystal: do the chunk one by one and count the bad ones
                    for i in rows:
                        try:
                            out[i] = simulator.simulate(self.structures[np.array([i])])[0]
                        except ValueError as error:
                            reason = str(error).split(":")[-1].strip()[:80]
                            failures[reason] = failures.get(reason, 0) + 1
            save_npy_atomic(path, out)
            write_json_atomic(folder / "failures.json", failures)
        self._patterns[grid] = np.load(path, mmap_mode="r")
        return self._patterns[grid]

    def valid(self, grid: Grid) -> np.ndarray:
        """(n,) bool: crystals whose pattern could be simulated on ``grid`` (all, for on-the-fly sets)."""
        if not self.stored(grid):
            return np.ones(len(self), dtype=bool)
        return ~np.isnan(self.patterns(grid)[:, 0])


def amcsd_set(limit: int | None = None) -> CrystalSet:
    """Every AMCSD entry kept by :func:`xtal_utils.crystals.load_amcsd`, in table order."""
    table = crystals.load_amcsd(limit=limit, structures=False)
    config = crystals.databases.amcsd_config(limit)
    batch = StructureBatch.load(cache_dir("amcsd", config) / "structures.h5")
    if len(batch) != len(table):
        raise RuntimeError(f"the AMCSD cache {cache_dir('amcsd', config)} is inconsistent; delete it")
    return CrystalSet("AMCSD", {"amcsd": cache_key(config)}, batch, table["space_group"].to_numpy(), table)


def balanced_set(n_per_group: int, seed: int, *, workers: int | None = None) -> CrystalSet:
    """Random crystals, ``n_per_group`` per extinction group, generated once and then read from cache."""
    config = crystals.RandomCrystalConfig(n_per_group=n_per_group, balance="extinction_group", seed=seed)
    crystals.generate(config, workers=workers)
    batch, slots = crystals.load_generated(config)
    return CrystalSet("balanced", {"random_crystals": cache_key(dataclasses.asdict(config))}, batch,
                      slots[:, 0].copy())


def augmented_patterns(data: CrystalSet, grid: Grid, index, augmentation: Augmentation, *, seed: int) -> np.ndarray:
    """A fixed augmented draw of ``data[index]`` (e.g. a validation set for augmented training), cached."""
    index = np.asarray(index)
    folder = cache_dir("patterns", {"crystals": data.key, "grid": dataclasses.asdict(grid), "index": index_digest(index),
                                    "simulator": SIMULATOR_VERSION,
                                    "augmentation": augmentation_key(augmentation), "seed": seed})
    path = folder / "patterns.npy"
    if not path.exists():
        save_npy_atomic(path, grid.simulator().simulate(data.structures[index], augmentation, seed=seed))
    return np.load(path)
