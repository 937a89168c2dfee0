"""Samples of real structures for the benchmarks, drawn from the study's own cached AMCSD table.

AMCSD is parsed once by :func:`xtal_utils.crystals.load_amcsd` (the copy shipped in the larixite
package, read offline and cached); the benchmarks only draw seeded samples from it.
"""

from __future__ import annotations

import numpy as np

from xtal_utils import crystals


def load_amcsd(n: int, *, min_sites: int = 1, max_sites: int = 100, seed: int = 0,
               elements_ok=None) -> tuple[list, list[str], dict]:
    """``n`` AMCSD structures drawn at random (seeded) from the whole database.

    Args:
        n: how many structures to return.
        min_sites, max_sites: keep cells with this many sites (conventional cell, as parsed).
        seed: order in which the database is visited.
        elements_ok: optional predicate on a Structure; structures failing it are skipped.

    Returns:
        structures, their AMCSD ids, and counts of records left out by reason (the database's own
        skips when it was parsed, plus the size and element filters here).
    """
    table, report = crystals.load_amcsd(return_report=True)
    skipped = {reason: count for reason, count in report["skipped"].items() if count}
    fits = table["n_sites"].between(min_sites, max_sites).to_numpy()
    skipped["size"] = int((~fits).sum())
    order = np.random.default_rng(seed).permutation(np.flatnonzero(fits))
    structures, ids = [], []
    for row in order:
        if len(structures) == n:
            break
        structure = table["structure"].iat[row]
        if elements_ok is not None and not elements_ok(structure):
            skipped["elements"] = skipped.get("elements", 0) + 1
            continue
        structures.append(structure)
        ids.append(table["entry_id"].iat[row])
    return structures, ids, skipped
