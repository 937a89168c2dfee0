"""A candidate X-ray classifier for measured patterns, trained on the fresh-crystal stream, scored on RRUFF dev.

    .venv/bin/python benchmarks/stream_classifier.py --steps 18000 --out data/cache/stream_candidate.pt
    .venv/bin/python benchmarks/stream_classifier.py --steps 200 --out /tmp/try.pt --tag try   # a quick look

The shipped classifier (``models/xtal-classify-xray.pt``) is written by notebook 08; this script
measures whether a recipe would beat it, against the same baselines, before a notebook adopts it.

The recipe is :class:`xtal_utils.experiments.StreamRecipe`: fresh random crystals balanced over
extinction groups with a share of AMCSD's de-duplicated training split in every batch, realism
augmentations and impurity phases, a temperature fitted on stream patterns of another seed, and
AMCSD's class prior applied afterwards with an exponent fitted on AMCSD's augmented validation split.
Training is checkpointed in ``data/cache/stream_models/`` and resumes when interrupted.

The scores, on the 454 measured RRUFF development patterns, in extinction groups: the model with
and without its prior, the frequency prior, search-match against AMCSD (``xtal_utils.search_match``)
and the final answer of ``xtal-classify`` (``xtal_utils.identify.final_answers``), on all patterns and
split by whether AMCSD holds a close twin (best similarity >= the threshold). Nothing here is tuned on
RRUFF: the recipe's settings were fixed before it was scored. Results go to
``benchmarks/results/stream_classifier.json`` with their provenance.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from learning_curve import RESULTS, provenance  # noqa: E402

RRUFF_WAVELENGTH = 1.5418


def rruff_inputs(*, threshold: float, amcsd_limit=None) -> dict:
    """RRUFF dev and its search-match against AMCSD: the patterns, the true extinction groups, the
    search-match's extinction-group scores, which patterns have a close twin (best similarity >=
    ``threshold``), and the similarities and scores of the shortlist's view (``identify.SHORTLIST_VIEW``)."""
    from xtal_utils import identify, search_match, symmetry
    from xtal_utils.paths import DATA

    rruff = np.load(DATA / "rruff_dev" / "rruff_dev.npz")
    two_theta, measured = rruff["two_theta"], rruff["intensity"].astype(np.float64)
    settings = search_match.SearchSettings()
    library = (search_match.default_library(settings) if amcsd_limit is None
               else search_match.amcsd_library(settings, limit=amcsd_limit))
    queries = np.stack([search_match.variants(two_theta, row, settings, wavelength=RRUFF_WAVELENGTH, source="rruff_dev")
                        for row in measured])
    similarity = library.similarities(queries)
    best = similarity.max(axis=1)
    view = library.rescaled(identify.SHORTLIST_VIEW)
    types_similarity = view.similarities(queries)
    return {"two_theta": two_theta, "measured": measured, "space_group": rruff["space_group"].astype(int),
            "extinction_group": symmetry.extinction_groups(rruff["space_group"].astype(int)),
            "match_eg": library.extinction_group_scores(similarity), "best": best, "known": best >= threshold,
            "types_eg": view.extinction_group_scores(types_similarity, sharpness=identify.SHORTLIST_SHARPNESS),
            "types_similarity": types_similarity, "view": view, "threshold": threshold,
            "training_family_shares": training_family_shares()}


def training_family_shares() -> np.ndarray:
    """The crystal-family shares of AMCSD's de-duplicated training split (grouped split, seed 0, on the AMCSD
    member's grid), the training side of the final answer's family shift (notebook 08 computes the same)."""
    from xtal_utils import evaluate, experiments as ex

    data = ex.amcsd_set()
    splits, _ = ex.real_splits(data, deduplicated=True, condition="deduplicated", seed=0,
                               valid=data.valid(ex.Grid(n_points=2048, fwhm=0.1)))
    return evaluate.family_shares(data.space_groups[np.asarray(splits["train"])])


def model_eg(classifier, rruff: dict, *, use_prior: bool | None) -> np.ndarray:
    """(454, 99) a classifier's extinction-group probabilities for the RRUFF dev patterns."""
    from xtal_utils import symmetry

    p = classifier.probabilities(rruff["two_theta"], rruff["measured"], wavelength=RRUFF_WAVELENGTH,
                                 use_prior=use_prior, source="rruff_dev")
    return symmetry.collapse_to_extinction_groups(p) if p.shape[1] == symmetry.N_SPACE_GROUPS else p


def score_answers(answers: dict, rruff: dict) -> dict:
    """EG top-1/top-5 (percent) of each answer (name: (454, 99) probabilities), on all patterns and by
    close twin, beside search-match and the final answer (``identify.final_answers``, with the family shift
    estimated from that model's answers on these patterns, no labels) of each model."""
    from xtal_utils import evaluate, identify

    truth, known, match_eg, best = rruff["space_group"], rruff["known"], rruff["match_eg"], rruff["best"]
    answers, training = dict(answers), rruff["training_family_shares"]
    for name in [n for n in answers if n.startswith("model")]:  # each with its own family shift, as in notebook 08
        family = identify.family_weights(evaluate.estimate_family_shares(answers[name], training), training)
        answers[f"final ({name})"] = identify.final_answers(answers[name], match_eg, best, rruff["types_eg"],
                                                            threshold=rruff["threshold"], family=family)[0]
    answers["search-match"] = match_eg
    subsets = {"all": np.ones(len(truth), bool), "close twin": known, "no close twin": ~known}
    out = {"n": len(truth), "n_close_twin": int(known.sum()), "threshold": rruff["threshold"], "scores": {}}
    for name, p in answers.items():
        for subset, rows in subsets.items():
            s = evaluate.score(p[rows], truth[rows], "extinction_group")
            out["scores"][f"{name} | {subset}"] = {"top1": 100 * s["extinction_group_top1"],
                                                   "top5": 100 * s["extinction_group_top5"]}
    return out


