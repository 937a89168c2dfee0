"""The final answer of ``xtal-classify`` on RRUFF dev, cross-validated: accuracy and calibration.

    .venv/bin/python benchmarks/final_answer.py                       # the shipped classifier
    .venv/bin/python benchmarks/final_answer.py --model other.pt --tag final_answer_other

The final answer (:mod:`xtal_utils.fusion`) is a conditional logit over the 99 extinction groups, fitted by
maximum likelihood on the RRUFF dev patterns, the only labelled measured set; so it is scored here only on
patterns that its weights did not see: for each of ``--draws`` random 5-fold splits, every pattern is
answered by a fusion fitted on the other four folds (the family shares estimated, without labels, on those
folds too). Printed and written to ``benchmarks/results/<tag>.json`` with their provenance, for the final
answer by default and with the mineral prior (``--mineral-prior``), for the model alone and for search-match:

- EG top-1 and top-5 on all patterns, on those with a twin and on those without one (mean over draws);
- the expected calibration error (15 bins) on the same subsets, beside the ECE that a perfectly calibrated
  answer with the same stated probabilities shows by chance (``evaluate.ece_noise_floor``);
- the default weights fitted on all patterns (what notebook 08 ships);
- ``xtal-classify`` itself on the 454 patterns written as files, default and ``--mineral-prior``: in-sample,
  since the shipped weights were fitted on them; a check that the command answers as the fitted fusion.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from xtal_utils import classify, evaluate, fusion, identify
from xtal_utils.config import provenance
from xtal_utils.identify import main as command
from xtal_utils.pattern_sets import RRUFF_WAVELENGTH
from xtal_utils.paths import BENCHMARK_RESULTS as RESULTS
from xtal_utils.rruff import final_answer_draws, model_eg, rruff_inputs


def scores(p: np.ndarray, truth: np.ndarray, rows: np.ndarray) -> dict:
    """Top-1, top-5 (percent), ECE and its chance level for a calibrated answer, on ``rows``."""
    rank = ((-p[rows]).argsort(axis=1, kind="stable") == truth[rows, None] - 1).argmax(axis=1)
    floor_mean, floor_95 = evaluate.ece_noise_floor(p[rows].max(axis=1))
    return {"n": int(rows.sum()), "top1": 100 * float((rank < 1).mean()), "top5": 100 * float((rank < 5).mean()),
            "mean_confidence": float(p[rows].max(axis=1).mean()),
            "ece": evaluate.expected_calibration_error(p[rows], truth[rows]),
            "ece_calibrated_mean": floor_mean, "ece_calibrated_95": floor_95}


def command_scores(rruff: dict, model: Path | None, extra: list[str]) -> dict:
    """EG top-1 and top-5 (percent) of ``xtal-classify`` itself on the RRUFF dev patterns written as .xy
    files, in one process, at RRUFF's wavelength: the shipped weights were fitted on these same patterns,
    so this is in-sample, and checks that the command gives what the fitted fusion gives."""
    with tempfile.TemporaryDirectory() as folder:
        for i, row in enumerate(rruff["measured"]):
            np.savetxt(Path(folder) / f"rruff_{i:03d}.xy", np.column_stack([rruff["two_theta"], row]), fmt="%.4f")
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            command([folder, "--json", "--top", "5", "--wavelength", str(RRUFF_WAVELENGTH), *extra,
                     *(["--model", str(model)] if model else [])])
    answers = sorted((json.loads(line) for line in out.getvalue().splitlines() if line.strip()),
                     key=lambda a: a["file"])
    truth = rruff["extinction_group"]
    rank = np.array([next((k for k, g in enumerate(a["final"]) if g["label"] == t), 99) for a, t in zip(answers, truth)])
    return {"n": len(answers), "top1": 100 * float((rank < 1).mean()), "top5": 100 * float((rank < 5).mean()),
            "arguments": ["--wavelength", str(RRUFF_WAVELENGTH), *extra]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="classifier or ensemble file (default: the shipped one)")
    parser.add_argument("--draws", type=int, default=5, help="random 5-fold splits (default: 5)")
    parser.add_argument("--tag", default="final_answer", help="results go to benchmarks/results/<tag>.json")
    args = parser.parse_args()

    rruff = rruff_inputs()
    truth, known = rruff["extinction_group"], rruff["known"]
    model = model_eg(classify.load_classifier(args.model, device="cpu"), rruff, use_prior=None)
    variants = {
        "final answer (default)": dict(),
        "final answer with the mineral prior": dict(family_shift=True),
    }
    subsets = {"all": np.ones(len(truth), bool), "twin": known, "no twin": ~known}
    result = {"provenance": provenance(sys.argv), "model": str(args.model or "shipped"), "draws": args.draws,
              "n": len(truth), "n_twin": int(known.sum()),
              "twin_rule": rruff["twin_rule"], "scores": {}}
    for name, options in variants.items():
        draws = final_answer_draws(model, rruff, draws=args.draws, **options)
        result["scores"][name] = {subset: {key: float(np.mean([scores(d, truth, rows)[key] for d in draws]))
                                           for key in scores(draws[0], truth, rows)}
                                  for subset, rows in subsets.items()}
    result["scores"]["model alone"] = {subset: scores(model, truth, rows) for subset, rows in subsets.items()}
    result["scores"]["search-match"] = {subset: scores(rruff["match_eg"], truth, rows) for subset, rows in subsets.items()}
    shares = evaluate.estimate_family_shares(model, rruff["training_family_shares"])
    values = fusion.features(model, rruff["types_eg"], rruff["match_eg"],
                             identify.family_weights(shares, rruff["training_family_shares"]))
    fitted = fusion.fit(values, known, truth)
    result["fitted_on_all"] = fitted.to_dict()
    result["command_in_sample"] = {name: command_scores(rruff, args.model, extra)
                                   for name, extra in (("default", []), ("mineral prior", ["--mineral-prior"]))}

    print(f"RRUFF dev, {len(truth)} patterns ({int(known.sum())} with a twin), cross-validated over {args.draws} "
          "random 5-fold splits. EG top-1 / top-5 (%), ECE (a calibrated answer's 95% by chance):")
    for name, by_subset in result["scores"].items():
        print(f"  {name:40s} " + "   ".join(
            f"{subset} {s['top1']:5.1f} / {s['top5']:5.1f}, ECE {s['ece']:.3f} ({s['ece_calibrated_95']:.3f})"
            for subset, s in by_subset.items()))
    print("weights fitted on all patterns: novel " + ", ".join(f"{n} {v:.2f}" for n, v in zip(fusion.FEATURES, fitted.novel))
          + "; twin " + ", ".join(f"{n} {v:.2f}" for n, v in zip(fusion.FEATURES, fitted.known)))
    print("xtal-classify itself on the 454 files, in-sample (its weights were fitted on them): " + "; ".join(
        f"{name} {c['top1']:.1f} / {c['top5']:.1f}" for name, c in result["command_in_sample"].items()))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
