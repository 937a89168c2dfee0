"""Random-crystal generation: crystals per second on one process and on all cores, spglib agreement.

    .venv/bin/python benchmarks/generate.py                  # every 5th space group, 4 crystals each
    .venv/bin/python benchmarks/generate.py --step 1 --n-per-group 10

Both runs make the same crystals (same config and seed) through the full pipeline (PyXtal, spglib
check, shards written to HDF5) in temporary folders; the rate counts kept crystals per wall-clock
second. The script checks that both runs gave identical crystals, reports the share of PyXtal's
crystals in which spglib finds the requested space group (the rest are rejected and retried, never
relabelled), per crystal system, and names the hours that 1.23 million crystals would take here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

TARGET = 1_230_000  # balanced random crystals in the study


def run(config, workers: int) -> tuple[float, Path]:
    from xtal_utils import crystals

    root = Path(tempfile.mkdtemp(prefix=f"generate_{workers}_"))
    start = time.perf_counter()
    folder = crystals.generate(config, workers=workers, root=root, progress=False)
    return time.perf_counter() - start, folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", type=int, default=5, help="every step-th space group from 1 to 230")
    parser.add_argument("--n-per-group", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="the 'all cores' run")
    args = parser.parse_args()

    from xtal_utils import crystals
    from xtal_utils.symmetry import crystal_system

    space_groups = tuple(range(1, 231, args.step))
    config = crystals.RandomCrystalConfig(space_groups=space_groups, n_per_group=args.n_per_group,
                                          seed=args.seed, shard_size=args.shard_size)
    crystals.amcsd_statistics()  # read once, outside the timings
    systems = Counter(crystal_system(g) for g in space_groups)
    print(f"{len(space_groups)} space groups ({', '.join(f'{s} {n}' for s, n in systems.items())}), "
          f"{args.n_per_group} crystals each, seed {args.seed}, {os.cpu_count()} cores")

    seconds_1, folder_1 = run(config, workers=1)
    seconds_n, folder_n = run(config, workers=args.workers)
    batch_1, slots_1 = crystals.load_generated(config, root=folder_1.parent)
    batch_n, slots_n = crystals.load_generated(config, root=folder_n.parent)
    summary = crystals.summarize(folder_n)
    for folder in (folder_1, folder_n):
        shutil.rmtree(folder.parent)
    identical = (np.array_equal(slots_1, slots_n) and np.array_equal(batch_1.lattice, batch_n.lattice)
                 and np.array_equal(batch_1.frac_coords, batch_n.frac_coords))
    rate_1, rate_n = len(batch_1) / seconds_1, len(batch_n) / seconds_n

    print(f"\n1 process:    {len(batch_1)} crystals in {seconds_1:.1f} s = {rate_1:.1f} crystals/s")
    print(f"{args.workers} processes: {len(batch_n)} crystals in {seconds_n:.1f} s = {rate_n:.1f} crystals/s "
          f"(x{rate_n / rate_1:.2f})")
    print(f"same crystals from both runs: {identical}")
    print(f"hours for {TARGET:,} crystals on this machine: {TARGET / rate_n / 3600:.1f} h on {args.workers} "
          f"processes ({TARGET / rate_1 / 3600:.1f} h on one)")

    print(f"\nslots {summary['slots']}, kept {summary['kept']}, given up {summary['failed_slots']}; "
          f"PyXtal calls {summary['attempts']}, crystals made {summary['made']}")
    print(f"rejects: {summary['rejects']}")
    print(f"spglib (symprec {config.symprec} A) finds the requested group in "
          f"{100 * summary['spglib_agreement']:.1f} % of PyXtal's crystals")
    made, agree = Counter(), Counter()
    for group, (n_made, n_agree) in summary["made_agree_by_group"].items():
        made[crystal_system(int(group))] += n_made
        agree[crystal_system(int(group))] += n_agree
    kept_systems = Counter(crystal_system(int(g)) for g in batch_n.space_group)
    print("per crystal system: spglib agreement of PyXtal's crystals, kept / requested")
    for system, n in systems.items():
        print(f"  {system:<13s} {100 * agree[system] / max(made[system], 1):5.1f} % of {made[system]:4d}   "
              f"kept {kept_systems[system]:4d} / {n * args.n_per_group:4d}")
    # every kept crystal is re-checked here, independently of the generator's own bookkeeping
    rechecked = [crystals.detect_space_group(s) == s.properties["space_group"]
                 for s in batch_n.to_structures()]
    print(f"re-check of all kept crystals by spglib: {100 * np.mean(rechecked):.1f} % labelled correctly")
    volume_per_atom = np.abs(np.linalg.det(batch_n.lattice)) / batch_n.n_sites
    print(f"volume per atom: median {np.median(volume_per_atom):.1f} A^3 "
          f"(5-95 %: {np.percentile(volume_per_atom, 5):.1f}-{np.percentile(volume_per_atom, 95):.1f}); "
          f"atoms per cell: median {np.median(batch_n.n_sites):.0f}, max {batch_n.n_sites.max()}")
    try:
        table = crystals.load_amcsd(structures=False, progress=False)
        volume_per_atom = np.median(table.volume / table.n_sites)
        print(f"AMCSD for comparison: volume per atom median {volume_per_atom:.1f} A^3, "
              f"atoms per cell median {np.median(table.n_sites):.0f}")
    except Exception as err:  # the comparison is optional; say why it is missing
        print(f"AMCSD comparison skipped: {err}")


if __name__ == "__main__":
    main()
