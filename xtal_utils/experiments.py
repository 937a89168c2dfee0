"""What the study's notebooks share: the data sets, their cached patterns, and train-then-score.

The notebooks stay thin by calling these recipes:

- :func:`amcsd_set` and :func:`balanced_set` give a :class:`CrystalSet` (structure arrays, true space
  groups, and the key that identifies them);
- :meth:`CrystalSet.patterns` simulates every crystal once per :class:`Grid` and caches the result in
  ``data/cache/patterns/<key>/``; a crystal the simulator cannot handle becomes a NaN row, is counted,
  and is left out of every split;
- :func:`real_splits` and :func:`random_splits` give index arrays (train, validation, test);
- :func:`train_and_score` trains one model (cached by :func:`xtal_utils.train.train_cached`, so a later
  notebook that asks for the same model, data and seed reuses it) and scores it on named test sets.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from xtal_utils import crystals, evaluate
from xtal_utils.config import atomic_path, cache_dir, cache_key, default_device, write_json_atomic
from xtal_utils.datasets import PatternSource, SimulatedSource
from xtal_utils.diffraction import CU_KALPHA1, SIMULATOR_VERSION, Augmentation, PowderSimulator
from xtal_utils.models import MODELS
from xtal_utils.structures import StructureBatch
from xtal_utils.symmetry import n_classes
from xtal_utils.train import TrainConfig, predict, train_cached

SIMULATE_CHUNK = 512  # structures per simulate() call while filling a pattern cache
PATTERN_CACHE_BYTES = 8e9  # larger pattern sets (paper scale) are simulated on the fly instead of stored

# What measured laboratory patterns show and clean simulations lack (see notebook 08): broader and
# varied peaks, a small zero error, strong texture, a weak residual background (published patterns
# are often background-subtracted) and counting noise. Their baseline noise is weaker than RRUFF's
# (benchmarks/noise_levels.py); matching it with ``noise_level`` did not help (README).
REALISTIC = Augmentation(
    fwhm_scale=(0.7, 2.0), crystallite_size=(30.0, 300.0), strain=0.003, zero_shift=0.08,
    march_dollase=(0.5, 1.5), background=0.1, poisson_counts=(100.0, 20000.0), intensity_scale=None)
# Constant-wavelength neutron instruments: the same effects, on a wide 2-theta grid of which a measured
# pattern covers only part once moved there through d (DyAG on G4.1 at 2.43 A fills about a third).
NEUTRON_REALISTIC = dataclasses.replace(REALISTIC, coverage=(0.25, 1.0))
NEUTRON_MIN_COVERAGE = 0.2  # share of the neutron grid a measured pattern must cover


def augmentation_key(augmentation: Augmentation) -> dict:
    """The augmentation as cache-key data. Options added to :class:`Augmentation` later are left out
    while they are off, so that the models cached before them stay valid."""
    key = dataclasses.asdict(augmentation)
    for option in ("coverage", "noise_level", "cell_strain"):
        if not key.get(option):
            key.pop(option, None)
    return key


@dataclass(frozen=True)
class Grid:
    """How a set of patterns is simulated: radiation, 2-theta grid and peak width."""

    n_points: int = 2048
    two_theta_min: float = 5.0  # degrees
    two_theta_max: float = 90.0  # degrees
    fwhm: float = 0.1  # degrees, Gaussian
    radiation: str = "xray"
    wavelength: float = CU_KALPHA1  # Angstrom

    def simulator(self, device=None) -> PowderSimulator:
        return PowderSimulator(radiation=self.radiation, wavelength=self.wavelength,
                               two_theta_range=(self.two_theta_min, self.two_theta_max),
                               n_points=self.n_points, fwhm=self.fwhm, device=default_device(device))

    @property
    def two_theta(self) -> np.ndarray:
        return np.linspace(self.two_theta_min, self.two_theta_max, self.n_points)


def _save_npy_atomic(path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.save would append '.npy' to a name
        np.save(f, array)


def _digest(index) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(index, dtype=np.int64)).tobytes()).hexdigest()[:16]


@dataclass
class CrystalSet:
    """Crystals with their labels, and the key that identifies them in every cache.

    Attributes:
        name: a short label for tables ('AMCSD', 'balanced').
        key: a JSON-able description precise enough to tell two sets apart (hashed into cache keys).
        structures: the structure arrays, n crystals.
        space_groups: (n,) true space groups.
        table: the database table aligned with ``structures`` (real databases only).
    """

    name: str
    key: dict
    structures: StructureBatch
    space_groups: np.ndarray
    table: pd.DataFrame | None = None
    _patterns: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.space_groups)

    def stored(self, grid: Grid) -> bool:
        """Whether the patterns on ``grid`` fit the pattern cache (else they are simulated when needed)."""
        return len(self) * grid.n_points * 4 <= PATTERN_CACHE_BYTES

    def patterns(self, grid: Grid, *, progress: bool = True) -> np.ndarray:
        """(n, n_points) clean simulated patterns, NaN rows for crystals that failed (cached)."""
        if not self.stored(grid):
            raise MemoryError(f"{self.name}: {len(self)} patterns of {grid.n_points} points exceed "
                              f"PATTERN_CACHE_BYTES; use source(), which simulates them on the fly")
        if grid in self._patterns:
            return self._patterns[grid]
        folder = cache_dir("patterns", {"crystals": self.key, "grid": dataclasses.asdict(grid),
                                        "simulator": SIMULATOR_VERSION})
        path = folder / "patterns.npy"
        if not path.exists():
            simulator = grid.simulator()
            out = np.full((len(self), grid.n_points), np.nan, dtype=np.float32)
            failures: dict[str, int] = {}
            starts = range(0, len(self), SIMULATE_CHUNK)
            for start in tqdm(starts, desc=f"simulating {self.name}", disable=not progress, leave=False):
                rows = np.arange(start, min(start + SIMULATE_CHUNK, len(self)))
                try:
                    out[rows] = simulator.simulate(self.structures[rows])
                except ValueError:  # one bad crystal: do the chunk one by one and count the bad ones
                    for i in rows:
                        try:
                            out[i] = simulator.simulate(self.structures[np.array([i])])[0]
                        except ValueError as error:
                            reason = str(error).split(":")[-1].strip()[:80]
                            failures[reason] = failures.get(reason, 0) + 1
            _save_npy_atomic(path, out)
            write_json_atomic(folder / "failures.json", failures)
        self._patterns[grid] = np.load(path, mmap_mode="r")
        return self._patterns[grid]

    def valid(self, grid: Grid) -> np.ndarray:
        """(n,) bool: crystals whose pattern could be simulated on ``grid`` (all, for on-the-fly sets)."""
        if not self.stored(grid):
            return np.ones(len(self), dtype=bool)
        return ~np.isnan(self.patterns(grid)[:, 0])


def amcsd_set(limit: int | None = None) -> CrystalSet:
    """Every AMCSD entry kept by :func:`xtal_utils.crystals.load_amcsd`, in table order."""
    table = crystals.load_amcsd(limit=limit, structures=False)
    config = crystals.databases.amcsd_config(limit)
    batch = StructureBatch.load(cache_dir("amcsd", config) / "structures.h5")
    if len(batch) != len(table):
        raise RuntimeError(f"the AMCSD cache {cache_dir('amcsd', config)} is inconsistent; delete it")
    return CrystalSet("AMCSD", {"amcsd": cache_key(config)}, batch, table["space_group"].to_numpy(), table)


def balanced_set(n_per_group: int, seed: int, *, workers: int | None = None) -> CrystalSet:
    """Random crystals, ``n_per_group`` per extinction group, generated once and then read from cache."""
    config = crystals.RandomCrystalConfig(n_per_group=n_per_group, balance="extinction_group", seed=seed)
    crystals.generate(config, workers=workers)
    batch, slots = crystals.load_generated(config)
    return CrystalSet("balanced", {"random_crystals": cache_key(dataclasses.asdict(config))}, batch,
                      slots[:, 0].copy())


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


def augmented_patterns(data: CrystalSet, grid: Grid, index, augmentation: Augmentation, *, seed: int) -> np.ndarray:
    """A fixed augmented draw of ``data[index]`` (e.g. a validation set for augmented training), cached."""
    index = np.asarray(index)
    folder = cache_dir("patterns", {"crystals": data.key, "grid": dataclasses.asdict(grid), "index": _digest(index),
                                    "simulator": SIMULATOR_VERSION,
                                    "augmentation": augmentation_key(augmentation), "seed": seed})
    path = folder / "patterns.npy"
    if not path.exists():
        _save_npy_atomic(path, grid.simulator().simulate(data.structures[index], augmentation, seed=seed))
    return np.load(path)


@dataclass
class Trained:
    """A trained model, what it was trained on, and its scores on each test set."""

    model: torch.nn.Module
    kind: str
    history: list
    scores: dict  # test name -> {'extinction_group_top1': ..., ...}
    probabilities: dict  # test name -> (n, n_classes)
    n_train: int


def build(model: str, kind: str, *, seed: int, **options) -> torch.nn.Module:
    """A fresh model of class ``model`` ('ResNet1d' or 'Transformer1d') with one output per class, its
    initial weights drawn after ``torch.manual_seed(seed)``: a run never depends on what ran before it."""
    torch.manual_seed(seed)
    return MODELS[model](n_classes(kind), **options)


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
            **{f"{s}_index": _digest(index) for s, index in splits.items() if s != "test"}, **extra}


def frequency_prior_scores(data: CrystalSet, splits: dict, kind: str, test: str = "test") -> dict:
    """Scores on ``splits[test]`` of the baseline that always answers the training split's frequencies."""
    prior = evaluate.frequency_prior(data.space_groups[splits["train"]], kind)
    truth = data.space_groups[splits[test]]
    return evaluate.score(np.tile(prior, (len(truth), 1)), truth, kind)


