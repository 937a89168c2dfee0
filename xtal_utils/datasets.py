"""Batches for training and evaluation: stored patterns, or patterns simulated on the fly.

A *source* has ``len()``, ``targets`` (class indices 0..C-1) and
``batches(batch_size, *, epoch, seed, shuffle, device, rank, world_size)``, which yields
``(x, y)`` with x of shape (batch, channels, n_points) on ``device``. The order of an epoch, and any
random augmentation in it, is a function of ``(seed, epoch)`` alone, so that a resumed run sees
exactly the batches an uninterrupted one would have seen. With ``world_size > 1`` (DistributedDataParallel)
each rank takes every ``world_size``-th sample of the same permutation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import numpy as np
import torch

from xtal_utils.crystals import laue_symmetry_of, sample_crystals
from xtal_utils.diffraction.laue import laue_symmetry
from xtal_utils.models import add_sin2theta_channel
from xtal_utils.structures import StructureBatch
from xtal_utils.symmetry import labels_of


def epoch_generator(seed: int, epoch: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch Generator seeded from (seed, epoch) only."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
    return generator


def _order(n: int, *, epoch: int, seed: int, shuffle: bool, rank: int, world_size: int) -> torch.Tensor:
    order = torch.randperm(n, generator=epoch_generator(seed, epoch)) if shuffle else torch.arange(n)
    return order[rank::world_size]


class PatternSource:
    """Patterns held in memory (or memory-mapped).

    Args:
        patterns: (n, n_points) intensities, each scaled to a maximum of 1.
        space_groups: (n,) true space groups; the targets follow from ``kind``.
        kind: 'space_group' or 'extinction_group'.
        two_theta: (n_points,) grid in degrees; needed only with ``sin2theta_channel``.
        sin2theta_channel: add sin^2(theta) as a second input channel.
    """

    def __init__(self, patterns, space_groups, kind: str, *, two_theta=None, sin2theta_channel: bool = False):
        self.patterns = torch.as_tensor(np.asarray(patterns, dtype=np.float32))
        self.space_groups = np.asarray(space_groups)
        if len(self.patterns) != len(self.space_groups):
            raise ValueError(f"{len(self.patterns)} patterns but {len(self.space_groups)} labels")
        if not torch.isfinite(self.patterns).all():
            raise ValueError("patterns contain NaN or infinite values")
        self._set_labels(kind, two_theta, sin2theta_channel)

    def _set_labels(self, kind: str, two_theta, sin2theta_channel: bool) -> None:
        self.kind = kind
        self.targets = torch.as_tensor(labels_of(self.space_groups, kind) - 1)
        self.sin2theta_channel = sin2theta_channel
        self.two_theta = None if two_theta is None else torch.as_tensor(np.asarray(two_theta), dtype=torch.float32)
        if sin2theta_channel and self.two_theta is None:
            raise ValueError("sin2theta_channel needs the two_theta grid")

    def __len__(self) -> int:
        return len(self.patterns)

    @property
    def in_channels(self) -> int:
        return 2 if self.sin2theta_channel else 1

    def _inputs(self, intensity: torch.Tensor) -> torch.Tensor:
        if self.sin2theta_channel:
            return add_sin2theta_channel(intensity, self.two_theta.to(intensity.device))
        return intensity[:, None, :]

    def batches(self, batch_size: int, *, epoch: int = 0, seed: int = 0, shuffle: bool = False,
                device="cpu", rank: int = 0, world_size: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = _order(len(self), epoch=epoch, seed=seed, shuffle=shuffle, rank=rank, world_size=world_size)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            x = self.patterns[index].to(device, non_blocking=True)
            yield self._inputs(x), self.targets[index].to(device, non_blocking=True)


class SimulatedSource(PatternSource):
    """Patterns simulated on the training device from stored structures, new augmentations each epoch.

    Args:
        structures: a :class:`~xtal_utils.structures.StructureBatch`.
        kind: 'space_group' or 'extinction_group'.
        simulate: ``simulate(structure_batch, generator) -> (b, n_points)`` tensor on the device, e.g.
            a bound method of :class:`~xtal_utils.diffraction.PowderSimulator` with its augmentations.
        two_theta, sin2theta_channel: as for :class:`PatternSource`.
    """

    def __init__(self, structures, kind: str, simulate: Callable, *, two_theta=None, sin2theta_channel: bool = False):
        self.structures = structures
        self.simulate = simulate
        self.space_groups = np.asarray(structures.space_group)
        if (self.space_groups < 1).any():
            raise ValueError("every structure needs its space group to train on")
        self._set_labels(kind, two_theta, sin2theta_channel)

    def __len__(self) -> int:
        return len(self.structures)

    def batches(self, batch_size: int, *, epoch: int = 0, seed: int = 0, shuffle: bool = False,
                device="cpu", rank: int = 0, world_size: int = 1):
        order = _order(len(self), epoch=epoch, seed=seed, shuffle=shuffle, rank=rank, world_size=world_size)
        generator = epoch_generator(seed, epoch + 1_000_003 * (rank + 1), device)  # augmentations
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size].numpy()
            x = torch.as_tensor(self.simulate(self.structures[index], generator), device=device)
            yield self._inputs(x.float()), self.targets[index].to(device)


class CrystalStream:
    """An endless stream of fresh random crystals, simulated batch by batch: never the same pattern twice.

    Batch ``step`` is a pure function of ``(seed, step)``: its crystals are
    :func:`~xtal_utils.crystals.sample_crystals` with ``seed=(seed, step)`` and its augmentations come
    from a torch generator seeded the same way, so a run resumed at step ``s`` sees exactly the
    batches an uninterrupted run would have seen from ``s`` on. Crystals come in the Wyckoff tables'
    settings with their space groups known, so the simulator is handed their Laue symmetry
    (:func:`~xtal_utils.crystals.laue_symmetry_of`) instead of detecting it.

    Args:
        simulator: a :class:`~xtal_utils.diffraction.PowderSimulator` (its device is where batches are made).
        kind: 'space_group' or 'extinction_group': the targets.
        seed: root of every batch's randomness.
        batch_size: crystals per batch.
        augmentation: optional realism augmentations, drawn afresh for every pattern.
        balance, weights, space_groups: which classes are drawn, see :func:`~xtal_utils.crystals.sample_crystals`.
        crystal_options: other arguments of :func:`~xtal_utils.crystals.sample_crystals` (``max_atoms``,
            ``min_distance``, ...).
        sin2theta_channel: add sin^2(theta) as a second input channel.
        database: optional stored structures with their space groups (a
            :class:`~xtal_utils.structures.StructureBatch`, e.g. AMCSD's training split) of which
            ``round(database_share * batch_size)`` rows, drawn with replacement, join every batch in
            place of as many random crystals. Their Laue symmetry is found once, here.
        database_share: that share, 0 to 1.
        impurity: optional ``(probability, (low, high))``: each pattern gets, with that probability, the
            pattern of a second phase (a random crystal, or a database row with ``database_share``'s
            probability) scaled to a maximum of ``low`` to ``high`` of the main phase's strongest peak.
            The second phase's peaks have the same profile augmentations but no background or noise of
            their own; the label stays the main phase's.
        pool_batches: optional ``P``: a finite training set of ``P * batch_size`` distinct random
            crystals instead of an endless stream. Batch ``step`` then holds the crystals of pool batch
            ``c`` (drawn as batch ``c`` of the endless stream would be), where ``c`` runs through a new
            permutation of ``0 .. P-1`` in every pass over the pool: the pool's batches keep their
            composition and change their order (for data-scaling experiments).
    """

    def __init__(self, simulator, kind: str, *, seed: int, batch_size: int = 64, augmentation=None,
                 balance: str = "extinction_group", weights=None, space_groups=None,
                 crystal_options: dict | None = None, sin2theta_channel: bool = False,
                 database=None, database_share: float = 0.0,
                 impurity: tuple[float, tuple[float, float]] | None = None, pool_batches: int | None = None):
        self.simulator = simulator
        self.kind = kind
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.augmentation = augmentation
        self.sample_options = dict(balance=balance, weights=weights, space_groups=space_groups,
                                   **(crystal_options or {}))
        self.sin2theta_channel = sin2theta_channel
        self.two_theta = torch.as_tensor(simulator.two_theta, dtype=torch.float32)
        if not 0.0 <= database_share <= 1.0:
            raise ValueError(f"database_share must be between 0 and 1, got {database_share}")
        if database_share and (database is None or len(database) == 0):
            raise ValueError("database_share > 0 needs a database of at least one structure")
        self.database = database if database_share else None
        self.database_share = float(database_share)
        if self.database is not None:
            if (np.asarray(self.database.space_group) < 1).any():
                raise ValueError("every database structure needs its space group")
            self._database_symmetry = laue_symmetry(self.database)
        if impurity is not None:
            probability, (low, high) = impurity
            if not (0 <= probability <= 1 and 0 < low <= high):
                raise ValueError(f"impurity must be (probability in [0, 1], (low, high) with 0 < low <= high), got {impurity}")
        self.impurity = impurity
        if pool_batches is not None and int(pool_batches) < 1:
            raise ValueError(f"pool_batches must be at least 1, got {pool_batches}")
        self.pool_batches = None if pool_batches is None else int(pool_batches)

    @property
    def in_channels(self) -> int:
        return 2 if self.sin2theta_channel else 1

    def crystals(self, step: int):
        """The StructureBatch of batch ``step`` (random crystals first, then any database rows)."""
        return self._draw(self.batch_size, (self.seed, self.crystal_batch(step)))[0]

    def crystal_batch(self, step: int) -> int:
        """Which batch of crystals step ``step`` uses: ``step`` itself, or its pool batch (``pool_batches``)."""
        step = int(step)
        if self.pool_batches is None:
            return step
        n_pass, position = divmod(step, self.pool_batches)
        order = np.random.default_rng(np.random.SeedSequence([self.seed, n_pass, 8])).permutation(self.pool_batches)
        return int(order[position])

    def _draw(self, n: int, seed: tuple):
        """``n`` crystals and their Laue symmetry: random ones, and database rows in their share."""
        n_database = int(round(self.database_share * n)) if self.database is not None else 0
        if n_database < n:
            fresh = sample_crystals(n - n_database, seed=seed, **self.sample_options)
            symmetry = laue_symmetry_of(fresh.space_group)
        if n_database == 0:
            return fresh, symmetry
        rows = np.random.default_rng(np.random.SeedSequence([*seed, 3])).integers(0, len(self.database), n_database)
        stored = self.database[rows], tuple(part[rows] for part in self._database_symmetry)
        if n_database == n:  # database_share 1: a real database's distribution, streamed with replacement
            return stored
        batch = StructureBatch.concatenate([fresh, stored[0]])
        return batch, tuple(np.concatenate([a, b]) for a, b in zip(symmetry, stored[1]))

    def batch(self, step: int, device=None, *, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of batch ``step``: x (batch, channels, n_points) float32, y (batch,) class indices.

        With ``world_size`` > 1, only rank ``rank``'s share: the ``rank``-th of ``world_size`` equal slices of
        the batch's crystals, its augmentations drawn from ``(seed, step, rank, world_size)``. Clean patterns
        of the slices together are the whole batch's."""
        crystals, symmetry = self._draw(self.batch_size, (self.seed, self.crystal_batch(step)))
        part = ()
        if world_size > 1:
            if self.batch_size % world_size:
                raise ValueError(f"a batch of {self.batch_size} does not split into {world_size} equal shares")
            share = self.batch_size // world_size
            rows = np.arange(rank * share, (rank + 1) * share)
            crystals, symmetry, part = crystals[rows], tuple(a[rows] for a in symmetry), (rank, world_size)
        crystals, x = self._simulate(crystals, symmetry, self.augmentation, (self.seed, int(step), 1, *part))
        if self.impurity is not None:
            x = self._add_impurities(x, int(step), part)
        y = torch.as_tensor(labels_of(crystals.space_group, self.kind) - 1)
        device = device or x.device
        x = x.float().to(device)
        x = add_sin2theta_channel(x, self.two_theta.to(device)) if self.sin2theta_channel else x[:, None, :]
        return x, y.to(device)

    def _simulate(self, crystals, symmetry, augmentation, key: tuple):
        """``(crystals, patterns)``: the patterns as a tensor, augmentations drawn from a generator seeded by ``key``.

        A crystal the simulator cannot use (no reflection in the 2-theta range, about one random crystal
        in a million) is replaced by a new random crystal of the same space group, drawn from ``key``, so
        that a long run never stops on one and the batch stays a function of (seed, step).
        """
        for attempt in range(8):
            generator = torch.Generator(device=self.simulator.device)
            generator.manual_seed(int(np.random.SeedSequence(list(key)).generate_state(1)[0]))
            try:
                return crystals, self.simulator.simulate(crystals, augmentation, generator=generator, as_tensor=True,
                                                         symmetry=symmetry)
            except ValueError:
                bad = [i for i in range(len(crystals)) if not self._simulates(crystals[[i]])]
                if not bad or attempt == 7:
                    raise
            crystals, symmetry = self._replace(crystals, symmetry, bad, (*key, 7, attempt))

    def _replace(self, crystals, symmetry, bad: list[int], seed: tuple):
        """``crystals`` and ``symmetry`` with rows ``bad`` replaced by new random crystals of their space groups."""
        options = {k: v for k, v in self.sample_options.items() if k not in ("balance", "weights", "space_groups")}
        rows = [crystals[[i]] for i in range(len(crystals))]
        symmetry = tuple(np.array(part, copy=True) for part in symmetry)
        for i in bad:
            rows[i] = sample_crystals(1, seed=(*seed, i), space_groups=[int(crystals.space_group[i])], **options)
            for part, new in zip(symmetry, laue_symmetry_of(rows[i].space_group)):
                part[i] = new[0]
        return StructureBatch.concatenate(rows), symmetry

    def _simulates(self, crystal) -> bool:
        try:
            self.simulator.simulate(crystal)
            return True
        except ValueError:
            return False

    def _add_impurities(self, x: torch.Tensor, step: int, part: tuple = ()) -> torch.Tensor:
        """``x`` with a second phase added to a random subset of its patterns, rescaled to a maximum of 1;
        ``part`` is (rank, world size) for a rank's share of the batch."""
        probability, (low, high) = self.impurity
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, step, 4, *part]))
        rows = np.flatnonzero(rng.random(len(x)) < probability)
        if len(rows) == 0:
            return x
        weight = torch.as_tensor(rng.uniform(low, high, len(rows)), dtype=x.dtype, device=x.device)
        crystals, symmetry = self._draw(len(rows), (self.seed, step, 5, *part))
        profile = self.augmentation
        if profile is not None:  # the second phase's peaks only: background and noise are the main pattern's
            profile = dataclasses.replace(profile, background=0.0, poisson_counts=None, gaussian_noise=0.0,
                                          noise_level=None,
                                          intensity_scale=None, coverage=None)
        _, second = self._simulate(crystals, symmetry, profile, (self.seed, step, 6, *part))
        x = x.clone()
        index = torch.as_tensor(rows, device=x.device)
        second = second.to(x)
        if self.augmentation is not None and self.augmentation.coverage is not None:
            second = second * (x[index] != 0)  # measured only where the main pattern was
        mixed = x[index] + weight[:, None] * second
        x[index] = mixed / mixed.amax(dim=1, keepdim=True).clamp_min(1e-12)
        return x

    def batches(self, *, start: int = 0, stop: int | None = None, device=None, workers: int = 0,
                prefetch: int = 4, rank: int = 0, world_size: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start, start + 1, ...`` up to ``stop`` (endless when None), in order.

        Args:
            device: where the batches go (default the simulator's device).
            workers: background processes that make batches ahead of the training step (each with one
                torch thread, on the CPU); 0 makes them in this process, as on a GPU.
            prefetch: batches each worker keeps ready.
            rank, world_size: this process's share of every batch (see :meth:`batch`).
        """
        steps = _Steps(start, stop)
        if workers == 0:
            for step in steps:
                yield self.batch(step, device, rank=rank, world_size=world_size)
            return
        loader = torch.utils.data.DataLoader(_StreamDataset(self, rank, world_size), batch_size=None, sampler=steps,
                                             num_workers=workers, prefetch_factor=prefetch,
                                             worker_init_fn=_one_thread, persistent_workers=False)
        for x, y in loader:
            yield x.to(device or "cpu"), y.to(device or "cpu")


class _Steps(torch.utils.data.Sampler):
    def __init__(self, start: int, stop: int | None):
        self.start, self.stop = int(start), stop

    def __iter__(self):
        step = self.start
        while self.stop is None or step < self.stop:
            yield step
            step += 1

    def __len__(self):
        return (self.stop - self.start) if self.stop is not None else 2**62


class _StreamDataset(torch.utils.data.Dataset):
    def __init__(self, stream: CrystalStream, rank: int = 0, world_size: int = 1):
        self.stream, self.rank, self.world_size = stream, rank, world_size

    def __getitem__(self, step):
        return self.stream.batch(step, "cpu", rank=self.rank, world_size=self.world_size)


def _one_thread(_worker_id) -> None:
    torch.set_num_threads(1)
