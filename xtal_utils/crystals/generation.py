"""Balanced random crystals from PyXtal: the same number per space group or per extinction group.

Recipe for one crystal of space group ``G`` (every draw from that crystal's own generator):

1. **Elements.** The number of elements follows the distribution of distinct elements per AMCSD
   entry, clipped to ``[2, max_species]`` (one element on one orbit often has more symmetry than
   ``G``); the elements are drawn without replacement with their AMCSD frequencies (the fraction
   of entries that contain them).
2. **Orbits.** The number of occupied Wyckoff orbits follows AMCSD's number of sites in the
   asymmetric unit, clipped to ``[n_elements, max_orbits]``. The first two orbits (one for each
   of the first two elements) take Wyckoff positions with the most free parameters that fit the
   atom budget (raised where needed so that the first orbit has at least two), distinct when
   possible: free coordinates are what keep the crystal from having more symmetry than ``G``.
   Further orbits take any position that fits; positions without free parameters are used at
   most once. The multiplicities are therefore Wyckoff-compatible by construction and are handed
   to PyXtal as explicit ``sites``. (larixite's AMCSD file holds entries with at most 9
   asymmetric-unit sites, so this distribution is of small structures.)
3. **Cell.** PyXtal's own volume estimate (sum of atomic volumes from its radii, times
   ``volume_factor``, set so that the median volume per atom is close to AMCSD's), and PyXtal's
   distance checks.
4. **Check.** The crystal is kept only when spglib, at :data:`SYMPREC`, re-detects ``G``. A
   mismatch is rejected (never relabelled) and the slot tries again, up to ``max_attempts`` times.

Seeding: the generator for slot ``(G, index)`` is ``default_rng(SeedSequence(seed, spawn_key=(G,
index)))``, so a crystal does not depend on the number of workers, the shard size or the order in
which shards finish. Crystals are written in shards (``StructureBatch`` HDF5 + a JSON of counts,
each atomically) under ``data/cache/random_crystals/<key>/``; a shard whose HDF5 exists is done,
so an interrupted run resumes where it stopped. Work runs on all local cores (a process pool) or
on a Dask cluster when a scheduler address is given; the main process writes every shard.

A crystal never depends on the machine's speed: an attempt that runs past ``timeout`` seconds (wall
clock, a guard against a hang) stops the run with an error instead of moving on to another draw.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import os
import signal
import sqlite3
import threading
import warnings
from collections import Counter
from functools import cache
from pathlib import Path

import numpy as np
from pymatgen.core import Element
from tqdm.auto import tqdm

from xtal_utils.config import cache_dir, cache_key, write_json_atomic
from xtal_utils.crystals.databases import MAX_Z, SYMPREC, amcsd_path, detect_space_group
from xtal_utils.structures import StructureBatch
from xtal_utils.symmetry import check_space_group, extinction_groups

BALANCES = ("space_group", "extinction_group")
REJECT_REASONS = ("pyxtal_failed", "symmetry_mismatch")
MIN_SPECIES = 2  # one element on one orbit is often more symmetric than the group asked for


@dataclasses.dataclass(frozen=True)
class RandomCrystalConfig:
    """Everything that decides which crystals come out; its content hash names the cache folder.

    Attributes:
        space_groups: ITA numbers to draw from.
        n_per_group: crystals per space group, or per extinction group when ``balance`` says so.
        balance: 'space_group', or 'extinction_group' (slots of a class go round-robin to its
            space groups among ``space_groups``).
        seed: root of every crystal's SeedSequence.
        max_atoms: atoms in the conventional cell, raised for a group whose smallest Wyckoff
            position with two or more free parameters, plus its smallest free one, needs more.
        max_species: most elements per crystal.
        max_orbits: most occupied Wyckoff orbits per crystal.
        max_attempts: PyXtal calls per slot before the slot is given up.
        volume_factor: PyXtal's ``factor`` on its atomic-volume estimate. PyXtal's default 1.1 gives
            a median of about 20 A^3 per atom; 0.75 brings it near AMCSD's 12.8 A^3 (both printed
            by benchmarks/generate.py) at about 25 % more time per crystal.
        symprec: spglib tolerance (Angstrom) of the acceptance check.
        timeout: seconds (wall clock) an attempt may take before the run stops as hung.
        shard_size: slots per shard file.
    """

    space_groups: tuple[int, ...] = tuple(range(1, 231))
    n_per_group: int = 1
    balance: str = "space_group"
    seed: int = 0
    max_atoms: int = 48
    max_species: int = 4
    max_orbits: int = 8
    max_attempts: int = 5
    volume_factor: float = 0.75
    symprec: float = SYMPREC
    timeout: float = 300.0
    shard_size: int = 64

    def __post_init__(self):
        object.__setattr__(self, "space_groups", tuple(check_space_group(int(g)) for g in self.space_groups))
        if self.balance not in BALANCES:
            raise ValueError(f"balance must be one of {BALANCES}, got {self.balance!r}")
        if self.n_per_group < 0 or self.shard_size < 1 or self.max_attempts < 1:
            raise ValueError("n_per_group must be >= 0, shard_size and max_attempts >= 1")


def slots(config: RandomCrystalConfig) -> list[tuple[int, int]]:
    """The (space_group, index) of every crystal to make, in a fixed order (the shard order)."""
    if config.balance == "space_group":
        return [(g, i) for g in sorted(set(config.space_groups)) for i in range(config.n_per_group)]
    groups = sorted(set(config.space_groups))
    labels = extinction_groups(groups)
    out = []
    for eg in sorted(set(labels.tolist())):
        members = [g for g, label in zip(groups, labels) if label == eg]
        for i in range(config.n_per_group):
            out.append((members[i % len(members)], i // len(members)))
    return out


def crystal_rng(seed: int, space_group: int, index: int) -> np.random.Generator:
    """The generator of one slot: independent of workers, shards and order."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(space_group, index)))


