"""A small private loader of real structures from the AMCSD copy shipped in the larixite package.

Kept inside benchmarks/ on purpose: the benchmarks must not depend on the study's crystals stage.
"""

from __future__ import annotations

import warnings

import numpy as np


def load_amcsd(n: int, *, min_sites: int = 1, max_sites: int = 100, seed: int = 0,
               elements_ok=None) -> tuple[list, list[int], dict]:
    """``n`` AMCSD structures drawn at random (seeded) from the whole database.

    Args:
        n: how many structures to return.
        min_sites, max_sites: keep cells with this many sites (pymatgen's conventional cell from the CIF).
        seed: order in which the database is visited.
        elements_ok: optional predicate on a Structure; structures failing it are skipped.

    Returns:
        structures, their AMCSD ids, and counts of skipped records by reason.
    """
    from larixite.amcsd import AMCSD
    from pymatgen.core import Structure

    db = AMCSD()
    ids = np.array(sorted(row.id for row in db.execall(db.tables["cif"].select())))
    np.random.default_rng(seed).shuffle(ids)
    structures, kept, skipped = [], [], {}
    for cif_id in ids:
        if len(structures) == n:
            break
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = Structure.from_str(db.get_cif(int(cif_id)).ciftext, fmt="cif")
        except Exception:  # unreadable CIF: skip and count, as batch jobs do
            skipped["unreadable"] = skipped.get("unreadable", 0) + 1
            continue
        if not min_sites <= len(structure) <= max_sites:
            skipped["size"] = skipped.get("size", 0) + 1
            continue
        if elements_ok is not None and not elements_ok(structure):
            skipped["elements"] = skipped.get("elements", 0) + 1
            continue
        structures.append(structure)
        kept.append(int(cif_id))
    return structures, kept, skipped
