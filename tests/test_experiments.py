"""The recipes the notebooks share: pattern caches, splits, on-the-fly sources, the prior baseline."""

import dataclasses

import numpy as np
import pytest

from xtal_utils import evaluate, experiments as ex, pattern_sets as ps
from xtal_utils.config import to_jsonable
from xtal_utils.symmetry import labels_of
from xtal_utils.train import StreamConfig

GRID = ps.Grid(n_points=256, fwhm=0.4)


@pytest.fixture(scope="module")
def amcsd():
    return ps.amcsd_set(60)


def test_patterns_are_cached_and_scaled(amcsd):
    patterns = amcsd.patterns(GRID)
    assert patterns.shape == (len(amcsd), GRID.n_points)
    ok = amcsd.valid(GRID)
    assert ok.sum() > 50
    assert np.allclose(np.asarray(patterns[ok]).max(axis=1), 1.0)
    again = ps.amcsd_set(60).patterns(GRID)  # a new set object reads the cache file
    assert np.array_equal(np.asarray(again), np.asarray(patterns), equal_nan=True)


def test_on_the_fly_source_matches_the_stored_one(amcsd, monkeypatch):
    index = np.flatnonzero(amcsd.valid(GRID))[:8]
    stored_x, stored_y = next(ex.source(amcsd, GRID, index, "space_group").batches(8))
    monkeypatch.setattr(ps, "PATTERN_CACHE_BYTES", 0)
    fly = ex.source(amcsd, GRID, index, "space_group")
    assert type(fly).__name__ == "SimulatedSource"
    x, y = next(fly.batches(8))
    assert np.array_equal(y, stored_y)
    assert np.abs(x.numpy() - stored_x.numpy()).max() < 1e-5


def test_real_splits_leak_only_when_asked(amcsd):
    splits, leak = ex.real_splits(amcsd, deduplicated=True, condition="deduplicated", seed=0)
    assert leak == 0.0
    everything = np.concatenate(list(splits.values()))
    assert len(everything) == len(set(everything.tolist()))  # disjoint
    _, leaky = ex.real_splits(amcsd, deduplicated=False, condition="duplicated", seed=0)
    assert leaky >= 0.0


def test_random_splits_partition_the_valid_crystals():
    valid = np.ones(100, dtype=bool)
    valid[[3, 50]] = False
    splits = ex.random_splits(100, seed=1, valid=valid)
    together = np.sort(np.concatenate(list(splits.values())))
    assert np.array_equal(together, np.flatnonzero(valid))
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [78, 10, 10]
    assert np.array_equal(ex.random_splits(100, seed=1, valid=valid)["test"], splits["test"])


def test_frequency_prior_scores_the_majority_class():
    train = np.array([14, 14, 14, 2, 62])
    test = np.array([14, 2, 225])
    prior = evaluate.frequency_prior(train, "space_group")
    assert prior.sum() == pytest.approx(1) and prior[13] == pytest.approx(0.6)
    scores = evaluate.score(np.tile(prior, (3, 1)), test, "space_group")
    assert scores["space_group_top1"] == pytest.approx(1 / 3)  # only the P2_1/c pattern
    assert labels_of(test, "space_group").tolist() == [14, 2, 225]


def test_train_on_stream_caches_its_model_and_counts_what_it_saw(amcsd):
    import torch

    run = StreamConfig(steps=4, batch_size=8, pool_batches=2, seed=3)
    model, info = ex.train_on_stream(run, GRID, progress=False)
    assert info["patterns_seen"] == 32 and info["distinct_crystals"] == 16 == run.distinct_crystals
    again, info2 = ex.train_on_stream(run, GRID, progress=False)  # from the cache, not retrained
    assert info2 == info
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    assert not again.training
    # a real database instead of random crystals: the distinct crystals are the database rows given
    _, info3 = ex.train_on_stream(StreamConfig(steps=2, batch_size=8), GRID, database=amcsd, index=np.arange(20),
                                  progress=False)
    assert info3["distinct_crystals"] == 20 and info3["key"] != info["key"]
    test = ex.TestSet("t", np.asarray(amcsd.patterns(GRID)[:10]), amcsd.space_groups[:10])
    probabilities, scores = ex.score_test(model, test, "extinction_group")
    assert probabilities.shape == (10, 99) and 0.0 <= scores["extinction_group_top1"] <= 1.0


REALISTIC_KEY = {"background": 0.1, "background_order": 4, "crystallite_size": [30.0, 300.0], "fwhm_scale": [0.7, 2.0],
                 "gaussian_noise": 0.0, "intensity_scale": None, "march_dollase": [0.5, 1.5],
                 "poisson_counts": [100.0, 20000.0], "strain": 0.003, "zero_shift": 0.08}


def test_stream_cache_keys_of_the_recipes_stay_put():
    """The cache keys of the study's stream models and of the classifier recipe: a change here retrains
    every cached stream model, so it must be deliberate."""
    run = to_jsonable(ex.stream_run_key(StreamConfig(), GRID)["run"])
    assert run == {"kind": "extinction_group", "steps": 11500, "batch_size": 64, "lr": 0.002, "weight_decay": 0.0001,
                   "label_smoothing": 0.1, "model": "ResNet1d", "model_options": [["intensity", "log"]],
                   "pool_batches": None, "seed": 0}
    recipe = to_jsonable(ex.recipe_key(ex.CLASSIFIER_RECIPE))
    assert recipe == {"kind": "space_group", "steps": 18000, "batch_size": 64, "lr": 0.002, "weight_decay": 0.0001,
                      "label_smoothing": 0.1, "intensity": "log", "database_share": 0.25,
                      "impurity": [0.3, [0.05, 0.3]], "augmentation": REALISTIC_KEY, "prior_smoothing": 1.0,
                      "seed": 0}
    # fields the keys do not name join them only when they leave their defaults
    assert ex.stream_run_key(StreamConfig(warmup=0.1), GRID)["run"]["warmup"] == 0.1
    crystals = (("max_orbits", 24),)
    assert ex.recipe_key(dataclasses.replace(ex.CLASSIFIER_RECIPE, crystals=crystals))["crystals"] == crystals
    assert "pool_batches" in ex.recipe_key(dataclasses.replace(ex.CLASSIFIER_RECIPE, pool_batches=4))
