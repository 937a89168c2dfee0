"""The final answer's calibrated fusion, the twin rule, and search-match on hostile patterns."""

import dataclasses

import numpy as np
import pytest
from test_classify import CU, _library, _pattern, _save

from xtal_utils import evaluate, fusion, identify, search_match, symmetry
from xtal_utils.classify import load_classifier
from xtal_utils.fusion import FEATURES, UNFITTED, Fusion
from xtal_utils.search_match import load_library


def _logit_data(weights, n=600, seed=0):
    """Patterns whose true groups are drawn from softmax(features @ weights): a fusion that is right."""
    rng = np.random.default_rng(seed)
    model = rng.dirichlet(np.full(99, 0.3), n)
    types = rng.dirichlet(np.full(99, 0.2), n)
    values = fusion.features(model, types)
    p = fusion.fuse(values, np.zeros(n, bool), Fusion(novel=tuple(weights)))
    truth = np.array([rng.choice(99, p=row) for row in p]) + 1
    return values, truth


def test_fit_recovers_the_weights_that_made_the_labels():
    true = (0.6, 0.8, 0.0, 0.5, 0.0, 0.0, 0.0)
    values, truth = _logit_data(true, n=3000)
    fitted = fusion.fit(values, np.zeros(len(truth), bool), truth, use=("model", "model_rank", "shortlist"), l2=0)
    np.testing.assert_allclose(fitted.novel, true, atol=0.15)


def test_an_overconfident_model_is_calibrated_out_of_fold():
    """Labels drawn from the model's probabilities, shown to the fusion sharpened: its stated probabilities
    then overstate what it knows, and the fitted weight undoes the sharpening on patterns it did not see."""
    rng = np.random.default_rng(2)
    model = rng.dirichlet(np.full(99, 0.3), 1500)
    truth = np.array([rng.choice(99, p=row) for row in model]) + 1
    sharp = model ** 3 / (model ** 3).sum(axis=1, keepdims=True)
    values = fusion.features(sharp)
    known = np.zeros(len(truth), bool)
    (answer,) = fusion.cross_validated(lambda rows: values, known, truth, draws=1, use=("model",))
    assert evaluate.expected_calibration_error(sharp, truth) > 0.1
    assert evaluate.expected_calibration_error(answer, truth) < 0.05
    assert fusion.fit(values, known, truth, use=("model",)).novel[0] == pytest.approx(1 / 3, abs=0.05)


def test_unfitted_fusion_is_the_model_alone_or_times_the_match():
    rng = np.random.default_rng(0)
    model, match = rng.dirichlet(np.ones(99), 2), rng.dirichlet(np.ones(99), 2)
    values = fusion.features(model, rng.dirichlet(np.ones(99), 2), match)
    final = fusion.fuse(values, np.array([False, True]), UNFITTED)
    np.testing.assert_allclose(final[0], model[0], rtol=1e-9)
    both = model[1] * (match[1] + fusion.FLOORS["match"])
    np.testing.assert_allclose(final[1], both / both.sum(), rtol=1e-9)


def test_a_fusion_round_trips_and_refuses_other_features():
    fitted = Fusion((1.0, 0.5, 0.4, 0.2, 0.1, 0.3, 0.0), (0.9, 0.1, 0.0, 0.1, 0.0, 0.2, 1.5), 0.72, 5)
    assert Fusion.from_dict(fitted.to_dict()) == fitted
    with pytest.raises(ValueError, match="features"):
        Fusion.from_dict({**fitted.to_dict(), "features": ["model"]})
    with pytest.raises(ValueError, match="7 features"):
        Fusion(novel=(1.0, 0.0))


def test_a_twin_needs_peaks_and_most_of_them_as_well_as_a_cosine():
    """Close, many peaks explained; too few peaks; too small a share of the pattern's (a compound the
    database lacks, near an entry that shares a few of its many peaks); not close."""
    best, matched, peaks = [0.95, 0.95, 0.76, 0.5], [12, 2, 5], [14, 2, 18]
    assert fusion.twins(best, matched + [12], peaks + [12]).tolist() == [True, False, False, False]
    assert fusion.twins(best, matched + [12], peaks + [12], min_share=0.2).tolist() == [True, False, True, False]
    assert FEATURES[-1] == "match"


