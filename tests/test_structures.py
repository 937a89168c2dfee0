"""Padded structure arrays: packing, unpacking and HDF5 round trips."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xtal_utils.config import atomic_path
from xtal_utils.structures import StructureBatch


def _disordered():
    s = Structure(Lattice.hexagonal(3.1, 5.2), [{"Fe": 1 / 3, "Mg": 1 / 3, "Ni": 1 / 3}, "O"],
                  [[0, 0, 0], [1 / 3, 2 / 3, 0.25]])
    s.properties["space_group"] = 187
    return s


def test_round_trip_through_hdf5(tmp_path):
    structures = [_disordered(), Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])]
    batch = StructureBatch.from_structures(structures)
    assert batch.atomic_number.shape == (2, 2, 3) and batch.n_sites.tolist() == [2, 2]
    batch.save(tmp_path / "b.h5")
    back = StructureBatch.load(tmp_path / "b.h5").to_structures()  # float32 thirds must not overflow 1
    for a, b in zip(structures, back):
        assert a.composition.almost_equals(b.composition)
        np.testing.assert_allclose(a.frac_coords, b.frac_coords)
    assert back[0].properties["space_group"] == 187


def test_concatenate_pads_and_slices():
    one = StructureBatch.from_structures([_disordered()])
    two = StructureBatch.from_structures([Structure(Lattice.cubic(4), ["Cu"] * 4,
                                                    [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])])
    both = StructureBatch.concatenate([one, two])
    assert len(both) == 2 and both.max_sites == 4 and both.atomic_number.shape[2] == 3
    assert both[1].to_structures()[0].composition.reduced_formula == "Cu"


def test_describe_names_a_structure_by_its_reduced_formula():
    rutile = Structure(Lattice.tetragonal(4.59, 2.96), ["Ti", "Ti", "O", "O", "O", "O"],
                       [[0, 0, 0], [0.5, 0.5, 0.5], [0.3, 0.3, 0], [0.7, 0.7, 0], [0.8, 0.2, 0.5], [0.2, 0.8, 0.5]])
    batch = StructureBatch.from_structures([rutile, Structure(Lattice.cubic(4), [], [])])
    assert batch.describe(0) == "structure 0 (TiO2)"
    assert batch.describe(1) == "structure 1 (empty)"


def test_atomic_path_replaces_only_a_finished_file(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "first"  # the old file stays whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]  # and nothing half-written is left


def test_digest_names_the_crystals_not_the_object(tmp_path):
    batch = StructureBatch.from_structures([_disordered(), _disordered()])
    batch.save(tmp_path / "b.h5")
    assert StructureBatch.load(tmp_path / "b.h5").digest() == batch.digest()
    moved = StructureBatch.from_structures([_disordered(), _disordered()])
    moved.frac_coords[1, 0, 0] += 1e-6
    assert moved.digest() != batch.digest()
    assert batch[:1].digest() != batch.digest()
