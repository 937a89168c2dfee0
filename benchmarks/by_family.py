"""Which crystal families does the shipped classifier miss on measured patterns, and does it miss them
on simulated ones too?

    .venv/bin/python benchmarks/by_family.py                      # the shipped ensemble
    .venv/bin/python benchmarks/by_family.py --model other.pt

For each crystal family, on the 454 RRUFF development patterns and on AMCSD's de-duplicated test split
(grouped split, seed 0: structures neither member trained on) simulated on RRUFF's grid with the realism
augmentations (``ps.REALISTIC``, seed 123):

- the share of the patterns in that family;
- the probability the classifier puts on the family (summed over its extinction groups), averaged over
  the family's own patterns, and over all patterns (to set beside the share);
- extinction-group top-5 on the family's patterns; for RRUFF also split by close AMCSD twin
  (search-match similarity >= 0.7), and the final answer of ``xtal-classify`` there.

A family that gets far less probability on measured patterns than on simulated ones is a gap between
simulation and measurement, not something the classifier never learned. The family shares of the
classifier's training database (AMCSD's de-duplicated training split, which is larixite's trimmed copy:
at most 9 sites in the asymmetric unit) are printed beside RRUFF's.

Last, an **oracle** that no shipped model may use: every family's probability multiplied by
(RRUFF dev's share / the training split's share) ** w, which needs the measured set's own labels. It
bounds what any re-weighting of the families (a better class prior) could add to the final answer; it
replaces the final answer's own family shift (estimated without labels), which the other columns include.

Output goes to ``benchmarks/results/by_family.txt`` (``--tag`` names another) with its provenance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from xtal_utils.config import provenance
from xtal_utils.paths import BENCHMARK_RESULTS as RESULTS
from xtal_utils.rruff import final_answer, model_eg, rruff_inputs



def top5(p: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(n,) whether the true extinction group (0-based) is among the five most probable."""
    return (p > p[np.arange(len(p)), truth][:, None]).sum(axis=1) < 5


def main() -> None:
    from xtal_utils import classify, evaluate, experiments as ex, pattern_sets as ps, symmetry
    from xtal_utils.diffraction import CU_KALPHA1, PowderSimulator

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="classifier or ensemble file (default: the shipped one)")
    parser.add_argument("--tag", default="by_family", help="output goes to benchmarks/results/<tag>.txt")
    args = parser.parse_args()
    classifier = classify.load_classifier(args.model, device="cpu")
    eg_family = np.array([symmetry.crystal_family(int(m[0])) for m in symmetry.extinction_table()["space_groups"]])

    rruff = rruff_inputs()
    measured = model_eg(classifier, rruff, use_prior=None)
    final = final_answer(measured, rruff)  # cross-validated, as notebook 08 scores it
    data = ps.amcsd_set()
    splits, _ = ex.real_splits(data, deduplicated=True, condition="deduplicated", seed=0,
                               valid=data.valid(ps.Grid(n_points=1024)))
    test = np.asarray(splits["test"])
    simulator = PowderSimulator(two_theta_range=(5.0, 90.0), n_points=len(rruff["two_theta"]), fwhm=0.1, device="cpu")
    patterns = simulator.simulate(data.structures[test], ps.REALISTIC, seed=123)
    p = classifier.probabilities(rruff["two_theta"], patterns, wavelength=CU_KALPHA1, source="AMCSD test")
    simulated = symmetry.collapse_to_extinction_groups(p) if p.shape[1] == symmetry.N_SPACE_GROUPS else p

    sets = {"RRUFF dev, measured": (measured, rruff["extinction_group"] - 1),
            "AMCSD test, simulated": (simulated, symmetry.extinction_groups(data.space_groups[test]) - 1)}
    lines = [f"# {provenance(sys.argv)}", f"# classifier: {args.model or 'the shipped one'}",
             "# share: of the set's patterns; p(own): mean probability on the family over its own patterns;",
             "# p(all): mean probability on the family over all patterns; top-5 in extinction groups (%)"]
    header = f"{'family':13s} {'set':22s} {'n':>4s} {'share':>6s} {'p(own)':>7s} {'p(all)':>7s} {'top-5':>6s}"
    header += f" {'top-5 twin':>11s} {'top-5 new':>10s} {'final twin':>11s} {'final new':>10s}"
    lines.append(header)
    for family in evaluate.FAMILIES:
        columns = eg_family == family
        for name, (probabilities, truth) in sets.items():
            rows = eg_family[truth] == family
            if not rows.any():
                lines.append(f"{family:13s} {name:22s} {0:4d}")
                continue
            hit = top5(probabilities, truth)
            line = (f"{family:13s} {name:22s} {rows.sum():4d} {100 * rows.mean():6.1f} "
                    f"{100 * probabilities[rows][:, columns].sum(axis=1).mean():7.1f} "
                    f"{100 * probabilities[:, columns].sum(axis=1).mean():7.1f} {100 * hit[rows].mean():6.1f}")
            if name.startswith("RRUFF"):
                final_hit = top5(final, truth)
                cells = []
                for hits in (hit, final_hit):
                    for subset in (rruff["known"], ~rruff["known"]):
                        chosen = rows & subset
                        cells.append(f"{100 * hits[chosen].mean():.1f} ({chosen.sum()})" if chosen.any() else "-")
                line += " " + " ".join(f"{c:>11s}" if i % 2 == 0 else f"{c:>10s}" for i, c in enumerate(cells))
            lines.append(line)
    train_family = eg_family[symmetry.extinction_groups(data.space_groups[np.asarray(splits["train"])]) - 1]
    truth = rruff["extinction_group"] - 1
    rruff_family = eg_family[truth]
    lines.append("")
    lines.append(f"{'family':13s} {'training split %':>17s} {'RRUFF dev %':>12s} {'RRUFF dev without a close twin':>31s}")
    for family in evaluate.FAMILIES:
        rows = rruff_family == family
        lines.append(f"{family:13s} {100 * (train_family == family).mean():17.1f} {100 * rows.mean():12.1f} "
                     f"{100 * (rows & ~rruff['known']).sum() / max(rows.sum(), 1):30.1f}%")
    lines.append("")
    lines.append("oracle: family probabilities times (RRUFF share / training share) ** w; EG top-1 / top-5 (%)")
    ratio = {f: max((rruff_family == f).mean(), 1 / len(truth)) / max((train_family == f).mean(), 1e-3)
             for f in evaluate.FAMILIES}
    for w in (0.0, 0.5, 1.0):
        factor = np.array([ratio[f] ** w for f in eg_family])
        model = measured * factor
        model /= model.sum(axis=1, keepdims=True)
        answer = final_answer(model, rruff, family_shift=False)  # no family shift: the oracle is one
        cells = []
        for p_ in (model, answer):
            for subset in (np.ones(len(truth), bool), ~rruff["known"]):
                top1 = 100 * (p_[subset].argmax(axis=1) == truth[subset]).mean()
                cells.append(f"{top1:5.1f} / {100 * top5(p_[subset], truth[subset]).mean():5.1f}")
        lines.append(f"w = {w:3.1f}: model {cells[0]} (without a close twin {cells[1]}); "
                     f"final answer {cells[2]} (without a close twin {cells[3]})")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.tag}.txt").write_text(text)


if __name__ == "__main__":
    main()