# ---------------------------------------------------------------------------------------------
# Statistics of real crystals that make the random ones plausible


@cache
def amcsd_statistics() -> dict:
    """Element frequencies and size distributions of AMCSD, read from larixite's SQLite file.

    Returns:
        ``elements`` (symbols), ``element_p`` (their probabilities), ``n_species_p`` and
        ``n_orbits_p`` (probability of 0, 1, 2, ... distinct elements / asymmetric-unit sites).
    """
    with sqlite3.connect(f"file:{amcsd_path()}?mode=ro", uri=True) as db:
        ids = {int(r[0]) for r in db.execute("select id from cif")}
        per_entry: dict[int, set] = {}
        for cif_id, symbol in db.execute("select cif_id, element from cif_elements"):
            if int(cif_id) in ids:
                per_entry.setdefault(int(cif_id), set()).add(symbol)
        n_orbits = [len(json.loads(r[0])) for r in db.execute("select atoms_sites from cif")
                    if r[0] not in (None, "<missing>")]
    counts = Counter(s for symbols in per_entry.values() for s in symbols
                     if Element.is_valid_symbol(s) and Element(s).Z <= MAX_Z)
    elements = sorted(counts)
    frequency = np.array([counts[e] for e in elements], dtype=float)
    n_species = np.bincount([len(s) for s in per_entry.values()]).astype(float)
    n_orbits = np.bincount(n_orbits).astype(float)
    return {"elements": elements, "element_p": (frequency / frequency.sum()).tolist(),
            "n_species_p": (n_species / n_species.sum()).tolist(),
            "n_orbits_p": (n_orbits / n_orbits.sum()).tolist()}


def _clipped_draw(rng, probabilities, low: int, high: int) -> int:
    return int(np.clip(rng.choice(len(probabilities), p=probabilities), low, high))


@cache
def _wyckoff(space_group: int):
    """Labels ('4a', ...), multiplicities and free parameters of a group's Wyckoff positions."""
    from pyxtal.symmetry import Group  # slow to import; only the PyXtal generator needs it

    positions = Group(space_group).Wyckoff_positions
    labels = [f"{wp.multiplicity}{wp.letter}" for wp in positions]
    multiplicity = np.array([wp.multiplicity for wp in positions])
    return labels, multiplicity, np.array([wp.get_dof() for wp in positions])


