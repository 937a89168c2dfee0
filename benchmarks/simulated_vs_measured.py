"""Classifiers on simulated AMCSD test structures against measured RRUFF patterns: where a gap opens.

    .venv/bin/python benchmarks/simulated_vs_measured.py models/xtal-classify-xray.pt data/cache/stream_candidate.pt

For each classifier file: extinction-group top-1 / top-5 on the de-duplicated AMCSD test split (grouped
split, seed 0: structures no classifier of this study trained on), simulated on RRUFF's grid (8,500
points, 5-90 degrees) clean and with the realism augmentations (``ps.REALISTIC``, seed 123),
each with and without the classifier's prior; then on the 454 measured RRUFF development patterns. A
classifier that wins on the simulated structures and loses on the measured patterns has a
simulation-to-measurement gap, not a lack of knowledge of minerals.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    from xtal_utils import classify, evaluate, experiments as ex, pattern_sets as ps
    from xtal_utils.diffraction import CU_KALPHA1, PowderSimulator
    from xtal_utils.paths import DATA

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+", help="classifier files")
    args = parser.parse_args()
    data = ps.amcsd_set()
    splits, _ = ex.real_splits(data, deduplicated=True, condition="deduplicated", seed=0,
                               valid=data.valid(ps.Grid(n_points=1024)))
    test = np.asarray(splits["test"])
    two_theta = np.linspace(5.0, 90.0, 8500)
    simulator = PowderSimulator(two_theta_range=(5.0, 90.0), n_points=len(two_theta), fwhm=0.1)
    rruff = np.load(DATA / "rruff_dev" / "rruff_dev.npz")
    sets = {"AMCSD test, clean": (two_theta, simulator.simulate(data.structures[test]), data.space_groups[test], CU_KALPHA1),
            "AMCSD test, augmented": (two_theta, simulator.simulate(data.structures[test], ps.REALISTIC, seed=123),
                                      data.space_groups[test], CU_KALPHA1),
            "RRUFF dev, measured": (rruff["two_theta"], rruff["intensity"].astype(np.float64),
                                    rruff["space_group"].astype(int), ps.RRUFF_WAVELENGTH)}
    print(f"{len(test)} AMCSD test structures, {len(rruff['space_group'])} RRUFF patterns; EG top-1 / top-5 (%)")
    print(f"{'classifier':34s} {'set':24s} {'no prior':>13s} {'with prior':>13s}")
    for path in args.models:
        classifier = classify.load_classifier(path, device="cpu")
        for name, (x, patterns, truth, wavelength) in sets.items():
            cells = []
            for use_prior in (False, True):
                p = classifier.probabilities(x, patterns, wavelength=wavelength, use_prior=use_prior, source=name)
                s = evaluate.score(p, truth, classifier.kind)
                cells.append(f"{100 * s['extinction_group_top1']:5.1f} / {100 * s['extinction_group_top5']:5.1f}")
            print(f"{str(path):34s} {name:24s} {cells[0]:>13s} {cells[1]:>13s}")


if __name__ == "__main__":
    main()
