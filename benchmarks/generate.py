"""Random crystals: the vectorised sampler against PyXtal's ``from_random``, in the same run.

    .venv/bin/python benchmarks/generate.py                    # 20,000 crystals checked by spglib
    .venv/bin/python benchmarks/generate.py --check 50000 --pyxtal 92

Prints, for :func:`xtal_utils.crystals.sample_crystals`:
- crystals per second on one process and on all cores (processes each drawing their own batches);
- the share of crystals in which spglib finds the label, at three tolerances, over all 230 groups,
  and the worst groups;
- the cost of the optional minimum-distance check, and volume per atom and atoms per cell beside AMCSD's;
and, for reference, PyXtal's ``from_random`` through :func:`xtal_utils.crystals.random_crystals` (every
``--pyxtal-step``-th space group, one crystal each, spglib-checked as the study's generator does).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import time
from collections import Counter

import numpy as np

SYMPRECS = (1e-3, 1e-2, 0.1)  # Angstrom


def _rate(n_batches: int, batch_size: int, seed: int) -> float:
    from xtal_utils.crystals import sample_crystals

    sample_crystals(batch_size, seed=(seed, 2**31))  # tables loaded outside the timing
    start = time.perf_counter()
    for step in range(n_batches):
        sample_crystals(batch_size, seed=(seed, step))
    return n_batches * batch_size / (time.perf_counter() - start)


def spglib_numbers(batch, symprec: float) -> np.ndarray:
    import spglib

    out = np.zeros(len(batch), dtype=int)
    for i in range(len(batch)):
        m = batch.n_sites[i]
        cell = (batch.lattice[i], batch.frac_coords[i, :m], batch.atomic_number[i, :m, 0])
        dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
        out[i] = dataset.number if dataset is not None else 0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", type=int, default=20_000, help="crystals checked by spglib")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=200, help="batches per process in the timing")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--pyxtal-step", type=int, default=5, help="every n-th group for from_random")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from xtal_utils import crystals
    from xtal_utils.crystals import sample_crystals
    from xtal_utils.crystals.sampling import shortest_distances
    from xtal_utils.symmetry import crystal_system

    crystals.wyckoff_tables()
    rate_1 = _rate(args.batches, args.batch_size, args.seed)
    with cf.ProcessPoolExecutor(args.workers) as pool:
        _ = list(pool.map(_rate, [2] * args.workers, [8] * args.workers, range(args.workers)))  # warm
        start = time.perf_counter()
        list(pool.map(_rate, [args.batches] * args.workers, [args.batch_size] * args.workers,
                      range(args.workers)))
        seconds = time.perf_counter() - start
    rate_n = args.workers * args.batches * args.batch_size / seconds
    print(f"sample_crystals, batches of {args.batch_size}: {rate_1:,.0f} crystals/s on 1 process, "
          f"{rate_n:,.0f}/s on {args.workers} (x{rate_n / rate_1:.2f}; the wall time includes pool start-up)")

    start = time.perf_counter()
    batch = sample_crystals(args.check, seed=(args.seed, 10**6), balance="space_group")
    checked = time.perf_counter() - start
    print(f"\n{args.check:,} crystals, uniform over the 230 space groups ({checked:.1f} s in one call)")
    for symprec in SYMPRECS:
        found = spglib_numbers(batch, symprec)
        agree = found == batch.space_group
        print(f"  spglib (symprec {symprec:g} A) finds the label in {100 * agree.mean():.2f} %; "
              f"higher symmetry in {100 * ((found > batch.space_group) & ~agree).mean():.2f} %, "
              f"none found in {100 * (found == 0).mean():.2f} %")
        if symprec == SYMPRECS[0]:
            wrong = Counter(batch.space_group[~agree].tolist())
            size = Counter(batch.space_group.tolist())
            worst = sorted(wrong, key=lambda g: -wrong[g] / size[g])[:10]
            print("  worst groups (label: wrong / drawn -> what spglib found): " + ", ".join(
                f"{g}: {wrong[g]}/{size[g]} -> {Counter(found[batch.space_group == g][~agree[batch.space_group == g]].tolist()).most_common(1)[0][0]}"
                for g in worst) if worst else "  no group wrong")
            systems = Counter(crystal_system(int(g)) for g in batch.space_group[~agree])
            print(f"  wrong by crystal system: {dict(systems)}")

    volume_per_atom = np.abs(np.linalg.det(batch.lattice)) / batch.n_sites
    print(f"\nvolume per atom: median {np.median(volume_per_atom):.1f} A^3 "
          f"(5-95 %: {np.percentile(volume_per_atom, 5):.1f}-{np.percentile(volume_per_atom, 95):.1f}); "
          f"atoms per cell: median {np.median(batch.n_sites):.0f}, 95 % {np.percentile(batch.n_sites, 95):.0f}, "
          f"max {batch.n_sites.max()}")
    shortest = shortest_distances(batch[:2000])
    print(f"shortest interatomic distance: median {np.median(shortest):.2f} A; "
          f"{100 * (shortest < 1.0).mean():.1f} % of crystals have two atoms closer than 1.0 A")
    start = time.perf_counter()
    for step in range(20):
        sample_crystals(args.batch_size, seed=(args.seed, step), min_distance=1.0)
    rate_d = 20 * args.batch_size / (time.perf_counter() - start)
    left = shortest_distances(sample_crystals(2000, seed=(args.seed, 7), min_distance=1.0))
    print(f"with min_distance=1.0 A: {rate_d:,.0f} crystals/s on 1 process "
          f"(x{rate_d / rate_1:.2f}); {100 * (left < 1.0).mean():.1f} % still closer after 10 redraws")

    space_groups = tuple(range(1, 231, args.pyxtal_step))
    crystals.amcsd_statistics()
    start = time.perf_counter()
    made = crystals.random_crystals(space_groups, 1, seed=args.seed, workers=1)
    seconds = time.perf_counter() - start
    rate_p = len(made) / seconds
    print(f"\nPyXtal from_random (the study's generator, spglib-checked): {len(made)} crystals of "
          f"{len(space_groups)} groups in {seconds:.1f} s = {rate_p:.1f} crystals/s on 1 process")
    print(f"sample_crystals / from_random on 1 process: x{rate_1 / rate_p:,.0f}")
    try:
        table = crystals.load_amcsd(structures=False, progress=False)
        print(f"AMCSD for comparison: volume per atom median {np.median(table.volume / table.n_sites):.1f} A^3, "
              f"atoms per cell median {np.median(table.n_sites):.0f}, 95 % {np.percentile(table.n_sites, 95):.0f}")
    except Exception as err:  # the comparison is optional; say why it is missing
        print(f"AMCSD comparison skipped: {err}")


if __name__ == "__main__":
    main()
