"""Structures as padded arrays: the form in which crystals are cached and fed to the simulator.

A :class:`StructureBatch` holds ``n`` structures of at most ``m`` sites each, as numpy arrays:

- ``lattice``      (n, 3, 3) float64, rows are the lattice vectors a, b, c in Angstrom (pymatgen's
  ``Lattice.matrix``);
- ``frac_coords``  (n, m, 3) float64, fractional coordinates;
- ``atomic_number`` (n, m, k) int16, the species on each site (0 = padding); ``k`` > 1 only for
  sites shared by several species;
- ``occupancy``    (n, m, k) float32, the fraction of each species on the site (0 for padding);
- ``b_iso``        (n, m) float32, isotropic Debye-Waller B in Angstrom^2 (0 where not given);
- ``space_group``  (n,) int16, the ITA number (0 where unknown);
- ``n_sites``      (n,) int32.

pymatgen Structures are the format for users and tests; these arrays are what the hot path sees.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import h5py
import numpy as np

from pymatgen.core import Composition, Element, Lattice, Structure

from xtal_utils.config import atomic_path

OCCUPANCY_ROUNDING = 1e-6  # float32 occupancies of a full site may sum this far above 1


@dataclasses.dataclass
class StructureBatch:
    lattice: np.ndarray
    frac_coords: np.ndarray
    atomic_number: np.ndarray
    occupancy: np.ndarray
    b_iso: np.ndarray
    space_group: np.ndarray
    n_sites: np.ndarray

    FIELDS = ("lattice", "frac_coords", "atomic_number", "occupancy", "b_iso", "space_group", "n_sites")

    def __len__(self) -> int:
        return len(self.lattice)

    def __getitem__(self, index) -> StructureBatch:
        """A sub-batch: ``batch[3:7]``, ``batch[mask]`` or ``batch[[0, 5]]``."""
        if isinstance(index, (int, np.integer)):
            index = [index]
        return StructureBatch(**{f: getattr(self, f)[index] for f in self.FIELDS})

    @property
    def max_sites(self) -> int:
        return self.frac_coords.shape[1]

    def digest(self) -> str:
        """A sha256 of every array, in field order: two batches with the same digest hold the same crystals."""
        sha = hashlib.sha256()
        for field in dataclasses.fields(self):
            array = np.ascontiguousarray(getattr(self, field.name))
            sha.update(f"{field.name}{array.dtype.str}{array.shape}".encode())
            sha.update(array.tobytes())
        return sha.hexdigest()

    def describe(self, i: int) -> str:
        """'structure i (reduced formula)': names structure ``i`` of the batch in an error message."""
        amounts = {}
        for z, o in zip(self.atomic_number[i].ravel(), self.occupancy[i].ravel()):
            if z > 0 and o > 0:
                amounts[Element.from_Z(int(z))] = amounts.get(Element.from_Z(int(z)), 0.0) + float(o)
        formula = Composition(amounts).reduced_formula if amounts else "empty"
        return f"structure {i} ({formula})"

    @classmethod
    def from_structures(cls, structures, space_groups=None) -> StructureBatch:
        """Pack pymatgen Structures into padded arrays.

        Args:
            structures: sequence of pymatgen Structures; disordered sites keep all their species.
            space_groups: optional sequence of ITA numbers; by default each structure's
                ``properties['space_group']`` when present, else 0.
        """
        structures = list(structures)
        n = len(structures)
        m = max((len(s) for s in structures), default=1) or 1
        k = max((len(site.species) for s in structures for site in s), default=1) or 1
        batch = cls.empty(n, m, k)
        for i, structure in enumerate(structures):
            batch.lattice[i] = structure.lattice.matrix
            batch.n_sites[i] = len(structure)
            if len(structure):
                batch.frac_coords[i, : len(structure)] = structure.frac_coords
            for j, site in enumerate(structure):
                for s, (species, occupancy) in enumerate(site.species.items()):
                    batch.atomic_number[i, j, s] = Element(species.symbol).Z
                    batch.occupancy[i, j, s] = occupancy
                b = site.properties.get("b_iso") if site.properties else None
                batch.b_iso[i, j] = b if b is not None else 0.0
            if space_groups is not None:
                batch.space_group[i] = space_groups[i]
            else:
                batch.space_group[i] = (structure.properties or {}).get("space_group", 0) or 0
        return batch

    @classmethod
    def empty(cls, n: int, m: int, k: int = 1) -> StructureBatch:
        return cls(
            lattice=np.zeros((n, 3, 3)),
            frac_coords=np.zeros((n, m, 3)),
            atomic_number=np.zeros((n, m, k), dtype=np.int16),
            occupancy=np.zeros((n, m, k), dtype=np.float32),
            b_iso=np.zeros((n, m), dtype=np.float32),
            space_group=np.zeros(n, dtype=np.int16),
            n_sites=np.zeros(n, dtype=np.int32),
        )

    @classmethod
    def concatenate(cls, batches) -> StructureBatch:
        """Join batches, padding sites and species to the largest."""
        batches = list(batches)
        m = max(b.frac_coords.shape[1] for b in batches)
        k = max(b.atomic_number.shape[2] for b in batches)
        out = cls.empty(sum(len(b) for b in batches), m, k)
        start = 0
        for b in batches:
            stop = start + len(b)
            bm, bk = b.frac_coords.shape[1], b.atomic_number.shape[2]
            out.lattice[start:stop] = b.lattice
            out.frac_coords[start:stop, :bm] = b.frac_coords
            out.atomic_number[start:stop, :bm, :bk] = b.atomic_number
            out.occupancy[start:stop, :bm, :bk] = b.occupancy
            out.b_iso[start:stop, :bm] = b.b_iso
            out.space_group[start:stop] = b.space_group
            out.n_sites[start:stop] = b.n_sites
            start = stop
        return out

    def to_structures(self) -> list[Structure]:
        """Unpack into pymatgen Structures (``properties['space_group']`` set when known)."""
        out = []
        for i in range(len(self)):
            species, coords, b_iso = [], [], []
            for j in range(self.n_sites[i]):
                present = self.occupancy[i, j] > 0
                occupancy = self.occupancy[i, j][present].astype(np.float64)
                total = occupancy.sum()
                if 1.0 < total <= 1.0 + OCCUPANCY_ROUNDING:  # float32 storage rounded e.g. 1/3 up
                    occupancy /= total
                species.append({Element.from_Z(int(z)): float(o) for z, o in
                                zip(self.atomic_number[i, j][present], occupancy)})
                coords.append(self.frac_coords[i, j])
                b_iso.append(float(self.b_iso[i, j]))
            structure = Structure(Lattice(self.lattice[i]), species, coords,
                                  site_properties={"b_iso": b_iso} if species else None)
            if self.space_group[i]:
                structure.properties["space_group"] = int(self.space_group[i])
            out.append(structure)
        return out

    def save(self, path: str | Path) -> None:
        """Write to HDF5 atomically (temporary file, then rename)."""
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            for field in self.FIELDS:
                f.create_dataset(field, data=getattr(self, field), compression="gzip", compression_opts=1)

    @classmethod
    def load(cls, path: str | Path, index=slice(None)) -> StructureBatch:
        """Read a batch, or the rows ``index`` of it, from HDF5."""
        with h5py.File(path, "r") as f:
            return cls(**{field: f[field][index] for field in cls.FIELDS})