def epochs_for(n_train: int, epochs: int, min_steps: int, batch_size: int) -> int:
    """``epochs``, raised so that a small training set still gets at least ``min_steps`` optimiser steps."""
    steps_per_epoch = max(1, -(-n_train // batch_size))
    return max(epochs, -(-min_steps // steps_per_epoch))


# ---------------------------------------------------------------------------------------------
# Test sets for models trained on the fresh-crystal stream

FRESH_TEST_SEED = 987_654_321  # never a training stream's seed: those are small integers
FROM_RANDOM_TEST_SEED = 1001  # the PyXtal crystals held out for every stream-trained model
RRUFF_WAVELENGTH = 1.5418  # Angstrom, Cu K-alpha as recorded in data/rruff_dev/SOURCE.md


@dataclass
class TestSet:
    """Prepared patterns on a model's grid and their true space groups."""

    name: str
    patterns: np.ndarray  # (n, n_points) float32, scaled to a maximum of 1
    space_groups: np.ndarray  # (n,)


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
    from xtal_utils.patterns import resample
    from xtal_utils.paths import DATA

    simulator = grid.simulator()
    out = {}
    if fresh:
        batch = crystals.sample_crystals(fresh, seed=FRESH_TEST_SEED)
        patterns = np.concatenate([simulator.simulate(batch[i: i + SIMULATE_CHUNK],
                                                      symmetry=crystals.laue_symmetry_of(batch.space_group[i: i + SIMULATE_CHUNK]))
                                   for i in range(0, len(batch), SIMULATE_CHUNK)])
        out["fresh"] = TestSet("fresh", patterns, batch.space_group.astype(int))
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


@dataclass(frozen=True)
class StreamRecipe:
    """How a classifier for measured patterns is trained on the fresh-crystal stream.

    Fresh random crystals, balanced over extinction groups, with a share of a real database's training
    structures mixed into every batch; realism augmentations and impurity phases on every pattern; the
    real database's class frequencies kept out of the training data's balance and applied afterwards as
    a separate, calibrated log-prior (:func:`xtal_utils.evaluate.fit_prior_weight`), which a user can
    turn off.
    """

    kind: str = "space_group"
    steps: int = 18_000  # optimiser steps; patterns seen = steps x batch_size
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    intensity: str = "log"  # how the model scales intensities first (inside the model)
    database_share: float = 0.25  # share of each batch taken from the database's training split
    impurity: tuple | None = (0.3, (0.05, 0.3))  # probability of a second phase, and its height range
    augmentation: Augmentation = REALISTIC
    prior_smoothing: float = 1.0  # pseudo-count per class of the database prior
    seed: int = 0
    crystals: tuple = ()  # (name, value) pairs for sample_crystals, e.g. (("orbit_scale", 2.5), ("max_orbits", 24))


def recipe_key(recipe: StreamRecipe) -> dict:
    """The recipe as cache-key data; ``crystals`` is left out while empty, so that models cached before it
    existed stay valid."""
    key = {**dataclasses.asdict(recipe), "augmentation": augmentation_key(recipe.augmentation)}
    if not recipe.crystals:
        key.pop("crystals")
    return key


def train_stream_classifier(recipe: StreamRecipe, grid: Grid, database: CrystalSet, splits: dict, *,
                            evaluate_fn=None, eval_every: int = 0, progress: bool = True, device=None) -> dict:
    """Train (or resume, or reuse from the cache) a classifier by ``recipe``; calibrate it.

    Args:
        recipe: the :class:`StreamRecipe`.
        grid: the training grid (its ``fwhm`` is the base peak width before augmentation).
        database: a real database (:func:`amcsd_set`); ``splits['train']`` is mixed into the stream,
            ``splits['validation']`` fits the prior's weight, and the class prior comes from the train split.
        evaluate_fn, eval_every: as in :func:`xtal_utils.train.fit_stream` (a learning curve).
        progress: a progress bar over the steps.

    Returns:
        dict with ``model`` (eval mode, BatchNorm statistics re-estimated on 32 stream batches),
        ``temperature`` (fitted on 2,048 stream patterns of another seed), ``prior`` (the database's
        smoothed class frequencies), ``prior_weight`` (fitted on the augmented validation split),
        ``seconds`` and ``data_seconds`` of training, ``curve`` and ``key``.
    """
    from xtal_utils.datasets import CrystalStream
    from xtal_utils.train import StreamConfig, fit_stream, recalibrate_batchnorm

    device = default_device(device)
    key = {"recipe": recipe_key(recipe),
           "grid": dataclasses.asdict(grid), "database": database.key, "train": _digest(splits["train"]),
           "simulator": SIMULATOR_VERSION, "model": "ResNet1d"}
    folder = cache_dir("stream_models", key)
    train_structures = database.structures[np.asarray(splits["train"])]

    def stream(seed: int, batch_size: int = recipe.batch_size):
        return CrystalStream(grid.simulator("cpu"), recipe.kind, seed=seed, batch_size=batch_size,
                             augmentation=recipe.augmentation, database=train_structures,
                             database_share=recipe.database_share, impurity=recipe.impurity,
                             crystal_options=dict(recipe.crystals))

    model = build("ResNet1d", recipe.kind, seed=recipe.seed, intensity=recipe.intensity)
    config = StreamConfig(steps=recipe.steps, lr=recipe.lr, weight_decay=recipe.weight_decay,
                          label_smoothing=recipe.label_smoothing, seed=recipe.seed, eval_every=eval_every,
                          checkpoint_every=min(500, recipe.steps), progress=progress, device=device)
    state = fit_stream(model, stream(recipe.seed), config, evaluate=evaluate_fn, checkpoint=folder / "checkpoint.pt")
    model = recalibrate_batchnorm(model, stream(recipe.seed + 10**6).batches(start=0, stop=32, device=device)).eval()

    logits, labels = [], []
    with torch.no_grad():  # the temperature, on the training distribution (another seed)
        for x, y in stream(recipe.seed + 2 * 10**6, 256).batches(start=0, stop=8, device=device):
            logits.append(model(x).float().cpu())
            labels.append(y.cpu())
    temperature = evaluate.fit_temperature(torch.cat(logits).numpy(), torch.cat(labels).numpy() + 1)

    train_sg = database.space_groups[np.asarray(splits["train"])]
    prior = evaluate.frequency_prior(train_sg, recipe.kind, smoothing=recipe.prior_smoothing)
    validation = np.asarray(splits["validation"])
    val_patterns = augmented_patterns(database, grid, validation, recipe.augmentation, seed=recipe.seed)
    val_source = PatternSource(val_patterns, database.space_groups[validation], recipe.kind)
    val_logits = predict(model, val_source, device=device)
    prior_weight = evaluate.fit_prior_weight(val_logits, val_source.targets.numpy() + 1, prior,
                                             temperature=temperature)
    return {"model": model, "temperature": temperature, "prior": prior, "prior_weight": prior_weight,
            "seconds": state["seconds"], "data_seconds": state["data_seconds"], "curve": state["curve"],
            "key": key, "n_database_train": len(train_structures)}


# ---------------------------------------------------------------------------------------------
# The study's models trained on a stream: fresh random crystals, a finite pool of them, or a database


@dataclass(frozen=True)
class StreamRun:
    """One model trained on :class:`~xtal_utils.datasets.CrystalStream` batches, by a budget of steps.

    The defaults are the recipe of ``models/balanced-reference.pt`` (benchmarks/learning_curve.py):
    clean patterns, log intensities, label smoothing 0.1, 11,500 steps of 64 fresh crystals.
    """

    kind: str = "extinction_group"
    steps: int = 11_500  # optimiser steps; patterns seen = steps x batch_size
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    model: str = "ResNet1d"
    model_options: tuple = (("intensity", "log"),)  # (name, value) pairs for the model's class
    pool_batches: int | None = None  # a finite pool of pool_batches x batch_size crystals; None = fresh ones
    seed: int = 0  # the stream's and the initial weights' seed

    @property
    def patterns_seen(self) -> int:
        return self.steps * self.batch_size

    @property
    def distinct_crystals(self) -> int:
        """Distinct crystals the model can see: the pool, or every pattern of the stream."""
        return self.patterns_seen if self.pool_batches is None else self.pool_batches * self.batch_size


def train_on_stream(run: StreamRun, grid: Grid, *, database: CrystalSet | None = None, index=None,
                    progress: bool = True, device=None) -> tuple[torch.nn.Module, dict]:
    """Train (or resume, or load from the cache) the model of ``run`` on clean patterns on ``grid``.

    Args:
        run: the :class:`StreamRun`.
        grid: radiation, 2-theta grid and peak width of the patterns.
        database, index: train on ``database.structures[index]`` instead of random crystals (drawn with
            replacement, so with the database's class distribution), e.g. AMCSD's training split.
        progress: a progress bar over the steps.

    Returns:
        The model in eval mode (its BatchNorm statistics re-estimated on 32 batches of another seed), and
        ``{'seconds', 'data_seconds', 'patterns_seen', 'distinct_crystals', 'parameters', 'key'}``.
        The model and this dict are cached in ``data/cache/stream_runs/<key>/``; an interrupted run
        resumes from its checkpoint there.
    """
    from xtal_utils.datasets import CrystalStream
    from xtal_utils.models import build_model, model_spec, n_parameters
    from xtal_utils.train import StreamConfig, fit_stream, load_checkpoint, recalibrate_batchnorm

    if (database is None) != (index is None):
        raise ValueError("train_on_stream takes a database and the index of its training rows together")
    device = default_device(device)
    structures = None if database is None else database.structures[np.asarray(index)]
    key = {"run": dataclasses.asdict(run), "grid": dataclasses.asdict(grid), "simulator": SIMULATOR_VERSION,
           "database": None if database is None else {"crystals": database.key, "index": _digest(index)}}
    folder = cache_dir("stream_runs", key)
    if (folder / "model.pt").exists():
        saved = load_checkpoint(folder / "model.pt", device)
        model = build_model(saved["model_spec"])
        model.load_state_dict(saved["model_state"])
        return model.to(device).eval(), saved["info"]

    def stream(seed: int):
        return CrystalStream(grid.simulator("cpu"), run.kind, seed=seed, batch_size=run.batch_size,
                             database=structures, database_share=0.0 if structures is None else 1.0,
                             pool_batches=run.pool_batches)

    model = build(run.model, run.kind, seed=run.seed, **dict(run.model_options))
    config = StreamConfig(steps=run.steps, lr=run.lr, weight_decay=run.weight_decay,
                          label_smoothing=run.label_smoothing, seed=run.seed,
                          checkpoint_every=min(500, run.steps), progress=progress, device=device)
    state = fit_stream(model, stream(run.seed), config, checkpoint=folder / "checkpoint.pt")
    # BatchNorm statistics from the training distribution: the same pool or database, another seed's order
    model = recalibrate_batchnorm(model, stream(run.seed + 10**6).batches(start=0, stop=32, device=device),
                                  n_batches=32).eval()
    info = {"seconds": state["seconds"], "data_seconds": state["data_seconds"], "patterns_seen": run.patterns_seen,
            "distinct_crystals": run.distinct_crystals if structures is None else len(structures),
            "parameters": n_parameters(model), "key": cache_key(key), "device": device}
    with atomic_path(folder / "model.pt") as tmp:
        torch.save({"model_spec": model_spec(model), "model_state": model.state_dict(), "info": info}, tmp)
    (folder / "checkpoint.pt").unlink(missing_ok=True)
    return model, info


def score_test(model: torch.nn.Module, test: TestSet, kind: str, *, device=None,
               batch_size: int = 256) -> tuple[np.ndarray, dict]:
    """Probabilities of ``model`` on ``test`` and their scores (:func:`xtal_utils.evaluate.score`, fractions)."""
    source = PatternSource(test.patterns, test.space_groups, kind)
    probabilities = evaluate.softmax(predict(model, source, batch_size=batch_size, device=default_device(device)))
    return probabilities, evaluate.score(probabilities, test.space_groups, kind)


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of a sequence of numbers."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
