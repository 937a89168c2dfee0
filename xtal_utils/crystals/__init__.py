"""Crystal data: real databases as one tidy table, de-duplication and splits, balanced random crystals.

- :mod:`~xtal_utils.crystals.databases`: AMCSD (shipped in the PyPI package larixite, read offline),
  folders of CIF files, ICSD-style CSV exports; bad entries skipped and counted by reason; seeded
  samples of AMCSD structures for benchmarks.
- :mod:`~xtal_utils.crystals.splits`: de-duplication by (reduced formula, space group), seeded
  group-aware or deliberately leaky splits, and the leakage of any split.
- :mod:`~xtal_utils.crystals.sampling`: random crystals drawn as arrays from PyXtal's Wyckoff tables,
  vectorised over a batch, for the fresh-crystal training stream.
- :mod:`~xtal_utils.crystals.generation`: PyXtal crystals balanced per space group or extinction
  group, checked by spglib, seeded per crystal, sharded, resumable, local or on Dask.
"""

from xtal_utils.crystals.databases import (
    ANGLE_TOLERANCE,
    COLUMNS,
    SKIP_REASONS,
    SYMPREC,
    BadEntry,
    detect_space_group,
    load_amcsd,
    load_cif_folder,
    load_icsd_export,
    parse_entry,
    sample_amcsd,
)
from xtal_utils.crystals.generation import (
    RandomCrystalConfig,
    amcsd_statistics,
    generate,
    load_generated,
    random_crystals,
    slots,
    summarize,
)
from xtal_utils.crystals.sampling import laue_symmetry_of, sample_crystals, wyckoff_tables
from xtal_utils.crystals.splits import GROUP_KEY, SPLITS, deduplicate, leakage, n_groups, split

__all__ = [
    "ANGLE_TOLERANCE", "COLUMNS", "GROUP_KEY", "SKIP_REASONS", "SPLITS", "SYMPREC", "BadEntry",
    "RandomCrystalConfig", "amcsd_statistics", "deduplicate", "detect_space_group", "generate",
    "laue_symmetry_of", "leakage", "load_amcsd", "load_cif_folder", "load_generated", "load_icsd_export", "n_groups",
    "parse_entry", "random_crystals", "sample_amcsd", "sample_crystals", "slots", "split", "summarize", "wyckoff_tables",
]
