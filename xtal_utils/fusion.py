"""The final answer of ``xtal-classify``: the model's probabilities and what search-match finds, joined by
one calibrated model fitted on measured patterns.

For a pattern and each extinction group g, seven features (:data:`FEATURES`):

- ``model``: log of the model's probability of g;
- ``model_rank``: -log(1 + r), where r is g's place in the model's ranking (0 for its first choice);
- ``model_top3``: 1 when g is among the model's first three choices, else 0;
- ``shortlist`` and ``shortlist_soft``: log of g's score among the nearest entries in the square-root view of
  the patterns (:meth:`xtal_utils.search_match.Library.rescaled`), plus a floor of 0.001 and 0.1. Square
  roots weigh where the peaks are over how strong they are, so these entries are the structure types near
  a pattern even when none is its twin;
- ``family``: log of g's crystal-family weight, (measured share / training share) of its family, from the
  classifier file's ``metadata['family_shares']``: a prior for minerals like the measured ones, 0 when off;
- ``match``: log of g's score among the nearest entries in the linear view, plus 0.001.

The rank features let the fusion follow the model's order without taking over how sure the model says it
is. On measured patterns without a twin, the model's stated probability of its first choice says little
about how often that choice is right (notebook 08): a fusion that weighs it states more or less than it
knows pattern by pattern, and its cross-validated calibration error is about twice what a calibrated answer
shows by chance. So by default such a pattern's weights use the rank features alone, and its final
probabilities are how often the model's first, second, ... choice is right on measured patterns without a twin.

The final probabilities are ``softmax(features @ weights)`` over the 99 groups: a conditional logit, with one
set of weights for patterns with a **twin** in the database (:func:`twins`: the nearest entry's cosine
similarity at least a threshold, and at least ``min_peaks`` of the pattern's peaks, and half of them,
explained by it) and one for the others. Which features each set uses is :data:`DEFAULT` or, for minerals,
:data:`MINERAL`. :func:`fit` chooses the weights by maximum likelihood on labelled measured patterns, so that
the stated probabilities are calibrated; :func:`cross_validated` gives each pattern probabilities from
weights fitted without it, which is how their accuracy and calibration are reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize

FEATURES = ("model", "model_rank", "model_top3", "shortlist", "shortlist_soft", "family", "match")
FLOORS = {"shortlist": 1e-3, "shortlist_soft": 0.1, "match": 1e-3}
MATCH_THRESHOLD = 0.7  # cosine similarity from which the nearest entry can be a twin
MIN_MATCHED_PEAKS = 4  # peaks of the pattern that a twin must explain (Library.matched_peaks)
MIN_MATCHED_SHARE = 0.5  # and the share of the pattern's peaks: random crystals' false twins explain about 0.3
L2 = 1e-3  # ridge on the weights: keeps a fit on few patterns finite
_MODEL = ("model", "model_rank", "model_top3")
# The features each subset's weights use. By default a pattern without a twin gets the model's ranking, with
# the rate at which each of its places is right. AMCSD's nearest structure types and the family shift help
# on minerals like RRUFF's and cost other samples (synthetic compounds, textured pellets) top-5
# (benchmarks/robustness.py), so only the mineral prior (xtal-classify --mineral-prior) adds them.
DEFAULT = {"novel": ("model_rank", "model_top3"), "known": (*_MODEL, "shortlist", "shortlist_soft", "match")}
MINERAL = {"novel": FEATURES, "known": FEATURES}


@dataclass(frozen=True)
class Fusion:
    """Weights of :data:`FEATURES` for patterns without a twin (``novel``) and with one (``known``), and
    the twin rule (``threshold``, ``min_peaks``, ``min_share``: :func:`twins`)."""

    novel: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    known: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    threshold: float = MATCH_THRESHOLD
    min_peaks: int = MIN_MATCHED_PEAKS
    min_share: float = MIN_MATCHED_SHARE

    def __post_init__(self):
        for name in ("novel", "known"):
            if len(getattr(self, name)) != len(FEATURES):
                raise ValueError(f"{name} weights {getattr(self, name)}: expected one for each of the "
                                 f"{len(FEATURES)} features {FEATURES}")

    def to_dict(self) -> dict:
        return {**asdict(self), "features": list(FEATURES)}

    @classmethod
    def from_dict(cls, data: dict) -> Fusion:
        if list(data.get("features", [])) != list(FEATURES):
            raise ValueError(f"a fusion of features {data.get('features')}, not {list(FEATURES)}")
        return cls(tuple(map(float, data["novel"])), tuple(map(float, data["known"])), float(data["threshold"]),
                   int(data["min_peaks"]), float(data["min_share"]))

    def twins(self, found: dict, threshold: float | None = None) -> np.ndarray:
        """:func:`twins` by this fusion's rule for a search's result (``identify.search``)."""
        return twins(found["best"], found["matched_peaks"], found["query_peaks"],
                     threshold=self.threshold if threshold is None else threshold, min_peaks=self.min_peaks,
                     min_share=self.min_share)


UNFITTED = Fusion()  # a classifier file without a fitted fusion: the model alone, times the match for a twin


def features(model_eg, types_eg=None, match_eg=None, family=None) -> np.ndarray:
    """(batch, 99, len(FEATURES)) the features of every group; a part that is None gives zeros.

    Args:
        model_eg: (batch, 99) the model's probabilities.
        types_eg: (batch, 99) the square-root view's group scores (``Library.extinction_group_scores``).
        match_eg: (batch, 99) the linear view's group scores.
        family: (99,) the groups' family weights (:func:`xtal_utils.identify.family_weights`).
    """
    model_eg = np.asarray(model_eg, dtype=np.float64)
    out = np.zeros((*model_eg.shape, len(FEATURES)))
    column = {name: i for i, name in enumerate(FEATURES)}
    rank = (-model_eg).argsort(axis=1, kind="stable").argsort(axis=1)
    out[..., column["model"]] = np.log(np.clip(model_eg, 1e-12, None))
    out[..., column["model_rank"]] = -np.log1p(rank)
    out[..., column["model_top3"]] = rank < 3
    if types_eg is not None:
        out[..., column["shortlist"]] = np.log(np.asarray(types_eg) + FLOORS["shortlist"])
        out[..., column["shortlist_soft"]] = np.log(np.asarray(types_eg) + FLOORS["shortlist_soft"])
    if family is not None:
        out[..., column["family"]] = np.log(np.clip(np.asarray(family, dtype=np.float64), 1e-12, None))
    if match_eg is not None:
        out[..., column["match"]] = np.log(np.asarray(match_eg) + FLOORS["match"])
    return out


def twins(best_similarity, matched_peaks, query_peaks, *, threshold: float = MATCH_THRESHOLD,
          min_peaks: int = MIN_MATCHED_PEAKS, min_share: float = MIN_MATCHED_SHARE) -> np.ndarray:
    """(batch,) bool: patterns whose nearest entry is a twin: close by cosine, and explaining at least
    ``min_peaks`` of the pattern's ``query_peaks`` peaks and at least the share ``min_share`` of them.

    A cosine alone is not evidence: a pattern with one or a few strong peaks (a textured film, a
    one-peak file) lies close to many entries, and a compound that the database lacks often has an entry
    near 0.75 that explains a few of its many peaks."""
    matched = np.asarray(matched_peaks)
    return ((np.asarray(best_similarity) >= threshold) & (matched >= min_peaks)
            & (matched >= min_share * np.asarray(query_peaks)))


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=-1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=-1, keepdims=True)


def fuse(features_: np.ndarray, known, fusion: Fusion = UNFITTED) -> np.ndarray:
    """(batch, 99) the final probabilities of patterns with :func:`features` and twin flags ``known``."""
    known = np.asarray(known, dtype=bool)
    weights = np.where(known[:, None], np.asarray(fusion.known), np.asarray(fusion.novel))
    return _softmax(np.einsum("bgf,bf->bg", features_, weights))


def _fit_weights(features_: np.ndarray, truth: np.ndarray, use: np.ndarray, l2: float) -> np.ndarray:
    """Maximum-likelihood weights (len(FEATURES),) of a conditional logit; features outside ``use`` stay 0."""
    rows = np.arange(len(truth))

    def loss(w):
        w = np.where(use, w, 0.0)
        logits = features_ @ w
        logits = logits - logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(axis=1))
        p = np.exp(logits - log_norm[:, None])
        value = -(logits[rows, truth] - log_norm).mean() + l2 * (w ** 2).sum()
        grad = -(features_[rows, truth] - np.einsum("bg,bgf->bf", p, features_)).mean(axis=0) + 2 * l2 * w
        return value, np.where(use, grad, 0.0)

    start = np.zeros(len(FEATURES))
    start[0] = 1.0
    result = optimize.minimize(loss, start, jac=True, method="L-BFGS-B")
    return np.where(use, result.x, 0.0)


def _uses(use) -> dict:
    """``use`` as {'novel': features, 'known': features}: a dict as given, or one tuple for both."""
    return dict(use) if isinstance(use, dict) else {"novel": tuple(use), "known": tuple(use)}


def fit(features_: np.ndarray, known, truth, *, use=DEFAULT, threshold: float = MATCH_THRESHOLD,
        min_peaks: int = MIN_MATCHED_PEAKS, min_share: float = MIN_MATCHED_SHARE, l2: float = L2) -> Fusion:
    """The fusion that maximises the likelihood of the true groups ``truth`` (batch,), 1-based, with
    weights for the features that ``use`` names for each subset (:data:`DEFAULT`, :data:`MINERAL`, or one
    tuple for both)."""
    known, truth = np.asarray(known, dtype=bool), np.asarray(truth) - 1
    weights = {}
    for name, rows in (("novel", ~known), ("known", known)):
        mask = np.isin(FEATURES, _uses(use)[name])
        weights[name] = (tuple(_fit_weights(features_[rows], truth[rows], mask, l2)) if rows.any()
                         else getattr(UNFITTED, name))
    return Fusion(weights["novel"], weights["known"], threshold, min_peaks, min_share)


def cross_validated(make_features, known, truth, *, folds: int = 5, draws: int = 5, seed: int = 0,
                    use=DEFAULT) -> list[np.ndarray]:
    """Out-of-fold final probabilities: for each of ``draws`` random splits into ``folds`` folds, every
    pattern answered by a fusion fitted on the other folds.

    Args:
        make_features: ``make_features(fit_rows)`` gives :func:`features` of all patterns, with anything
            estimated from the patterns themselves (the family shares) estimated on ``fit_rows`` alone.
        known, truth: (batch,) twin flags and 1-based true groups.

    Returns:
        One (batch, 99) array per draw.
    """
    known, truth = np.asarray(known, dtype=bool), np.asarray(truth)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(draws):
        fold = rng.permutation(len(truth)) % folds
        answer = np.zeros((len(truth), 99))
        for k in range(folds):
            train, test = fold != k, fold == k
            values = make_features(np.flatnonzero(train))
            fusion = fit(values[train], known[train], truth[train], use=use)
            answer[test] = fuse(values[test], known[test], fusion)
        out.append(answer)
    return out