def draw_composition(space_group: int, rng: np.random.Generator, config: RandomCrystalConfig,
                     stats: dict) -> tuple[list[str], list[int], list[list[str]]]:
    """Elements, atoms per element and Wyckoff sites (PyXtal's ``species, numIons, sites``)."""
    labels, multiplicity, dof = _wyckoff(space_group)
    free = dof > 0
    smallest = np.sort(multiplicity[free])
    # room for one orbit with >= 2 free parameters (x,0,0-type orbits alone often add symmetry in
    # cubic groups) plus the smallest free orbit
    budget = max(config.max_atoms, multiplicity[dof >= 2].min() + smallest[0])
    n_species = _clipped_draw(rng, stats["n_species_p"], MIN_SPECIES, config.max_species)
    n_orbits = _clipped_draw(rng, stats["n_orbits_p"], n_species, max(config.max_orbits, n_species))
    species = [str(e) for e in rng.choice(stats["elements"], n_species, replace=False, p=stats["element_p"])]
    used = np.zeros(len(labels), dtype=bool)
    sites: dict[str, list[str]] = {}
    atoms: dict[str, int] = {}
    for k in range(n_orbits):
        left = budget - sum(atoms.values())
        if k < 2:  # the two orbits that pin the symmetry: most free parameters, distinct if possible
            fits = free & (multiplicity <= left - (smallest[0] if k == 0 else 0))
            if fits.any():
                fits &= dof == dof[fits].max()
            if k == 1 and (fits & ~used).any():
                fits &= ~used
        else:
            fits = (multiplicity <= left) & (free | ~used)
        if not fits.any():
            break
        j = int(rng.choice(np.flatnonzero(fits)))
        used[j] = True
        element = species[k] if k < n_species else species[int(rng.integers(n_species))]
        sites.setdefault(element, []).append(labels[j])
        atoms[element] = atoms.get(element, 0) + int(multiplicity[j])
    elements = list(sites)
    return elements, [atoms[e] for e in elements], [sites[e] for e in elements]


# ---------------------------------------------------------------------------------------------
# One crystal, one shard


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout


def _with_timeout(seconds: float, function, *args, **kwargs):
    """Call ``function``, abandoning it after ``seconds`` when running in a main thread (SIGALRM);
    in other threads (Dask workers) it runs unbounded, limited by PyXtal's own ``max_count``."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        return function(*args, **kwargs)
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return function(*args, **kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _pyxtal_structure(space_group, species, numIons, sites, rng, factor):
    from pyxtal import pyxtal  # slow to import; only the PyXtal generator needs it

    crystal = pyxtal()
    crystal.from_random(3, space_group, species, numIons, factor=factor, sites=sites,
                        random_state=rng, max_count=3)
    if not crystal.valid:
        raise RuntimeError("PyXtal returned an invalid crystal")
    return crystal.to_pymatgen()


def make_crystal(space_group: int, index: int, config: RandomCrystalConfig, stats: dict):
    """One slot's crystal, or None; and its counts (attempts, PyXtal outputs, spglib agreements,
    rejects by reason)."""
    rng = crystal_rng(config.seed, space_group, index)
    counts = Counter()
    for _ in range(config.max_attempts):
        counts["attempts"] += 1
        species, numIons, sites = draw_composition(space_group, rng, config, stats)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = _with_timeout(config.timeout, _pyxtal_structure, space_group, species,
                                          numIons, sites, rng, config.volume_factor)
        except _Timeout:
            raise RuntimeError(f"space group {space_group}, slot {index}: PyXtal ran past {config.timeout} s; "
                               "raise RandomCrystalConfig.timeout if the machine is slow") from None
        except Exception:  # PyXtal raises bare RuntimeErrors/ValueErrors when a cell does not fit
            counts["pyxtal_failed"] += 1
            continue
        counts["made"] += 1
        if detect_space_group(structure, symprec=config.symprec) != space_group:
            counts["symmetry_mismatch"] += 1
            continue
        counts["agree"] += 1
        structure.properties["space_group"] = space_group
        return structure, counts
    return None, counts


def make_shard(config: RandomCrystalConfig, stats: dict, shard: int) -> tuple[StructureBatch, dict]:
    """Crystals of the ``shard``-th block of :func:`slots`, as arrays, and the shard's counts."""
    todo = slots(config)[shard * config.shard_size:(shard + 1) * config.shard_size]
    structures, kept, total, by_group = [], [], Counter(), {}
    for space_group, index in todo:
        structure, counts = make_crystal(space_group, index, config, stats)
        total.update(counts)
        made_agree = by_group.setdefault(str(space_group), [0, 0])
        made_agree[0] += counts["made"]
        made_agree[1] += counts["agree"]
        if structure is not None:
            structures.append(structure)
            kept.append([space_group, index])
    meta = {"shard": shard, "slots": len(todo), "kept": kept, "failed_slots": len(todo) - len(kept),
            "attempts": total["attempts"], "made": total["made"], "agree": total["agree"],
            "rejects": {r: total[r] for r in REJECT_REASONS}, "made_agree_by_group": by_group}
    return StructureBatch.from_structures(structures), meta


