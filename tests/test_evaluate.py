"""Metrics against hand-worked examples."""

import numpy as np
import pytest

from xtal_utils import evaluate, symmetry


def test_topk_hand_worked():
    # three samples, four classes; true labels 1-based
    scores = np.array([
        [0.1, 0.6, 0.2, 0.1],  # true 2: rank 1
        [0.5, 0.1, 0.3, 0.1],  # true 3: rank 2
        [0.4, 0.3, 0.2, 0.1],  # true 4: rank 4
    ])
    acc = evaluate.topk_accuracy(scores, [2, 3, 4], ks=(1, 2, 3, 4))
    assert acc == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: pytest.approx(2 / 3), 4: 1.0}


def test_space_group_model_scored_in_extinction_group_space():
    # Constructed: the model spreads its mass over P2 (3), Pm (6) and P2/m (10) — all extinction group 1 —
    # so its top-1 space group is wrong (true is 10, predicted 3) but its extinction group is right.
    p = np.zeros((2, 230))
    p[0, [2, 5, 9]] = [0.4, 0.35, 0.25]  # true space group 10
    p[1, 13] = 0.3  # P2_1/c (14), group 4
    p[1, 224] = 0.7  # Fm-3m (225), group 94; true is 14
    m = evaluate.score(p, [10, 14], "space_group")
    assert m["space_group_top1"] == 0.0
    assert m["space_group_top3"] == 1.0
    assert m["extinction_group_top1"] == 0.5
    assert m["extinction_group_top3"] == 1.0
    assert m["crystal_system_top1"] == 0.5  # sample 1 monoclinic, sample 2 predicted cubic
    assert m["crystal_family_top1"] == 0.5
    for space in ("space_group", "extinction_group", "crystal_system", "crystal_family"):
        assert m[f"{space}_top1"] <= m[f"{space}_top3"] <= m[f"{space}_top5"]


def test_extinction_group_model_scores():
    p = np.full((1, 99), 0.001)
    p[0, symmetry.extinction_group(62) - 1] = 0.9
    m = evaluate.score(p, [62], "extinction_group")
    assert m["extinction_group_top1"] == 1.0 and "space_group_top1" not in m
    assert m["crystal_family_top1"] == 1.0


def test_score_rejects_wrong_width():
    with pytest.raises(ValueError, match="columns"):
        evaluate.score(np.ones((1, 99)), [14], "space_group")


def test_per_class_and_confusion():
    p = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0]])
    table = evaluate.per_class_accuracy(p, [1, 2, 2], 3)
    assert table["n"].tolist() == [1, 2, 0]
    assert table["top1"].tolist()[:2] == [1.0, 0.5] and np.isnan(table["top1"][2])
    cm = evaluate.confusion_matrix(p, [1, 2, 2], 3)
    assert cm.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]


def test_ece_and_temperature():
    # perfectly calibrated: confidence 0.75, three of four right
    p = np.array([[0.75, 0.25]] * 4)
    assert evaluate.expected_calibration_error(p, [1, 1, 1, 2]) == pytest.approx(0.0)
    # overconfident logits: the fitted temperature must be > 1 and lower the ECE
    rng = np.random.default_rng(0)
    labels = rng.integers(1, 11, 2000)
    logits = rng.normal(0, 1, (2000, 10))
    logits[np.arange(2000), labels - 1] += 1.0
    logits *= 5
    t = evaluate.fit_temperature(logits, labels)
    assert t > 1.5
    before = evaluate.expected_calibration_error(evaluate.softmax(logits), labels)
    after = evaluate.expected_calibration_error(evaluate.softmax(logits / t), labels)
    assert after < before / 2


def test_negative_log_likelihood_by_hand():
    p = np.array([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]])
    assert evaluate.negative_log_likelihood(p, np.array([1, 3])) == pytest.approx(-(np.log(0.5) + np.log(0.7)) / 2)
    assert evaluate.negative_log_likelihood(p, np.array([3, 3]), floor=1e-6) == pytest.approx(
        -(np.log(1e-6) + np.log(0.7)) / 2)


def test_estimate_family_shares_recovers_a_shifted_population_without_labels():
    """A calibrated classifier trained on one family mix answers patterns of another: EM on its answers
    finds the new mix (Saerens et al. 2002); the labels are only used to check."""
    rng = np.random.default_rng(0)
    training = np.array([0.02, 0.13, 0.20, 0.15, 0.20, 0.30])  # evaluate.FAMILIES order
    measured = np.array([0.10, 0.35, 0.23, 0.09, 0.08, 0.15])
    family = rng.choice(6, size=20000, p=measured)
    x = rng.normal(1.5 * family, 1.0)  # one feature, a Gaussian per family: exact posteriors below
    likelihood = np.exp(-0.5 * (x[:, None] - 1.5 * np.arange(6)) ** 2)
    posterior = likelihood * training
    posterior /= posterior.sum(axis=1, keepdims=True)
    families = evaluate.coarse_matrix("extinction_group", "family")
    p = posterior @ (families.T / families.sum(axis=0)[:, None])  # spread over each family's groups
    estimated = evaluate.estimate_family_shares(p, training)
    assert estimated.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(estimated, measured, atol=0.03)
    assert np.abs(p.mean(axis=0) @ families - measured).max() > 0.05  # the plain mean answer is off
    np.testing.assert_allclose(evaluate.family_shares([1, 2, 14, 225]), [0.5, 0.25, 0, 0, 0, 0.25])
