"""Scores of a classifier: top-k accuracy in every label space, per-class accuracy, confusion, calibration.

Conventions: labels are crystallographers' numbers (space group 1..230, extinction group 1..99);
column ``j`` of a probability or logit matrix is label ``j + 1``. A space-group model is scored in
extinction-group space by summing its probabilities over each group's members
(:func:`xtal_utils.symmetry.collapse_to_extinction_groups`), and in crystal-system and crystal-family
space the same way.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize_scalar

from xtal_utils import symmetry
from xtal_utils.symmetry import labels_of, n_classes

TOP_K = (1, 3, 5)
SYSTEMS = symmetry.CRYSTAL_SYSTEMS
FAMILIES = tuple(s for s in SYSTEMS if s != "trigonal")


@cache
def coarse_matrix(kind: str, target: str) -> np.ndarray:
    """(n_classes(kind), n_targets) 0/1 matrix that maps each class of ``kind`` to its crystal system
    (``target='system'``, columns :data:`SYSTEMS`) or crystal family (``'family'``, columns :data:`FAMILIES`).

    The matrix is cached and shared: do not change it in place."""
    names = SYSTEMS if target == "system" else FAMILIES
    of = symmetry.crystal_system if target == "system" else symmetry.crystal_family
    if kind == "space_group":
        members = [(sg,) for sg in range(1, symmetry.N_SPACE_GROUPS + 1)]
    else:
        members = list(symmetry.extinction_table()["space_groups"])
    matrix = np.zeros((len(members), len(names)), dtype=np.float32)
    for row, group in enumerate(members):
        (name,) = {of(sg) for sg in group}  # a class never straddles two of the targets
        matrix[row, names.index(name)] = 1.0
    return matrix


def topk_accuracy(scores, labels, ks=TOP_K) -> dict[int, float]:
    """Fraction of rows whose true label is among the k highest scores.

    Args:
        scores: (n, C) probabilities or logits, numpy or torch; column j is label j + 1.
        labels: (n,) labels 1..C.
    """
    scores = torch.as_tensor(np.asarray(scores) if not isinstance(scores, torch.Tensor) else scores).float()
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long) - 1
    if len(labels) == 0:
        return {k: float("nan") for k in ks}
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hits = top == labels[:, None]
    return {k: hits[:, :k].any(dim=1).float().mean().item() for k in ks}


def softmax(logits) -> np.ndarray:
    return torch.softmax(torch.as_tensor(logits).float(), dim=1).numpy()


def score(probabilities, space_groups, kind: str) -> dict[str, float]:
    """Top-k accuracies of a model in every label space its output determines.

    Args:
        probabilities: (n, 230) for a space-group model or (n, 99) for an extinction-group model.
        space_groups: (n,) true space groups.
        kind: what the model predicts, 'space_group' or 'extinction_group'.

    Returns:
        ``{'<space>_top<k>': accuracy}`` for spaces space_group (space-group models only),
        extinction_group, crystal_system (space-group models only) and crystal_family.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape[1] != n_classes(kind):
        raise ValueError(f"a {kind} model has {n_classes(kind)} columns, got {probabilities.shape}")
    space_groups = np.asarray(space_groups)
    spaces: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if kind == "space_group":
        spaces["space_group"] = (probabilities, labels_of(space_groups, "space_group"))
        spaces["extinction_group"] = (symmetry.collapse_to_extinction_groups(probabilities),
                                      labels_of(space_groups, "extinction_group"))
        spaces["crystal_system"] = (probabilities @ coarse_matrix(kind, "system"),
                                    _coarse_labels(space_groups, "system"))
    else:
        spaces["extinction_group"] = (probabilities, labels_of(space_groups, "extinction_group"))
    spaces["crystal_family"] = (probabilities @ coarse_matrix(kind, "family"),
                                _coarse_labels(space_groups, "family"))
    return {f"{space}_top{k}": acc for space, (p, y) in spaces.items() for k, acc in topk_accuracy(p, y).items()}


def _coarse_labels(space_groups, target: str) -> np.ndarray:
    names = SYSTEMS if target == "system" else FAMILIES
    of = symmetry.crystal_system if target == "system" else symmetry.crystal_family
    return np.array([names.index(of(int(sg))) + 1 for sg in space_groups], dtype=np.int64)


def per_class_accuracy(probabilities, labels, n: int) -> pd.DataFrame:
    """Top-1 accuracy and support of each label 1..n (NaN accuracy where a label has no samples)."""
    labels = np.asarray(labels)
    predicted = np.asarray(probabilities).argmax(axis=1) + 1
    support = np.bincount(labels, minlength=n + 1)[1:]
    correct = np.bincount(labels[predicted == labels], minlength=n + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(support > 0, correct / support, np.nan)
    return pd.DataFrame({"label": np.arange(1, n + 1), "n": support, "top1": accuracy})


def confusion_matrix(probabilities, labels, n: int) -> np.ndarray:
    """(n, n) counts; row = true label - 1, column = predicted label - 1."""
    predicted = np.asarray(probabilities).argmax(axis=1)
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels) - 1, predicted), 1)
    return matrix


def expected_calibration_error(probabilities, labels, n_bins: int = 15) -> float:
    """ECE: the confidence-weighted gap between top-1 confidence and accuracy, over equal-width bins."""
    probabilities = np.asarray(probabilities)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) + 1 == np.asarray(labels)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(confidence[in_bin].mean() - correct[in_bin].mean())
    return float(ece)


