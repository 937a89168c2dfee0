"""How noisy are the measured patterns, and how noisy are the training patterns? Deciles, side by side.

    .venv/bin/python benchmarks/noise_levels.py

The baseline noise of a pattern is the robust standard deviation (1.4826 x the median absolute
deviation) of its residual from a 9-point running median, relative to its strongest point. It is
measured on the grid a classifier sees: 2,048 points from 5 to 90 degrees, each pattern put there as
``Classifier.prepare`` puts a measured one (``patterns.resample``, minimum subtracted).

- **Measured:** the 454 RRUFF development patterns. Only the patterns are read, never their labels, so
  setting an augmentation range from these deciles does not tune it to accuracy.
- **Simulated:** 600 AMCSD structures (seed 0) with the realism augmentations
  (``ps.REALISTIC``), as the shipped classifiers were trained, and with Gaussian baseline
  noise added (``noise_level``, :data:`TRIED`): the range that gives the measured deciles, tried on the
  AMCSD member of notebook 08 (docs/learning.md: it did not help).

The deciles go to ``benchmarks/results/noise_levels.txt`` with their provenance.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
from scipy import ndimage
from xtal_utils.config import provenance
from xtal_utils.paths import BENCHMARK_RESULTS as RESULTS


QUANTILES = (10, 25, 50, 75, 90, 99)
TRIED = (0.0005, 0.04)  # noise_level range tried with the AMCSD member


def baseline_noise(patterns: np.ndarray) -> np.ndarray:
    """(n,) robust standard deviation of each row's residual from a 9-point running median, over its maximum."""
    patterns = np.atleast_2d(patterns)
    residual = patterns - ndimage.median_filter(patterns, size=(1, 9), mode="nearest")
    mad = np.median(np.abs(residual - np.median(residual, axis=1, keepdims=True)), axis=1)
    return 1.4826 * mad / patterns.max(axis=1)


def main() -> None:
    from xtal_utils import pattern_sets as ps
    from xtal_utils.paths import DATA
    from xtal_utils.patterns import resample

    grid = ps.Grid(n_points=2048)
    rruff = np.load(DATA / "rruff_dev" / "rruff_dev.npz")
    measured = np.stack([resample(rruff["two_theta"], np.clip(row, 0.0, None), grid.two_theta,
                                  wavelength=ps.RRUFF_WAVELENGTH, grid_wavelength=grid.wavelength, source="rruff_dev")
                         for row in rruff["intensity"].astype(np.float64)])
    measured = measured - measured.min(axis=1, keepdims=True)
    data = ps.amcsd_set()
    index = np.random.default_rng(0).choice(np.flatnonzero(data.valid(grid)), 600, replace=False)
    simulator = grid.simulator("cpu")
    rows = {"RRUFF dev, measured (454)": baseline_noise(measured)}
    for name, augmentation in (("AMCSD, REALISTIC", ps.REALISTIC),
                               (f"AMCSD, REALISTIC + noise_level {TRIED}", dataclasses.replace(ps.REALISTIC, noise_level=TRIED))):
        rows[f"{name} (600)"] = baseline_noise(np.asarray(simulator.simulate(data.structures[index], augmentation, seed=1)))
    lines = [f"# {provenance(sys.argv)}",
             "# baseline noise relative to the strongest point, percentiles " + ", ".join(map(str, QUANTILES)),
             f"{'patterns':52s} " + " ".join(f"{q:>7d}" for q in QUANTILES)]
    for name, values in rows.items():
        lines.append(f"{name:52s} " + " ".join(f"{v:7.4f}" for v in np.percentile(values, QUANTILES)))
    text = "\n".join(lines) + "\n"
    print(text, end="")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "noise_levels.txt").write_text(text)


if __name__ == "__main__":
    main()
