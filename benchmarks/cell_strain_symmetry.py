"""Does ``Augmentation.cell_strain`` keep the space group? spglib on every AMCSD structure, before and after.

    .venv/bin/python benchmarks/cell_strain_symmetry.py          # output in benchmarks/results/cell_strain_symmetry.txt

Each structure's edges are scaled as the simulator scales them (``augment.cell_strain_factors`` on a
draw of ``Augmentation(cell_strain=0.05)``, seed 0). Counted: the structures whose unstrained cell
spglib (1e-3 Angstrom) puts in their AMCSD space group, and of those, the ones whose strained cell it
puts there too. A site with several species counts as its most occupied one.
"""

from __future__ import annotations

import sys

import numpy as np
from xtal_utils.config import provenance
from xtal_utils.paths import BENCHMARK_RESULTS as RESULTS


STRAIN, SYMPREC = 0.05, 1e-3


def main() -> None:
    import spglib
    import torch
    from tqdm import tqdm

    from xtal_utils import pattern_sets as ps
    from xtal_utils.diffraction.augment import Augmentation, cell_strain_factors

    data = ps.amcsd_set()
    batch = data.structures
    drawn = Augmentation(cell_strain=STRAIN).draw(len(batch), torch.Generator().manual_seed(0), "cpu")
    factors = cell_strain_factors(batch.lattice, drawn["cell_strain"].numpy())

    def number(i, lattice):
        k = batch.n_sites[i]
        species = batch.atomic_number[i, :k]
        if species.ndim > 1:
            species = species[np.arange(k), batch.occupancy[i, :k].argmax(axis=1)]
        dataset = spglib.get_symmetry_dataset((lattice, batch.frac_coords[i, :k], species), symprec=SYMPREC)
        return None if dataset is None else dataset.number

    agree, kept, changed = 0, 0, []
    for i in tqdm(range(len(batch)), desc="spglib", unit="structure"):
        if number(i, batch.lattice[i]) != data.space_groups[i]:
            continue
        agree += 1
        after = number(i, batch.lattice[i] * factors[i][:, None])
        if after == data.space_groups[i]:
            kept += 1
        else:
            lengths = np.linalg.norm(batch.lattice[i], axis=1).round(4).tolist()
            changed.append(f"#   entry {data.table['entry_id'].iloc[i]}: {data.space_groups[i]} -> {after}, edges {lengths}, "
                           f"factors {factors[i].round(4).tolist()}")
    lines = [f"# {provenance(sys.argv)}", f"# cell_strain {STRAIN}, seed 0, spglib symprec {SYMPREC}",
             f"AMCSD structures: {len(batch)}; spglib agrees with the AMCSD group: {agree}; "
             f"the same group after the cell strain: {kept}", *changed]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cell_strain_symmetry.txt").write_text(text)


if __name__ == "__main__":
    main()