def ece_noise_floor(confidence, n_bins: int = 15, draws: int = 1000, seed: int = 0) -> tuple[float, float]:
    """The ECE that a perfectly calibrated answer with these top-1 confidences (n,) shows by chance: the
    mean and 95th percentile over ``draws`` sets of outcomes drawn right with the stated probability. On a
    few hundred patterns it is several points, so an observed ECE is read against it."""
    confidence = np.asarray(confidence, dtype=np.float64)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        right = rng.random(len(confidence)) < confidence
        values.append(sum((bins == b).mean() * abs(confidence[bins == b].mean() - right[bins == b].mean())
                          for b in np.unique(bins)))
    return float(np.mean(values)), float(np.percentile(values, 95))


def fit_temperature(logits, labels, max_iter: int = 100) -> float:
    """The temperature T > 0 that minimises the NLL of softmax(logits / T) (Guo et al. 2017).

    Fit on validation data; apply as ``logits / T``. Optimised over log T with L-BFGS.
    """
    logits = torch.as_tensor(np.asarray(logits)).float()
    target = torch.as_tensor(np.asarray(labels), dtype=torch.long) - 1
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), target)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def fit_prior_weight(logits, labels, prior, *, temperature: float = 1.0, max_weight: float = 3.0) -> float:
    """The exponent w in [0, max_weight] that minimises the NLL of softmax(logits / T + w log prior).

    The external log-prior of a model trained on uniform classes (Baggett et al. 2026): fit it on
    validation patterns drawn from the distribution the prior describes (a real database's validation
    split, say), after the temperature. w = 1 is the Bayes correction from uniform training classes to
    the prior; w = 0 means the prior does not help. Classes of prior 0 are treated as 1e-12.
    """
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64) / temperature
    target = torch.as_tensor(np.asarray(labels), dtype=torch.long) - 1
    log_prior = torch.log(torch.as_tensor(np.asarray(prior), dtype=torch.float64).clamp_min(1e-12))
    if log_prior.shape != (logits.shape[1],):
        raise ValueError(f"prior has shape {tuple(log_prior.shape)}, the logits {logits.shape[1]} classes")

    def nll(weight: float) -> float:
        return float(torch.nn.functional.cross_entropy(logits + weight * log_prior, target))

    return float(minimize_scalar(nll, bounds=(0.0, max_weight), method="bounded", options={"xatol": 1e-4}).x)


def frequency_prior(space_groups, kind: str, smoothing: float = 0.0) -> np.ndarray:
    """The class frequencies of ``space_groups`` in ``kind`` space: the baseline that never looks at a pattern.

    Args:
        space_groups: (n,) space groups of the training data.
        kind: 'space_group' or 'extinction_group'.
        smoothing: pseudo-count added to every class (0: classes never seen get probability 0).

    Returns:
        (n_classes,) probabilities summing to 1.
    """
    counts = np.bincount(labels_of(space_groups, kind) - 1, minlength=n_classes(kind)).astype(np.float64)
    counts += smoothing
    return counts / counts.sum()


def family_shares(space_groups) -> np.ndarray:
    """(len(FAMILIES),) the share of each crystal family (:data:`FAMILIES`) among ``space_groups``."""
    families = _coarse_labels(np.asarray(space_groups).ravel(), "family") - 1
    return np.bincount(families, minlength=len(FAMILIES)) / max(len(families), 1)


def estimate_family_shares(probabilities, training_shares, *, kind: str = "extinction_group",
                           iterations: int = 500, tol: float = 1e-10) -> np.ndarray:
    """The crystal-family shares of unlabelled patterns, from a classifier's answers on them.

    Saerens, Latinne & Decaestecker (2002), "Adjusting the outputs of a classifier to new a priori
    probabilities", at the level of crystal families: each family's probabilities are multiplied by
    (its share here / its share in training), the answers renormalised, and the shares here re-estimated
    as the mean of the adjusted answers, until they settle. No label is used. It assumes that the
    families' shares are all that differ between the training data and these patterns (label shift),
    and calibrated probabilities.

    Args:
        probabilities: (n, n_classes) answers in ``kind`` space.
        training_shares: (len(FAMILIES),) the families' shares in the training data.

    Returns:
        (len(FAMILIES),) the estimated shares, summing to 1.
    """
    families = coarse_matrix(kind, "family").astype(np.float64)  # (n_classes, n_families)
    p = np.asarray(probabilities, dtype=np.float64)
    source = np.clip(np.asarray(training_shares, dtype=np.float64), 1e-6, None)
    shares = source.copy()
    for _ in range(iterations):
        adjusted = p * (families @ (shares / source))
        adjusted /= adjusted.sum(axis=1, keepdims=True)
        new = adjusted.mean(axis=0) @ families
        done = np.abs(new - shares).max() < tol
        shares = new
        if done:
            break
    return shares


def negative_log_likelihood(probabilities, labels, floor: float = 1e-12) -> float:
    """Mean -log p(true label); probabilities below ``floor`` count as ``floor``."""
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels)
    return float(-np.log(np.clip(probabilities[np.arange(len(labels)), labels - 1], floor, None)).mean())
