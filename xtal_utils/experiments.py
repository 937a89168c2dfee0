"""What the study's notebooks share: splits, sources, train-then-score and the test sets.

The notebooks stay thin by calling these recipes (the crystal sets and grids are in
:mod:`xtal_utils.pattern_sets`):

- :func:`real_splits` and :func:`random_splits` give index arrays (train, validation, test);
- :func:`train_and_score` trains one model (cached by :func:`xtal_utils.train.train_cached`, so a later
  notebook that asks for the same model, data and seed reuses it) and scores it on named test sets;
- :func:`train_on_stream` and :func:`train_stream_classifier` train a model on a stream of patterns by a
  :class:`~xtal_utils.train.StreamConfig` (:data:`CLASSIFIER_RECIPE` for the shipped classifiers' stream
  member), cached by the config's content;
- :func:`stream_test_sets` and :func:`score_test` give the test sets of stream-trained models and score them.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from xtal_utils import attribution, crystals, evaluate
from xtal_utils.config import atomic_path, cache_dir, cache_key, default_device
from xtal_utils.datasets import PatternSource, SimulatedSource
from xtal_utils.diffraction import SIMULATOR_VERSION, Augmentation
from xtal_utils.models import LOG_FLOOR, ResNet1dConfig, build_model, model_spec, n_parameters
from xtal_utils.paths import DATA
from xtal_utils.pattern_sets import (REALISTIC, RRUFF_WAVELENGTH, SIMULATE_CHUNK, CrystalSet, Grid,
                                     amcsd_set, augmentation_key, augmented_patterns, balanced_set,
                                     index_digest)
from xtal_utils.patterns import resample
from xtal_utils.symmetry import crystal_family, extinction_group
from xtal_utils.train import (StreamConfig, TrainConfig, build, fit_stream, load_checkpoint, predict,
                              recalibrate_batchnorm, train_cached)


def real_splits(data: CrystalSet, *, deduplicated: bool, condition: str, seed: int,
                valid: np.ndarray | None = None, fractions=(0.8, 0.1, 0.1)) -> tuple[dict, float]:
    """Train/validation/test indices into a real database, and the measured leakage of the split.

    Args:
        data: from :func:`amcsd_set`.
        deduplicated: keep one entry per (reduced formula, space group) first.
        condition: 'deduplicated' (whole groups go to one split) or 'duplicated' (a random split
            of entries, which lets twins straddle train and test).
        seed: seeds the split.
        valid: (n,) bool of usable entries (e.g. :meth:`CrystalSet.valid`).
        fractions: shares of train, validation and test.

    Returns:
        ``{'train', 'validation', 'test'}`` -> index arrays, and the share of test entries with a
        twin in train.
    """
    table = data.table.reset_index(drop=True)
    if valid is not None:
        table = table[np.asarray(valid)]
    if deduplicated:
        table = crystals.deduplicate(table)
    names = crystals.split(table, fractions, seed=seed, condition=condition)
    leak = crystals.leakage(table, names)
    index = table.index.to_numpy()
    return {s: index[names == s] for s in ("train", "validation", "test")}, leak


def random_splits(n: int, *, seed: int, valid: np.ndarray | None = None, fractions=(0.8, 0.1, 0.1)) -> dict:
    """Train/validation/test indices of a set of independent crystals, by a seeded permutation."""
    index = np.arange(n) if valid is None else np.flatnonzero(valid)
    index = np.random.default_rng(seed).permutation(index)
    cut = np.round(np.cumsum(fractions)[:-1] * len(index)).astype(int)
    return dict(zip(("train", "validation", "test"), np.split(index, cut)))


def source(data: CrystalSet, grid: Grid, index, kind: str) -> PatternSource:
    """Clean patterns of ``data[index]`` on ``grid``, labelled by ``kind``: stored, or simulated on the fly
    on the training device when the set is too large to store (paper scale)."""
    index = np.asarray(index)
    if not data.stored(grid):
        simulator = grid.simulator()
        return SimulatedSource(data.structures[index], kind,
                               lambda batch, generator: simulator.simulate(batch, as_tensor=True))
    return PatternSource(np.asarray(data.patterns(grid)[index]), data.space_groups[index], kind)


def augmented_source(data: CrystalSet, grid: Grid, index, kind: str, augmentation: Augmentation,
                     device=None) -> SimulatedSource:
    """Patterns of ``data[index]`` simulated on the fly, with new ``augmentation`` draws every epoch."""
    simulator = grid.simulator(device)

    def simulate(batch, generator):
        return simulator.simulate(batch, augmentation, generator=generator, as_tensor=True)

    return SimulatedSource(data.structures[np.asarray(index)], kind, simulate)


@dataclass
class Trained:
    """A trained model, what it was trained on, and its scores on each test set."""

    model: torch.nn.Module
    kind: str
    history: list
    scores: dict  # test name -> {'extinction_group_top1': ..., ...}
    probabilities: dict  # test name -> (n, n_classes)
    n_train: int


def train_and_score(train, validation, tests: dict, *, kind: str, data_key: dict,
                    config: TrainConfig, model: str = "ResNet1d", model_options: dict | None = None,
                    name: str = "model") -> Trained:
    """Train (or load from the model cache) and score on each test set.

    Args:
        train, validation: sources from :func:`source` or :func:`augmented_source`.
        tests: test name -> a stored-pattern source.
        kind: 'space_group' or 'extinction_group'.
        data_key: identifies the training and validation data (crystal set key, grid, index digests).
        config: the training config (its seed is the run's seed).
        model, model_options: the architecture.
        name: recorded in the cache.
    """
    net = build(model, kind, seed=config.seed, **(model_options or {}))
    net, history = train_cached(net, train, validation, config, data=data_key, name=name)
    probabilities, scores = {}, {}
    for test_name, test in tests.items():
        probabilities[test_name] = evaluate.softmax(predict(net, test, device=config.device))
        scores[test_name] = evaluate.score(probabilities[test_name], test.space_groups, kind)
    return Trained(net, kind, history, scores, probabilities, len(train))


def data_key(data: CrystalSet, grid: Grid, splits: dict, **extra) -> dict:
    """The description of training data that the model cache hashes."""
    return {"crystals": data.key, "grid": dataclasses.asdict(grid), "simulator": SIMULATOR_VERSION,
            **{f"{s}_index": index_digest(index) for s, index in splits.items() if s != "test"}, **extra}


# ---------------------------------------------------------------------------------------------
# Test sets for models trained on the fresh-crystal stream

FRESH_TEST_SEED = 987_654_321  # never a training stream's seed: those are small integers
FROM_RANDOM_TEST_SEED = 1001  # the PyXtal crystals held out for every stream-trained model
VALIDATION_SEED = 876_543_210  # the held-out crystals that early stopping and learning curves read
VALIDATION_CRYSTALS = 1980  # 20 per extinction group on average


@dataclass
class TestSet:
    """Prepared patterns on a model's grid and their true space groups."""

    name: str
    patterns: np.ndarray  # (n, n_points) float32, scaled to a maximum of 1
    space_groups: np.ndarray  # (n,)


def stream_test_structures(grid: Grid, *, fresh: int = 1980, from_random_per_group: int = 10) -> dict:
    """The crystals behind :func:`stream_test_sets`' ``fresh`` and ``from_random`` sets, in the same order:
    name -> (pymatgen Structures, space groups (n,))."""
    out = {}
    if fresh:
        batch = crystals.sample_crystals(fresh, seed=FRESH_TEST_SEED)
        out["fresh"] = (batch.to_structures(), batch.space_group.astype(int))
    if from_random_per_group:
        data = balanced_set(from_random_per_group, FROM_RANDOM_TEST_SEED)
        valid = data.valid(grid)
        out["from_random"] = (data.structures[valid].to_structures(), data.space_groups[valid])
    return out


def ceiling(structures, space_groups, grid: Grid, *, floor: float = LOG_FLOOR, samples: int | None = None,
            seed: int = 0, progress: bool = True) -> dict[str, np.ndarray]:
    """The ceiling of what a clean pattern on ``grid`` tells (:func:`xtal_utils.attribution.extinction_oracle`,
    with the log-intensity floor the models see), for a seeded sample of ``samples`` crystals (all when None):
    for each crystal of the sample (n,), its row in the given order (``index``), space group, crystal family and
    the oracle's credit for its true group."""
    simulator = grid.simulator()
    rows = np.arange(len(space_groups))
    if samples is not None and samples < len(rows):
        rows = np.sort(np.random.default_rng(seed).choice(rows, samples, replace=False))
    credit = np.array([attribution.extinction_oracle(structures[i], int(space_groups[i]), simulator, floor=floor)
                       [extinction_group(int(space_groups[i])) - 1]
                       for i in tqdm(rows, desc="ceiling", disable=not progress, leave=False)])
    return {"index": rows, "space_group": np.asarray(space_groups)[rows].astype(int),
            "family": np.array([crystal_family(int(space_groups[i])) for i in rows]), "credit": credit}


def _generator_set(name: str, grid: Grid, n: int, seed: int) -> TestSet:
    """``n`` crystals of the stream's generator (:func:`crystals.sample_crystals`) from ``seed``, clean
    patterns on ``grid``."""
    batch = crystals.sample_crystals(n, seed=seed)
    simulator = grid.simulator()
    chunks = [batch[i: i + SIMULATE_CHUNK] for i in range(0, len(batch), SIMULATE_CHUNK)]
    patterns = np.concatenate([simulator.simulate(c, symmetry=crystals.laue_symmetry_of(c.space_group))
                               for c in chunks])
    return TestSet(name, patterns, batch.space_group.astype(int))


@functools.lru_cache(maxsize=2)  # the runs of a sweep share one grid: simulate its validation set once
def validation_set(grid: Grid, n: int = VALIDATION_CRYSTALS) -> TestSet:
    """Held-out crystals of the stream's generator (seed :data:`VALIDATION_SEED`, which no training stream
    and no test set uses), clean patterns on ``grid``: what a stream model's learning curve and early
    stopping read, so that no test set chooses a model."""
    return _generator_set("validation", grid, n, VALIDATION_SEED)


def stream_test_sets(grid: Grid, *, fresh: int = 1980, from_random_per_group: int = 10,
                     amcsd: bool = True, rruff: bool = True, amcsd_limit: int | None = None,
                     rruff_path=None, progress: bool = True) -> dict[str, TestSet]:
    """The four test sets of a model trained on fresh random crystals, clean patterns on ``grid``.

    - ``fresh``: held-out crystals of the stream's own generator (:func:`crystals.sample_crystals`,
      balanced over extinction groups, a seed no training stream uses);
    - ``from_random``: ``from_random_per_group`` PyXtal ``from_random`` crystals per extinction group
      (:func:`balanced_set`), a different generator, so that a model which learned only the fast
      generator's quirks shows it;
    - ``amcsd``: the test split of de-duplicated AMCSD (grouped split, seed 0), real structures;
    - ``rruff``: the measured RRUFF development patterns, moved onto the grid through d.
    """
    out = {}
    if fresh:
        out["fresh"] = _generator_set("fresh", grid, fresh, FRESH_TEST_SEED)
    if from_random_per_group:
        data = balanced_set(from_random_per_group, FROM_RANDOM_TEST_SEED)
        valid = data.valid(grid)
        out["from_random"] = TestSet("from_random", np.asarray(data.patterns(grid, progress=progress))[valid],
                                     data.space_groups[valid])
    if amcsd:
        data = amcsd_set(amcsd_limit)
        valid = data.valid(grid)
        splits, _ = real_splits(data, deduplicated=True, condition="deduplicated", seed=0, valid=valid)
        test = splits["test"]
        out["amcsd"] = TestSet("amcsd", np.asarray(data.patterns(grid, progress=progress))[test],
                               data.space_groups[test])
    if rruff:
        measured = np.load(rruff_path or DATA / "rruff_dev" / "rruff_dev.npz")
        rows = [resample(measured["two_theta"], np.clip(row, 0, None), grid.two_theta,
                         wavelength=RRUFF_WAVELENGTH, grid_wavelength=grid.wavelength, source="rruff_dev")
                for row in measured["intensity"].astype(np.float64)]
        out["rruff"] = TestSet("rruff", np.stack(rows), measured["space_group"].astype(int))
    return out


def score_on(model: torch.nn.Module, tests: dict[str, TestSet], kind: str, *, device=None,
             batch_size: int = 256) -> dict[str, float]:
    """``{'<test>_eg_top1': ..., '<test>_eg_top5': ...}`` (percent) of ``model`` on each test set."""
    out = {}
    for name, test in tests.items():
        s = score_test(model, test, kind, device=device, batch_size=batch_size)[1]
        out[f"{name}_eg_top1"] = 100 * s["extinction_group_top1"]
        out[f"{name}_eg_top5"] = 100 * s["extinction_group_top5"]
        if kind == "space_group":
            out[f"{name}_sg_top1"] = 100 * s["space_group_top1"]
    return out


# ---------------------------------------------------------------------------------------------
# Models trained on a stream (xtal_utils.train.StreamConfig): the study's models on fresh random crystals,
# a finite pool of them or a database, and classifiers for measured patterns

# The recipe of the shipped classifiers' stream member (benchmarks/stream_classifier.py): fresh random
# crystals, balanced over extinction groups, with a share of a real database's training structures mixed
# into every batch; realism augmentations and impurity phases on every pattern; the real database's class
# frequencies kept out of the training data's balance and applied afterwards as a separate, calibrated
# log-prior (:func:`xtal_utils.evaluate.fit_prior_weight`), which a user can turn off.
CLASSIFIER_RECIPE = StreamConfig(kind="space_group", steps=18_000, augmentation=REALISTIC,
                                 impurity=(0.3, (0.05, 0.3)), database_share=0.25)

# The fields that the cache keys of stream models name; any other field joins a key only while it differs
# from its default, so that the models cached before the field existed stay valid.
_RUN_KEY = ("kind", "steps", "batch_size", "lr", "weight_decay", "label_smoothing", "model", "model_options",
            "pool_batches", "seed")
_RECIPE_KEY = ("kind", "steps", "batch_size", "lr", "weight_decay", "label_smoothing", "model_options",
               "database_share", "impurity", "augmentation", "prior_smoothing", "seed", "crystals")


def _key_value(value):
    return augmentation_key(value) if isinstance(value, Augmentation) else value


def _changed(config: StreamConfig, named: tuple) -> dict:
    default = StreamConfig()
    return {f.name: _key_value(getattr(config, f.name)) for f in dataclasses.fields(config)
            if f.name not in named and getattr(config, f.name) != getattr(default, f.name)}


def recipe_key(config: StreamConfig) -> dict:
    """A classifier's config as cache-key data: the model's intensity scaling by name, ``crystals`` only
    when set."""
    options = dict(config.model_options)
    key = {"kind": config.kind, "steps": config.steps, "batch_size": config.batch_size, "lr": config.lr,
           "weight_decay": config.weight_decay, "label_smoothing": config.label_smoothing,
           "intensity": options.pop("intensity", ResNet1dConfig.intensity),
           "database_share": config.database_share, "impurity": config.impurity,
           "augmentation": _key_value(config.augmentation), "prior_smoothing": config.prior_smoothing,
           "seed": config.seed}
    if config.crystals:
        key["crystals"] = config.crystals
    if options:
        key["model_options"] = tuple(options.items())
    return key | _changed(config, _RECIPE_KEY)


def classifier_key(config: StreamConfig, grid: Grid, database: CrystalSet, train_index) -> dict:
    """What names a classifier of :func:`train_stream_classifier` in ``data/cache/stream_models/``."""
    return {"recipe": recipe_key(config), "grid": dataclasses.asdict(grid), "database": database.key,
            "train": index_digest(train_index), "simulator": SIMULATOR_VERSION, "model": config.model}


def stream_run_key(config: StreamConfig, grid: Grid, database: CrystalSet | None = None, index=None) -> dict:
    """What names a model of :func:`train_on_stream` in ``data/cache/stream_runs/``."""
    run = {name: getattr(config, name) for name in _RUN_KEY} | _changed(config, _RUN_KEY)
    if config.eval_every:  # early stopping reads this set
        run["validation"] = (VALIDATION_CRYSTALS, VALIDATION_SEED)
    rows = None if database is None else {"crystals": database.key, "index": index_digest(index)}
    return {"run": run, "grid": dataclasses.asdict(grid), "simulator": SIMULATOR_VERSION, "database": rows}


def _fit_on_stream(config: StreamConfig, grid: Grid, structures, folder, *, recalibration_batches: int,
                   progress: bool, device, evaluate_fn=None, eval_every: int | None = None) -> tuple:
    """Build the model of ``config``, train (or resume) it on its stream with ``folder/checkpoint.pt``, and
    re-estimate its BatchNorm statistics on ``recalibration_batches`` batches of another seed of the same
    distribution (the same pool or database). Returns the model in eval mode and ``fit_stream``'s state."""
    model = config.build()
    state = fit_stream(model, config.stream(grid.simulator("cpu"), config.seed, database=structures), config,
                       checkpoint=folder / "checkpoint.pt", checkpoint_every=min(500, config.steps),
                       evaluate=evaluate_fn, eval_every=eval_every, progress=progress, device=device)
    calibration = config.stream(grid.simulator("cpu"), config.seed + 10**6, database=structures)
    batches = calibration.batches(start=0, stop=recalibration_batches, device=device)
    model = recalibrate_batchnorm(model, batches, n_batches=recalibration_batches)
    return model.eval(), state


def train_stream_classifier(config: StreamConfig, grid: Grid, database: CrystalSet, splits: dict, *,
                            evaluate_fn=None, eval_every: int = 0, progress: bool = True,
                            device=None) -> dict:
    """Train (or resume, or reuse from the cache) a classifier by ``config``; calibrate it.

    Args:
        config: e.g. :data:`CLASSIFIER_RECIPE`.
        grid: the training grid (its ``fwhm`` is the base peak width before augmentation).
        database: a real database (:func:`amcsd_set`); ``splits['train']`` is mixed into the stream,
            ``splits['validation']`` fits the prior's weight, and the class prior comes from the train split.
        evaluate_fn, eval_every: as in :func:`xtal_utils.train.fit_stream` (a learning curve).
        progress: a progress bar over the steps.

    Returns:
        dict with ``model`` (eval mode, BatchNorm statistics re-estimated on 16 stream batches),
        ``temperature`` (fitted on 2,048 stream patterns of another seed), ``prior`` (the database's
        smoothed class frequencies), ``prior_weight`` (fitted on the augmented validation split),
        ``seconds`` and ``data_seconds`` of training, ``curve``, ``key`` and ``n_database_train``.
    """
    device = default_device(device)
    key = classifier_key(config, grid, database, splits["train"])
    train_structures = database.structures[np.asarray(splits["train"])]
    model, state = _fit_on_stream(config, grid, train_structures, cache_dir("stream_models", key),
                                  recalibration_batches=16, progress=progress, device=device,
                                  evaluate_fn=evaluate_fn, eval_every=eval_every)

    logits, labels = [], []
    temperature_stream = config.stream(grid.simulator("cpu"), config.seed + 2 * 10**6,
                                       database=train_structures, batch_size=256)
    with torch.no_grad():  # the temperature, on the training distribution (another seed)
        for x, y in temperature_stream.batches(start=0, stop=8, device=device):
            logits.append(model(x).float().cpu())
            labels.append(y.cpu())
    temperature = evaluate.fit_temperature(torch.cat(logits).numpy(), torch.cat(labels).numpy() + 1)

    train_sg = database.space_groups[np.asarray(splits["train"])]
    prior = evaluate.frequency_prior(train_sg, config.kind, smoothing=config.prior_smoothing)
    validation = np.asarray(splits["validation"])
    val_patterns = augmented_patterns(database, grid, validation, config.augmentation, seed=config.seed)
    val_source = PatternSource(val_patterns, database.space_groups[validation], config.kind)
    val_logits = predict(model, val_source, device=device)
    prior_weight = evaluate.fit_prior_weight(val_logits, val_source.targets.numpy() + 1, prior,
                                             temperature=temperature)
    return {"model": model, "temperature": temperature, "prior": prior, "prior_weight": prior_weight,
            "seconds": state["seconds"], "data_seconds": state["data_seconds"], "curve": state["curve"],
            "key": key, "n_database_train": len(train_structures)}


def train_on_stream(config: StreamConfig, grid: Grid, *, database: CrystalSet | None = None, index=None,
                    progress: bool = True, device=None) -> tuple[torch.nn.Module, dict]:
    """Train (or resume, or load from the cache) the model of ``config`` on patterns on ``grid``.

    Args:
        config: the :class:`~xtal_utils.train.StreamConfig`.
        grid: radiation, 2-theta grid and peak width of the patterns.
        database, index: train on ``database.structures[index]`` (``config.database_share`` of every batch,
            drawn with replacement, so with the database's class distribution), e.g. AMCSD's training split.
        progress: a progress bar over the steps.

    Returns:
        The model in eval mode (its BatchNorm statistics re-estimated on 32 batches of another seed), and
        ``{'seconds', 'data_seconds', 'patterns_seen', 'distinct_crystals', 'parameters', 'key', 'device'}``.
        The model and this dict are cached in ``data/cache/stream_runs/<key>/``; an interrupted run
        resumes from its checkpoint there.
    """
    if (database is None) != (index is None):
        raise ValueError("train_on_stream takes a database and the index of its training rows together")
    device = default_device(device)
    structures = None if database is None else database.structures[np.asarray(index)]
    key = stream_run_key(config, grid, database, index)
    folder = cache_dir("stream_runs", key)
    if (folder / "model.pt").exists():
        saved = load_checkpoint(folder / "model.pt", device)
        model = build_model(saved["model_spec"])
        model.load_state_dict(saved["model_state"])
        return model.to(device).eval(), saved["info"]

    evaluate_fn = None
    if config.eval_every:
        validation = validation_set(grid)

        def evaluate_fn(model, step):
            scores = score_test(model, validation, config.kind, device=device)[1]
            return {"top1": scores[f"{config.kind}_top1"], "top5": scores[f"{config.kind}_top5"]}

    model, state = _fit_on_stream(config, grid, structures, folder, recalibration_batches=32,
                                  progress=progress, device=device, evaluate_fn=evaluate_fn)
    info = {"seconds": state["seconds"], "data_seconds": state["data_seconds"],
            "patterns_seen": config.patterns_seen,
            "distinct_crystals": config.distinct_crystals if structures is None else len(structures),
            "parameters": n_parameters(model), "key": cache_key(key), "device": device}
    if config.eval_every:  # the learning curve on the validation set, and where early stopping left off
        info |= {"curve": state["curve"], "steps_run": state["step"], "best_step": state["best_step"],
                 "stopped_early": state["stopped"]}
    with atomic_path(folder / "model.pt") as tmp:
        torch.save({"model_spec": model_spec(model), "model_state": model.state_dict(), "info": info}, tmp)
    (folder / "checkpoint.pt").unlink(missing_ok=True)
    return model, info


def score_test(model: torch.nn.Module, test: TestSet, kind: str, *, device=None,
               batch_size: int = 256) -> tuple[np.ndarray, dict]:
    """Probabilities of ``model`` on ``test`` and their scores (:func:`xtal_utils.evaluate.score`,
    fractions)."""
    source = PatternSource(test.patterns, test.space_groups, kind)
    logits = predict(model, source, batch_size=batch_size, device=default_device(device))
    probabilities = evaluate.softmax(logits)
    return probabilities, evaluate.score(probabilities, test.space_groups, kind)


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of a sequence of numbers."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
