"""AMCSD in numbers: entries read and skipped by reason, duplicates, class imbalance, split leakage.

    .venv/bin/python benchmarks/amcsd_counts.py                 # full database (cached after the first run)
    .venv/bin/python benchmarks/amcsd_counts.py --fresh         # parse again, in a temporary cache
    .venv/bin/python benchmarks/amcsd_counts.py --structure-matcher  # also StructureMatcher de-duplication

AMCSD is the copy shipped in the PyPI package larixite (amcsd_cif1.db); nothing is downloaded.
The parse time printed is that of the run that filled the cache (its report), and the load time that
of this run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh", action="store_true", help="parse again into a temporary cache")
    parser.add_argument("--structure-matcher", action="store_true",
                        help="also refine (formula, space group) groups with pymatgen's StructureMatcher")
    parser.add_argument("--seed", type=int, default=0, help="seed of the splits")
    args = parser.parse_args()

    if args.fresh:
        import xtal_utils.config as config

        config.CACHE = Path(tempfile.mkdtemp(prefix="amcsd_cache_"))  # cache_dir reads it
    from xtal_utils import crystals
    from xtal_utils.crystals.databases import amcsd_path

    start = time.perf_counter()
    table, report = crystals.load_amcsd(return_report=True, structures=args.structure_matcher)
    load_s = time.perf_counter() - start
    print(f"AMCSD from {amcsd_path()}")
    print(f"entries read: {report['read']}   kept: {report['kept']}   "
          f"skipped: {sum(report['skipped'].values())}")
    for reason, n in report["skipped"].items():
        print(f"  skipped, {reason:<20s} {n}")
    print(f"parse time (run that filled the cache): {report['seconds']:.1f} s   "
          f"({report['read'] / report['seconds']:.0f} entries/s); this load: {load_s:.1f} s")

    agree = (table.space_group == table.space_group_spglib).mean()
    print(f"\nspace group as stored == spglib re-detected (symprec {crystals.SYMPREC} A): {100 * agree:.1f} %"
          f"   (spglib found none: {(table.space_group_spglib == 0).sum()})")
    print(f"disordered entries: {table.disordered.sum()} ({100 * table.disordered.mean():.1f} %)")
    q = np.percentile(table.n_sites, [50, 90, 99, 100])
    print(f"sites per conventional cell: median {q[0]:.0f}, 90% {q[1]:.0f}, 99% {q[2]:.0f}, max {q[3]:.0f}")
    print(f"volume per atom: median {np.median(table.volume / table.n_sites):.1f} A^3")

    dedup = crystals.deduplicate(table)
    counts = dedup.attrs["dedupe"]
    lost = 1 - counts["entries_after"] / counts["entries_before"]
    print(f"\n(reduced formula, space group) groups: {counts['groups_before']} before de-duplication, "
          f"{counts['groups_after']} after")
    print(f"entries: {counts['entries_before']} before, {counts['entries_after']} after "
          f"({100 * lost:.1f} % removed as duplicates; the slides quote about 33 % for ICSD)")
    if args.structure_matcher:
        start = time.perf_counter()
        matched = crystals.deduplicate(table, structure_matcher=True)
        print(f"with StructureMatcher inside each group: {len(matched)} entries kept "
              f"({time.perf_counter() - start:.0f} s)")

    print("\nclass imbalance (entries per crystal system, after de-duplication):")
    for system, n in dedup.crystal_system.value_counts().items():
        print(f"  {system:<13s} {n:6d}  {100 * n / len(dedup):5.1f} %")
    per_group = dedup.space_group.value_counts()
    print(f"space groups present: {len(per_group)} of 230; the 10 largest hold "
          f"{100 * per_group.iloc[:10].sum() / len(dedup):.1f} % of entries; "
          f"{(per_group < 5).sum()} groups have fewer than 5 entries")

    leaky = crystals.split(table, seed=args.seed, condition="duplicated")
    grouped = crystals.split(table, seed=args.seed, condition="deduplicated")
    print(f"\nleakage (test entries with a twin in train), all {len(table)} entries:")
    print(f"  random split of entries ('duplicated' condition): {100 * crystals.leakage(table, leaky):.1f} %")
    print(f"  group-aware split ('deduplicated' condition):     "
          f"{100 * crystals.leakage(table, grouped):.1f} %")


if __name__ == "__main__":
    main()
