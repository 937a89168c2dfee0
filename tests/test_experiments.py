"""The recipes the notebooks share: pattern caches, splits, on-the-fly sources, the prior baseline."""

import numpy as np
import pytest

from xtal_utils import evaluate, experiments as ex
from xtal_utils.symmetry import labels_of

GRID = ex.Grid(n_points=256, fwhm=0.4)


@pytest.fixture(scope="module")
def amcsd():
    return ex.amcsd_set(60)


def test_patterns_are_cached_and_scaled(amcsd):
    patterns = amcsd.patterns(GRID)
    assert patterns.shape == (len(amcsd), GRID.n_points)
    ok = amcsd.valid(GRID)
    assert ok.sum() > 50
    assert np.allclose(np.asarray(patterns[ok]).max(axis=1), 1.0)
    again = ex.amcsd_set(60).patterns(GRID)  # a new set object reads the cache file
    assert np.array_equal(np.asarray(again), np.asarray(patterns), equal_nan=True)


def test_on_the_fly_source_matches_the_stored_one(amcsd, monkeypatch):
    index = np.flatnonzero(amcsd.valid(GRID))[:8]
    stored_x, stored_y = next(ex.source(amcsd, GRID, index, "space_group").batches(8))
    monkeypatch.setattr(ex, "PATTERN_CACHE_BYTES", 0)
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


def test_epochs_for_gives_small_sets_their_steps():
    assert ex.epochs_for(10_000, 15, 300, 64) == 15
    assert ex.epochs_for(250, 15, 300, 64) == 75  # 4 steps an epoch
    assert ex.epochs_for(64, 1, 3, 64) == 3


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

    run = ex.StreamRun(steps=4, batch_size=8, pool_batches=2, seed=3)
    model, info = ex.train_on_stream(run, GRID, progress=False)
    assert info["patterns_seen"] == 32 and info["distinct_crystals"] == 16 == run.distinct_crystals
    again, info2 = ex.train_on_stream(run, GRID, progress=False)  # from the cache, not retrained
    assert info2 == info
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    assert not again.training
    # a real database instead of random crystals: the distinct crystals are the database rows given
    _, info3 = ex.train_on_stream(ex.StreamRun(steps=2, batch_size=8), GRID, database=amcsd, index=np.arange(20),
                                  progress=False)
    assert info3["distinct_crystals"] == 20 and info3["key"] != info["key"]
    test = ex.TestSet("t", np.asarray(amcsd.patterns(GRID)[:10]), amcsd.space_groups[:10])
    probabilities, scores = ex.score_test(model, test, "extinction_group")
    assert probabilities.shape == (10, 99) and 0.0 <= scores["extinction_group_top1"] <= 1.0