@pytest.mark.parametrize("case", ["one peak", "negative baseline", "zero stretch", "few peaks"])
def test_search_match_on_hostile_patterns_stays_within_its_range(tmp_path, case):
    library = load_library(_library(tmp_path))
    two_theta = np.arange(4.0, 95.0, 0.02)
    if case == "one peak":
        intensity = 1000 * np.exp(-0.5 * ((two_theta - 30) / 0.1) ** 2)
    else:
        two_theta, intensity = _pattern(peaks=(4.5, 3.3, 2.2, 1.8) if case != "few peaks" else (3.3, 2.2))
        if case == "negative baseline":
            intensity = intensity - 500
        if case == "zero stretch":
            intensity = np.where((two_theta > 20) & (two_theta < 60), 0.0, intensity)
    queries = search_match.variants(two_theta, intensity, library.settings, wavelength=CU)
    similarity = library.similarities(queries[None])[0]
    assert np.all((similarity >= -1) & (similarity <= 1))
    found = identify.search(library, queries[None])
    known = UNFITTED.twins(found)
    if case == "negative baseline":  # the same pattern as entry 2, lowered: still its twin
        assert similarity.argmax() == 1 and similarity[1] > 0.95 and known[0]
    if case in ("one peak", "few peaks"):  # close to entries by cosine, perhaps, but not a twin
        assert not known[0]


def test_answers_use_the_classifiers_fitted_fusion_with_or_without_the_family_shift(tmp_path):
    path = _save(tmp_path / "sg.pt")
    plain = load_classifier(path)
    library = load_library(_library(tmp_path))
    inputs, queries = identify.prepare(plain, library, *_pattern(peaks=(6.1, 3.7, 2.05)), wavelength=CU)
    with_family = Fusion((0.5, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0))
    without = Fusion((2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0))
    shares = {"training": [0.01, 0.2, 0.2, 0.19, 0.2, 0.2], "measured": [0.16, 0.2, 0.2, 0.04, 0.2, 0.2]}
    fitted = dataclasses.replace(plain, metadata={**plain.metadata, "family_shares": shares, "fusion": {
        "with_family": with_family.to_dict(), "without_family": without.to_dict()}})
    on = identify.answers(fitted, inputs, queries[None], library=library, mineral_prior=True)[0]
    off = identify.answers(fitted, inputs, queries[None], library=library)[0]  # the default: no prior for minerals
    found = identify.search(library, queries[None])
    family = identify.family_weights(shares["measured"], shares["training"])
    expected_on = fusion.fuse(fusion.features(on.model[None], found["types_eg"], found["match_eg"], family),
                              np.array([on.trust == "match"]), with_family)[0]
    np.testing.assert_allclose(on.final, expected_on, rtol=1e-6)
    assert on.family_shift and not off.family_shift
    expected_off = off.model ** 2 / (off.model ** 2).sum()
    np.testing.assert_allclose(off.final, expected_off, rtol=1e-6)
    assert identify.answers(plain, inputs, None, library=None)[0].final.tolist() == on.model.tolist()
    assert symmetry.n_classes("extinction_group") == len(on.final)


def test_default_novel_answer_keeps_the_models_order_and_states_how_often_each_place_is_right():
    """A model whose ranking is worth the same whatever it states (the true group is its r-th choice with a
    probability that falls with r, from 0.2 to 0.95 stated for its first): the default fusion of a pattern
    without a twin keeps the model's ranking and states for every pattern the same, calibrated probability of
    its first choice, however sure the model says it is."""
    rng = np.random.default_rng(3)
    n = 2000
    model = rng.dirichlet(np.full(99, 0.2), n) ** rng.uniform(1, 4, (n, 1))  # some sharp, some flat
    model /= model.sum(axis=1, keepdims=True)
    order = (-model).argsort(axis=1, kind="stable")
    place = 1.0 / (1 + np.arange(99)) ** 1.3
    truth = order[np.arange(n), rng.choice(99, n, p=place / place.sum())] + 1
    values, known = fusion.features(model), np.zeros(n, bool)
    assert np.ptp(model.max(axis=1)) > 0.5
    (answer,) = fusion.cross_validated(lambda rows: values, known, truth, draws=1)
    np.testing.assert_array_equal(answer.argmax(axis=1), order[:, 0])
    assert np.ptp(answer.max(axis=1)) < 0.03  # one statement per fold
    right = truth - 1 == order[:, 0]
    assert answer.max(axis=1).mean() == pytest.approx(right.mean(), abs=0.03)
    assert evaluate.expected_calibration_error(answer, truth) < 0.03
    assert evaluate.expected_calibration_error(model, truth) > 0.1
