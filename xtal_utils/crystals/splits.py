"""De-duplication and train/validation/test splits, with and without the leak of repeated entries.

A database holds the same compound many times over (repeat measurements, other temperatures and
pressures). When twins land on both sides of a split, test accuracy measures recall of the training
set. Twins are entries with the same **(reduced formula, space group)**; optionally pymatgen's
``StructureMatcher`` refines each such group, so that genuinely different structures of one formula
and group (e.g. order-disorder variants) are kept apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pymatgen.analysis.structure_matcher import StructureMatcher

GROUP_KEY = ("reduced_formula", "space_group")
SPLITS = ("train", "validation", "test")
CONDITIONS = ("deduplicated", "duplicated")


def group_ids(table: pd.DataFrame, by=GROUP_KEY) -> np.ndarray:
    """(n,) int: one id per distinct ``by`` tuple, numbered in order of first appearance."""
    return table.groupby(list(by), sort=False, dropna=False).ngroup().to_numpy()


def n_groups(table: pd.DataFrame, by=GROUP_KEY) -> int:
    """Number of distinct ``by`` tuples (e.g. (reduced formula, space group) groups)."""
    return int(table.groupby(list(by), dropna=False).ngroups)


def _matcher_clusters(structures) -> np.ndarray:
    """Cluster labels (n,) of structures by pymatgen's StructureMatcher (default tolerances)."""
    labels = np.full(len(structures), -1)
    groups = StructureMatcher().group_structures(list(structures))
    index = {id(s): i for i, s in enumerate(structures)}
    for label, members in enumerate(groups):
        for s in members:
            labels[index[id(s)]] = label
    return labels


def deduplicate(table: pd.DataFrame, *, by=GROUP_KEY, structure_matcher: bool = False) -> pd.DataFrame:
    """Keep the first entry of each (reduced formula, space group) group.

    Args:
        table: the tidy table (:mod:`xtal_utils.crystals.databases`); its row order decides which
            twin is kept.
        by: the columns that define twins.
        structure_matcher: within each group, keep one entry per StructureMatcher cluster instead of
            one per group (needs the ``structure`` column; slow on large groups).

    Returns:
        The kept rows, in their original order and with their original index; ``attrs["dedupe"]``
        holds the counts ``{"entries_before", "entries_after", "groups_before", "groups_after"}``.
    """
    if structure_matcher:
        if "structure" not in table:
            raise ValueError("deduplicate(structure_matcher=True) needs the 'structure' column")
        cluster = np.zeros(len(table), dtype=int)
        for _, rows in table.groupby(list(by), sort=False, dropna=False).indices.items():
            if len(rows) > 1:
                cluster[rows] = _matcher_clusters(table["structure"].iloc[rows].tolist())
        keep = ~pd.DataFrame({"g": group_ids(table, by), "c": cluster}).duplicated().to_numpy()
    else:
        keep = ~table.duplicated(subset=list(by)).to_numpy()
    out = table[keep].copy()
    out.attrs["dedupe"] = {
        "entries_before": len(table), "entries_after": len(out),
        "groups_before": n_groups(table, by), "groups_after": n_groups(out, by),
    }
    return out


def split(table: pd.DataFrame, fractions=(0.8, 0.1, 0.1), *, seed: int,
          condition: str = "deduplicated", by=GROUP_KEY) -> np.ndarray:
    """Assign each entry to 'train', 'validation' or 'test'.

    Args:
        table: the tidy table (duplicates in it or not).
        fractions: target shares of entries in train, validation and test (sum 1).
        seed: seeds the shuffle.
        condition: 'deduplicated' shuffles whole (reduced formula, space group) groups, so no group
            straddles two splits; 'duplicated' shuffles entries, reproducing on purpose the leak of
            a random split.
        by: the columns that define twins.

    Returns:
        (n,) array of split names, aligned with the table's rows.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (3,) or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be three non-negative shares summing to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    n = len(table)
    # the unit shuffled: one group per entry in the duplicated condition
    unit = group_ids(table, by) if condition == "deduplicated" else np.arange(n)
    order = rng.permutation(unit.max() + 1 if n else 0)
    sizes = np.bincount(unit, minlength=len(order))[order]
    # a unit goes to the split in which the middle of its block of entries falls
    middle = np.cumsum(sizes) - sizes / 2
    bounds = np.cumsum(fractions)[:-1] * n
    unit_split = np.empty(len(order), dtype=int)
    unit_split[order] = np.searchsorted(bounds, middle, side="right")
    return np.asarray(SPLITS, dtype=object)[unit_split[unit]] if n else np.array([], dtype=object)


def leakage(table: pd.DataFrame, splits, *, by=GROUP_KEY, train: str = "train", test: str = "test") -> float:
    """Fraction of test entries with a twin (same ``by`` tuple) in train; 0.0 when test is empty."""
    splits = np.asarray(splits)
    groups = group_ids(table, by)
    in_test = splits == test
    if not in_test.any():
        return 0.0
    return float(np.isin(groups[in_test], groups[splits == train]).mean())