# ---------------------------------------------------------------------------------------------
# Many shards: local processes or Dask, resumable


def n_shards(config: RandomCrystalConfig) -> int:
    return -(-len(slots(config)) // config.shard_size)


def output_dir(config: RandomCrystalConfig, root: str | Path | None = None) -> Path:
    """``root/<key>/`` when ``root`` is given, else ``data/cache/random_crystals/<key>/``."""
    if root is None:
        return cache_dir("random_crystals", config)
    path = Path(root) / cache_key(config)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _shard_paths(folder: Path, shard: int) -> tuple[Path, Path]:
    return folder / f"shard_{shard:05d}.h5", folder / f"shard_{shard:05d}.json"


def _write_shard(folder: Path, shard: int, batch: StructureBatch, meta: dict) -> None:
    """Counts first, arrays last: a shard is done exactly when its HDF5 file exists."""
    h5, js = _shard_paths(folder, shard)
    write_json_atomic(js, meta)
    batch.save(h5)


def done_shards(folder: Path) -> set[int]:
    return {int(p.stem.split("_")[1]) for p in folder.glob("shard_*.h5")
            if _shard_paths(folder, int(p.stem.split("_")[1]))[1].exists()}


def _local_results(config, stats, todo, workers):
    if workers == 1:
        for shard in todo:
            yield make_shard(config, stats, shard)
        return
    with cf.ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(make_shard, config, stats, shard) for shard in todo]
        for future in cf.as_completed(futures):
            yield future.result()


def _dask_results(config, stats, todo, scheduler):
    from dask.distributed import Client, as_completed  # slow to import; only a Dask run needs it

    with Client(scheduler) as client:
        futures = client.map(make_shard, [config] * len(todo), [stats] * len(todo), todo, pure=False)
        for future in as_completed(futures):
            yield future.result()


def generate(config: RandomCrystalConfig, *, workers: int | None = None, scheduler: str | None = None,
             root: str | Path | None = None, progress: bool = True) -> Path:
    """Make (or finish making) every shard of ``config``; returns the folder that holds them.

    Args:
        config: what to make.
        workers: local processes (default all cores; 1 runs in this process). Ignored with a scheduler.
        scheduler: address of a Dask distributed scheduler, e.g. 'tcp://10.0.0.1:8786'.
        root: folder under which ``<key>/`` is made; default ``data/cache/random_crystals``.
        progress: tqdm bar over shards.

    The folder ends with ``summary.json`` (totals over shards) once every shard is written.
    """
    folder = output_dir(config, root)
    for stale in folder.glob(".*.tmp"):  # half-written files of a killed run
        stale.unlink(missing_ok=True)
    todo = [s for s in range(n_shards(config)) if s not in done_shards(folder)]
    if todo:
        stats = amcsd_statistics()
        results = (_dask_results(config, stats, todo, scheduler) if scheduler
                   else _local_results(config, stats, todo, workers or os.cpu_count() or 1))
        with tqdm(total=len(todo), desc="random crystals", unit="shard", disable=not progress) as bar:
            for batch, meta in results:
                _write_shard(folder, meta["shard"], batch, meta)
                bar.update()
    write_json_atomic(folder / "summary.json", summarize(folder))
    return folder


