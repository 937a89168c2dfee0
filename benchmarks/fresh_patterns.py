"""Fresh patterns per second: new random crystals drawn and simulated, nothing cached or seen before.

    .venv/bin/python benchmarks/fresh_patterns.py                 # 2,048 points, batches of 256
    .venv/bin/python benchmarks/fresh_patterns.py --n-points 4096 --augment

Each batch is a new :func:`xtal_utils.crystals.sample_crystals` draw, simulated with its Laue symmetry
known from the space groups (:func:`xtal_utils.crystals.laue_symmetry_of`), as the training stream does.
Printed in the same run: one process with torch's threads, one process per core (1 thread each), the
same batches with the Laue symmetry detected from the content (the path for structures of unknown
setting), and pymatgen's XRDCalculator on some of the same crystals (peak lists only).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import time

import torch


def _rate(n_points: int, batch_size: int, batches: int, seed: int, threads: int, known: bool,
          augment: bool) -> float:
    torch.set_num_threads(threads)
    from xtal_utils.crystals import laue_symmetry_of, sample_crystals
    from xtal_utils.diffraction import PowderSimulator
    from xtal_utils.pattern_sets import REALISTIC

    simulator = PowderSimulator(n_points=n_points, device="cpu")
    augmentation = REALISTIC if augment else None
    warm = sample_crystals(batch_size, seed=(seed, 2**31))
    simulator.simulate(warm, augmentation, seed=0, symmetry=laue_symmetry_of(warm.space_group))
    start = time.perf_counter()
    for step in range(batches):
        batch = sample_crystals(batch_size, seed=(seed, step))
        simulator.simulate(batch, augmentation, seed=step,
                           symmetry=laue_symmetry_of(batch.space_group) if known else None)
    return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-points", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--augment", action="store_true", help="with pattern_sets.REALISTIC")
    parser.add_argument("--pymatgen", type=int, default=100, help="crystals timed with pymatgen")
    args = parser.parse_args()
    cores = os.cpu_count()
    threads = torch.get_num_threads()
    common = (args.n_points, args.batch_size)
    one = _rate(*common, args.batches, 0, threads, True, args.augment)
    with cf.ProcessPoolExecutor(cores) as pool:
        list(pool.map(_rate, *zip(*[(args.n_points, 16, 2, s, 1, True, args.augment) for s in range(cores)])))
        start = time.perf_counter()
        list(pool.map(_rate, *zip(*[(*common, args.batches, s + 1, 1, True, args.augment) for s in range(cores)])))
        many = cores * args.batches * args.batch_size / (time.perf_counter() - start)
    detected = _rate(*common, max(2, args.batches // 8), 0, threads, False, args.augment)

    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    from xtal_utils.crystals import sample_crystals

    structures = sample_crystals(args.pymatgen, seed=(0, 10**5)).to_structures()
    calculator = XRDCalculator()
    start = time.perf_counter()
    for structure in structures:
        calculator.get_pattern(structure, two_theta_range=(5, 90))
    pmg = len(structures) / (time.perf_counter() - start)
    print(f"fresh crystals, {args.n_points} points, batches of {args.batch_size}"
          f"{', realistic augmentations' if args.augment else ''}:")
    print(f"  1 process, {threads} torch threads, symmetry known:   {one:9,.0f} patterns/s")
    print(f"  {cores} processes, 1 thread each, symmetry known:      {many:9,.0f} patterns/s")
    print(f"  1 process, {threads} threads, symmetry detected:     {detected:9,.0f} patterns/s")
    print(f"  pymatgen XRDCalculator (peaks only), 1 process:   {pmg:9,.0f} patterns/s")
    print(f"  ratios: known/pymatgen x{one / pmg:.0f} (1 process), x{many / pmg:.0f} ({cores} processes); "
          f"known/detected x{one / detected:.1f}")


if __name__ == "__main__":
    main()
