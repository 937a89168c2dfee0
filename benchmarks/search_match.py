"""Search-match settings on RRUFF dev: EG top-1 and top-5 of the nearest AMCSD entries, one setting at a time.

    .venv/bin/python benchmarks/search_match.py            # the sweep; output in benchmarks/results/search_match.txt

Each line changes one setting of :class:`xtal_utils.search_match.SearchSettings` from the defaults
(peak width of the database patterns, background window, intensity scale, zero-shift and strain
tolerance). The answer for a pattern is the extinction-group ranking of
:meth:`Library.extinction_group_scores` (the nearest entry's group first). The defaults in the package
come from this sweep, so a score at the defaults is tuned on these same patterns (a few settings only).
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np
from xtal_utils.config import provenance
from xtal_utils.paths import BENCHMARK_RESULTS as RESULTS




def score(library, measured, two_theta, space_groups, wavelength) -> dict:
    from xtal_utils import evaluate
    from xtal_utils.search_match import variants

    queries = np.stack([variants(two_theta, row, library.settings, wavelength=wavelength, source="rruff_dev")
                        for row in measured])
    similarity = library.similarities(queries)
    p = library.extinction_group_scores(similarity)
    s = evaluate.score(p, space_groups, "extinction_group")
    return {"top1": 100 * s["extinction_group_top1"], "top5": 100 * s["extinction_group_top5"],
            "best": similarity.max(axis=1), "correct": p.argmax(axis=1) + 1}


def main() -> None:
    from xtal_utils import pattern_sets as ps, symmetry
    from xtal_utils.paths import DATA
    from xtal_utils.search_match import SearchSettings, amcsd_library

    rruff = np.load(DATA / "rruff_dev" / "rruff_dev.npz")
    measured, two_theta = rruff["intensity"].astype(np.float64), rruff["two_theta"]
    space_groups = rruff["space_group"].astype(int)
    base = SearchSettings()
    sweep = [("defaults", {})]
    sweep += [(f"fwhm {w}", {"fwhm": w}) for w in (0.1, 0.15, 0.25, 0.4) if w != base.fwhm]
    sweep += [(f"background window {b}", {"background_window": b}) for b in (0, 51, 201) if b != base.background_window]
    sweep += [(f"intensity {i}", {"intensity": i}) for i in ("linear", "sqrt", "log") if i != base.intensity]
    sweep += [("no strain tolerance", {"strains": (0.0,)}),
              ("strain +-0.5 %", {"strains": (-0.005, 0.0, 0.005)}),
              ("zero shift +-0.05, +-0.1 deg", {"zero_shifts": (-0.1, -0.05, 0.0, 0.05, 0.1)}),
              ("fwhm 0.15, no strain tolerance", {"fwhm": 0.15, "strains": (0.0,)})]
    lines = [f"# {provenance(sys.argv)}", f"# RRUFF dev: {len(measured)} measured patterns; database: AMCSD simulated",
             f"# defaults: {dataclasses.asdict(base)}", f"{'setting':32s} {'EG top-1':>9s} {'EG top-5':>9s} {'seconds':>8s}"]
    print("\n".join(lines), flush=True)
    for name, change in sweep:
        settings = dataclasses.replace(base, **change)
        t0 = time.perf_counter()
        library = amcsd_library(settings)
        out = score(library, measured, two_theta, space_groups, ps.RRUFF_WAVELENGTH)
        line = f"{name:32s} {out['top1']:9.1f} {out['top5']:9.1f} {time.perf_counter() - t0:8.1f}"
        lines.append(line)
        print(line, flush=True)
        if name == "defaults":
            eg = symmetry.extinction_groups(space_groups)
            for threshold in (0.5, 0.6, 0.7, 0.8, 0.9):
                close = out["best"] >= threshold
                hits = out["correct"] == eg
                line = (f"#   best similarity >= {threshold}: {close.sum():3d} patterns, top-1 {100 * hits[close].mean():.1f}; "
                        f"< {threshold}: {(~close).sum():3d}, top-1 {100 * hits[~close].mean():.1f}")
                lines.append(line)
                print(line, flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search_match.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
