"""How much the final answer's constants add on RRUFF dev, in-sample and cross-validated.

    .venv/bin/python benchmarks/final_answer.py                       # the shipped classifier
    .venv/bin/python benchmarks/final_answer.py --model other.pt --tag final_answer_other

``xtal-classify``'s final answer (:mod:`xtal_utils.identify`) re-ranks the model's extinction groups by
the groups of the nearest AMCSD entries in a square-root view of the patterns (the shortlist), and puts
the groups of a close linear match first. Its five constants (the view's sharpness, the exponent and
floor of its scores, the twin threshold and the match weight) were chosen on RRUFF dev, the only
measured set, so the score there flatters them. This script prints:

1. the final answer with the package's constants, beside the same answer without the shortlist
   (exponent 0: the final answer of earlier versions) and the parts alone, on all patterns and by
   close twin;
2. the best setting of a small grid around them, in-sample;
3. an estimate of the whole choice on patterns it did not see: 5-fold cross-validation, with 5
   random fold draws, in which the grid setting with the best top-5 on four folds (among those with a
   top-1 of at least 50% there) is scored on the fifth.

Results go to ``benchmarks/results/<tag>.json`` with their provenance.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from learning_curve import RESULTS, provenance  # noqa: E402
from stream_classifier import model_eg, rruff_inputs  # noqa: E402

GRID = {"sharpness": (20.0, 30.0, 50.0), "power": (0.0, 0.5, 1.0, 2.0), "floor": (1e-3, 1e-2),
        "threshold": (0.7, 0.75, 0.8), "weight": (0.5, 0.9)}


def hits(probabilities: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 hit, top-5 hit) per pattern."""
    rank = ((-probabilities).argsort(axis=1, kind="stable") == truth[:, None]).argmax(axis=1)
    return rank < 1, rank < 5


def cross_validated(table: dict, n: int, *, folds: int = 5, draws: int = 5, min_top1: float = 0.5) -> dict:
    """Top-1 and top-5 (percent) of the setting chosen on the other folds, scored on each fold."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(draws):
        fold = rng.permutation(n) % folds
        top1 = top5 = 0
        for k in range(folds):
            train = fold != k
            allowed = [key for key, (h1, _) in table.items() if h1[train].mean() >= min_top1] or list(table)
            chosen = max(allowed, key=lambda key: (table[key][1][train].mean(), table[key][0][train].mean()))
            top1 += table[chosen][0][~train].sum()
            top5 += table[chosen][1][~train].sum()
        out.append((100 * top1 / n, 100 * top5 / n))
    out = np.array(out)
    return {"top1": float(out[:, 0].mean()), "top5": float(out[:, 1].mean()),
            "top5_per_draw": out[:, 1].round(1).tolist()}


def main() -> None:
    from xtal_utils import classify, identify

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="classifier or ensemble file (default: the shipped one)")
    parser.add_argument("--tag", default="final_answer", help="results go to benchmarks/results/<tag>.json")
    args = parser.parse_args()

    rruff = rruff_inputs(threshold=identify.MATCH_THRESHOLD)
    truth = rruff["extinction_group"] - 1
    model = model_eg(classify.load_classifier(args.model, device="cpu"), rruff, use_prior=None)
    view, known = rruff["view"], rruff["known"]
    types = {s: view.extinction_group_scores(rruff["types_similarity"], sharpness=s) for s in GRID["sharpness"]}

    def final(sharpness, power, floor, threshold, weight):
        return identify.final_answers(model, rruff["match_eg"], rruff["best"], types[sharpness], threshold=threshold,
                                      weight=weight, power=power, floor=floor)[0]

    package = dict(sharpness=identify.SHORTLIST_SHARPNESS, power=identify.SHORTLIST_POWER,
                   floor=identify.SHORTLIST_FLOOR, threshold=identify.MATCH_THRESHOLD, weight=identify.MATCH_WEIGHT)
    answers = {"final answer": final(**package), "final answer without the shortlist": final(**{**package, "power": 0.0}),
               "model": model, "search-match (linear)": rruff["match_eg"],
               f"search-match ({identify.SHORTLIST_VIEW} view)": types[package["sharpness"]]}
    scores = {}
    for name, p in answers.items():
        h1, h5 = hits(p, truth)
        scores[name] = {subset: {"top1": 100 * h1[rows].mean(), "top5": 100 * h5[rows].mean(), "n": int(rows.sum())}
                        for subset, rows in (("all", np.ones(len(truth), bool)), ("close twin", known),
                                             ("no close twin", ~known))}
    table = {key: hits(final(*key), truth) for key in itertools.product(*GRID.values())}
    best = max(table, key=lambda key: (table[key][1].mean(), table[key][0].mean()))
    result = {"provenance": provenance(sys.argv), "model": str(args.model or "shipped"), "constants": package,
              "scores": scores, "grid": {k: list(v) for k, v in GRID.items()},
              "best_in_sample": {"setting": dict(zip(GRID, best)), "top1": 100 * table[best][0].mean(),
                                 "top5": 100 * table[best][1].mean()},
              "cross_validated": cross_validated(table, len(truth))}
    print(f"RRUFF dev, {len(truth)} patterns ({int(known.sum())} with a close twin), EG top-1 / top-5 (%):")
    for name, s in scores.items():
        print(f"  {name:40s} " + "   ".join(f"{k} {v['top1']:5.1f} / {v['top5']:5.1f}" for k, v in s.items()))
    b, c = result["best_in_sample"], result["cross_validated"]
    print(f"best grid setting in-sample: {b['setting']}: {b['top1']:.1f} / {b['top5']:.1f}")
    print(f"the choice cross-validated (5 folds, 5 draws): {c['top1']:.1f} / {c['top5']:.1f} (top-5 per draw {c['top5_per_draw']})")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(result, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