def summarize(folder: str | Path) -> dict:
    """Totals over the shards written in ``folder``: slots, kept, attempts, crystals PyXtal made,
    those in which spglib found the requested group (``agree``, also per space group as
    ``made_agree_by_group``), rejects by reason and ``spglib_agreement`` = agree / made."""
    total, rejects, by_group = Counter(), Counter(), {}
    metas = [json.loads(p.read_text()) for p in sorted(Path(folder).glob("shard_*.json"))]
    for meta in metas:
        total.update({k: meta[k] for k in ("slots", "failed_slots", "attempts", "made", "agree")})
        total["kept"] += len(meta["kept"])
        rejects.update(meta["rejects"])
        for group, (made, agree) in meta["made_agree_by_group"].items():
            by_group[int(group)] = [a + b for a, b in zip(by_group.get(int(group), [0, 0]), (made, agree))]
    out = {"shards": len(metas), **{k: total[k] for k in ("slots", "kept", "failed_slots", "attempts",
                                                           "made", "agree")},
           "rejects": {r: rejects[r] for r in REJECT_REASONS},
           "made_agree_by_group": dict(sorted(by_group.items()))}
    out["spglib_agreement"] = total["agree"] / total["made"] if total["made"] else float("nan")
    return out


def load_generated(config: RandomCrystalConfig,
                   root: str | Path | None = None) -> tuple[StructureBatch, np.ndarray]:
    """All crystals of a finished run, in slot order.

    Returns:
        The batch (n crystals) and ``slots`` (n, 2) int: the (space_group, index) of each.

    Raises:
        FileNotFoundError: naming the folder, when some shard is missing (run :func:`generate`).
    """
    folder = output_dir(config, root)
    missing = sorted(set(range(n_shards(config))) - done_shards(folder))
    if missing:
        raise FileNotFoundError(f"{folder}: shards {missing[:5]}... of {n_shards(config)} are missing; "
                                "run xtal_utils.crystals.generate(config) to finish them")
    batches, kept = [], []
    for shard in range(n_shards(config)):
        h5, js = _shard_paths(folder, shard)
        batches.append(StructureBatch.load(h5))
        kept.extend(json.loads(js.read_text())["kept"])
    return StructureBatch.concatenate(batches), np.array(kept, dtype=int).reshape(-1, 2)


def random_crystals(space_groups, n_per_group: int, *, seed: int, workers: int = 1, **options) -> list:
    """``n_per_group`` random crystals of each space group, as pymatgen Structures, in memory.

    Each carries its (spglib-confirmed) space group in ``structure.properties['space_group']``.
    A slot that fails ``max_attempts`` times is left out, so a group may get fewer crystals.

    Args:
        space_groups: ITA numbers.
        n_per_group: crystals per space group.
        seed: the same seed gives the same crystals for any ``workers``.
        workers: local processes.
        **options: other :class:`RandomCrystalConfig` fields (``max_atoms``, ``symprec``, ...).
    """
    config = RandomCrystalConfig(space_groups=tuple(space_groups), n_per_group=n_per_group, seed=seed,
                                 **options)
    stats = amcsd_statistics()
    shards = list(range(n_shards(config)))
    results = sorted(_local_results(config, stats, shards, workers), key=lambda r: r[1]["shard"])
    return [s for batch, meta in results for s in _structures_of(batch, meta)]


def _structures_of(batch: StructureBatch, meta: dict) -> list:
    structures = batch.to_structures() if len(batch) else []
    for structure, (space_group, index) in zip(structures, meta["kept"]):
        structure.properties["space_group"] = space_group
        structure.properties["slot"] = (space_group, index)
    return structures