def rruff_scores(classifier, *, threshold: float, amcsd_limit=None) -> dict:
    """EG top-1/top-5 (percent) of every answer on RRUFF dev, on all patterns and by close twin."""
    from xtal_utils import symmetry

    rruff = rruff_inputs(threshold=threshold, amcsd_limit=amcsd_limit)
    answers = {"model": model_eg(classifier, rruff, use_prior=False),
               "model with prior": model_eg(classifier, rruff, use_prior=True)}
    prior = classifier.prior if classifier.prior.shape[0] == 99 else symmetry.collapse_to_extinction_groups(
        classifier.prior[None])[0]
    answers["frequency prior"] = np.tile(prior[None], (len(rruff["known"]), 1))
    return score_answers(answers, rruff)


def main() -> None:
    from xtal_utils import classify, experiments as ex
    from xtal_utils.identify import MATCH_THRESHOLD

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=ex.StreamRecipe.steps)
    parser.add_argument("--n-points", type=int, default=1024)
    parser.add_argument("--database-share", type=float, default=ex.StreamRecipe.database_share)
    parser.add_argument("--no-impurity", action="store_true")
    parser.add_argument("--intensity", default=ex.StreamRecipe.intensity, choices=["linear", "sqrt", "log"],
                        help="how the model scales intensities first")
    parser.add_argument("--kind", default=ex.StreamRecipe.kind, choices=["space_group", "extinction_group"])
    parser.add_argument("--orbit-scale", type=float, default=None,
                        help="factor on the random crystals' numbers of sites (sample_crystals' orbit_scale)")
    parser.add_argument("--max-orbits", type=int, default=None, help="most sites per random crystal (default 8)")
    parser.add_argument("--max-atoms", type=int, default=None, help="most atoms per random crystal's cell (default 48)")
    parser.add_argument("--cell-atoms", type=float, default=None,
                        help="median atoms per random crystal's cell, the same for every group (sample_crystals' cell_atoms)")
    parser.add_argument("--out", type=Path, required=True, help="the classifier file to write")
    parser.add_argument("--tag", default="stream_classifier", help="results go to benchmarks/results/<tag>.json")
    parser.add_argument("--threshold", type=float, default=MATCH_THRESHOLD)
    args = parser.parse_args()

    grid = ex.Grid(n_points=args.n_points)
    recipe = dataclasses.replace(ex.StreamRecipe(), steps=args.steps, database_share=args.database_share,
                                 kind=args.kind, impurity=None if args.no_impurity else ex.StreamRecipe.impurity,
                                 intensity=args.intensity,
                                 crystals=tuple((name, value) for name, value in (
                                     ("orbit_scale", args.orbit_scale), ("max_orbits", args.max_orbits),
                                     ("max_atoms", args.max_atoms), ("cell_atoms", args.cell_atoms)) if value is not None))
    data = ex.amcsd_set()
    splits, _ = ex.real_splits(data, deduplicated=True, condition="deduplicated", seed=recipe.seed,
                               valid=data.valid(grid))
    trained = ex.train_stream_classifier(recipe, grid, data, splits)
    minutes = trained["seconds"] / 60
    print(f"trained {recipe.steps} steps in {minutes:.1f} min ({recipe.steps * recipe.batch_size / trained['seconds']:.0f} "
          f"patterns/s, waiting on data {100 * trained['data_seconds'] / trained['seconds']:.1f}%); temperature "
          f"{trained['temperature']:.3f}, prior weight {trained['prior_weight']:.3f}", flush=True)
    metadata = {"training_data": f"fresh random crystals balanced over extinction groups, {recipe.database_share:.0%} of "
                                 f"each batch from AMCSD's de-duplicated training split ({trained['n_database_train']} "
                                 "structures), realism augmentations"
                                 + (f", impurity phases {recipe.impurity}" if recipe.impurity else ""),
                "recipe": ex.recipe_key(recipe),
                "fwhm": grid.fwhm, "training_minutes": minutes, "patterns_seen": recipe.steps * recipe.batch_size,
                "prior": "AMCSD training split frequencies", **provenance(sys.argv)}
    classify.save_classifier(args.out, trained["model"], kind=recipe.kind,
                             two_theta_range=(grid.two_theta_min, grid.two_theta_max), n_points=grid.n_points,
                             wavelength=grid.wavelength, radiation=grid.radiation, temperature=trained["temperature"],
                             prior=trained["prior"], prior_weight=trained["prior_weight"], prior_default=True,
                             metadata=metadata)
    classifier = classify.load_classifier(args.out, device="cpu")
    result = {"provenance": provenance(sys.argv), "recipe": metadata["recipe"], "training_minutes": minutes,
              "patterns_per_second": recipe.steps * recipe.batch_size / trained["seconds"],
              "data_share": trained["data_seconds"] / trained["seconds"], "temperature": trained["temperature"],
              "prior_weight": trained["prior_weight"], "model": str(args.out),
              "rruff_dev": rruff_scores(classifier, threshold=args.threshold)}
    for name, s in result["rruff_dev"]["scores"].items():
        print(f"  {name:40s} {s['top1']:5.1f} / {s['top5']:5.1f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(result, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
