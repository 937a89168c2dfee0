"""Classifiers scored on the measured RRUFF development patterns, beside search-match and the final answer.

The benchmarks of measured-pattern classifiers share these: :func:`rruff_inputs` (the patterns and their
search-match against AMCSD), :func:`model_eg` (a classifier's extinction-group probabilities),
:func:`score_answers` (EG top-1/top-5 on all patterns and by close twin) and :func:`novel_margins` (the
margin over search-match on patterns without a close twin, with a bootstrap interval).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from xtal_utils import evaluate, experiments, fusion, identify, pattern_sets as ps, search_match, symmetry
from xtal_utils.paths import DATA

TWIN_THRESHOLDS = (0.6, 0.65, 0.7, 0.75, 0.8)  # best similarities below which a pattern counts as novel


def rruff_inputs(*, threshold: float = fusion.MATCH_THRESHOLD, amcsd_limit=None) -> dict:
    """RRUFF dev and its search-match against AMCSD: the patterns, the true extinction groups, the
    search-match's extinction-group scores (``identify.search``), which patterns have a twin
    (:func:`xtal_utils.fusion.twins`, with the default rule at cosine ``threshold``), and the scores of the
    shortlist's view (``identify.SHORTLIST_VIEW``)."""
    rule = dataclasses.replace(fusion.UNFITTED, threshold=threshold)
    rruff = np.load(DATA / "rruff_dev" / "rruff_dev.npz")
    two_theta, measured = rruff["two_theta"], rruff["intensity"].astype(np.float64)
    settings = search_match.SearchSettings()
    library = (search_match.default_library(settings) if amcsd_limit is None
               else search_match.amcsd_library(settings, limit=amcsd_limit))
    queries = np.stack([search_match.variants(two_theta, row, settings, wavelength=ps.RRUFF_WAVELENGTH,
                                              source="rruff_dev") for row in measured])
    found = identify.search(library, queries)
    return {"two_theta": two_theta, "measured": measured, "space_group": rruff["space_group"].astype(int),
            "extinction_group": symmetry.extinction_groups(rruff["space_group"].astype(int)),
            "match_eg": found["match_eg"], "best": found["best"], "matched_peaks": found["matched_peaks"],
            "query_peaks": found["query_peaks"], "known": rule.twins(found), "types_eg": found["types_eg"],
            "twin_rule": {"similarity": rule.threshold, "peaks": rule.min_peaks, "share": rule.min_share},
            "training_family_shares": training_family_shares()}


def training_family_shares() -> np.ndarray:
    """The crystal-family shares of AMCSD's de-duplicated training split (grouped split, seed 0, on the AMCSD
    member's grid), the training side of the final answer's family shift (notebook 08 computes the same)."""
    data = ps.amcsd_set()
    splits, _ = experiments.real_splits(data, deduplicated=True, condition="deduplicated", seed=0,
                                        valid=data.valid(ps.Grid(n_points=2048, fwhm=0.1)))
    return evaluate.family_shares(data.space_groups[np.asarray(splits["train"])])


def model_eg(classifier, rruff: dict, *, use_prior: bool | None) -> np.ndarray:
    """(n, 99) a classifier's extinction-group probabilities for the RRUFF dev patterns."""
    p = classifier.probabilities(rruff["two_theta"], rruff["measured"], wavelength=ps.RRUFF_WAVELENGTH,
                                 use_prior=use_prior, source="rruff_dev")
    return symmetry.collapse_to_extinction_groups(p) if p.shape[1] == symmetry.N_SPACE_GROUPS else p


def final_answer(model_eg: np.ndarray, rruff: dict, **options) -> np.ndarray:
    """(n, 99) the mean over the draws of :func:`final_answer_draws`."""
    return np.mean(final_answer_draws(model_eg, rruff, **options), axis=0)


def final_answer_draws(model_eg: np.ndarray, rruff: dict, *, family_shift: bool = False, use=None,
                       draws: int = 5, seed: int = 0) -> list[np.ndarray]:
    """The cross-validated final answers (n, 99) of a model's probabilities, one per random 5-fold split,
    as notebook 08 makes them: each pattern answered by a fusion fitted on the other folds, the family
    shares estimated (without labels) on those folds too."""
    training = rruff["training_family_shares"]

    def make_features(rows):
        family = None
        if family_shift:
            family = identify.family_weights(evaluate.estimate_family_shares(model_eg[rows], training), training)
        return fusion.features(model_eg, rruff["types_eg"], rruff["match_eg"], family)

    use = use or (fusion.MINERAL if family_shift else fusion.DEFAULT)
    return fusion.cross_validated(make_features, rruff["known"], rruff["extinction_group"], draws=draws, seed=seed,
                                  use=use)


def score_answers(answers: dict, rruff: dict) -> dict:
    """EG top-1/top-5 (percent) of each answer (name: (n, 99) probabilities), on all patterns and by
    twin, beside search-match and the cross-validated final answer (:func:`final_answer`) of each model."""
    truth, known, match_eg = rruff["space_group"], rruff["known"], rruff["match_eg"]
    answers = dict(answers)
    for name in [n for n in answers if n.startswith("model")]:  # each with its own fusion, as in notebook 08
        answers[f"final ({name})"] = final_answer(answers[name], rruff)
    answers["search-match"] = match_eg
    subsets = {"all": np.ones(len(truth), bool), "close twin": known, "no close twin": ~known}
    out = {"n": len(truth), "n_close_twin": int(known.sum()), "twin_rule": rruff["twin_rule"], "scores": {}}
    for name, p in answers.items():
        for subset, rows in subsets.items():
            s = evaluate.score(p[rows], truth[rows], "extinction_group")
            out["scores"][f"{name} | {subset}"] = {"top1": 100 * s["extinction_group_top1"],
                                                   "top5": 100 * s["extinction_group_top5"]}
    return out


def novel_margins(answers: dict, rruff: dict, thresholds=TWIN_THRESHOLDS, *, boot: int = 2000,
                  seed: int = 0) -> list[dict]:
    """Top-1 of each model minus search-match's, on the patterns below each twin threshold, with a
    90% bootstrap interval over those patterns."""
    truth = rruff["extinction_group"] - 1
    match_hit = rruff["match_eg"].argmax(axis=1) == truth
    rng = np.random.default_rng(seed)
    rows = []
    for threshold in thresholds:
        novel = np.flatnonzero(rruff["best"] < threshold)
        draws = rng.integers(0, len(novel), size=(boot, len(novel)))
        for name, p in answers.items():
            hit = p.argmax(axis=1) == truth
            diff = hit[novel].astype(float) - match_hit[novel]
            low, high = np.percentile(diff[draws].mean(axis=1), [5, 95])
            rows.append({"threshold": threshold, "n_novel": len(novel), "answer": name,
                         "top1": 100 * hit[novel].mean(), "search_match_top1": 100 * match_hit[novel].mean(),
                         "margin": 100 * diff.mean(), "margin_90": [100 * low, 100 * high]})
    return rows
