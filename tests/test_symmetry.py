"""The label tables, derived from symmetry operations, against the published reference."""

import numpy as np
import pandas as pd
import pytest
import torch

from xtal_utils import symmetry
from xtal_utils.paths import DATA

# ITA number ranges of the seven crystal systems: an independent reference for crystal_system().
ITA_RANGES = {
    "triclinic": (1, 2), "monoclinic": (3, 15), "orthorhombic": (16, 74), "tetragonal": (75, 142),
    "trigonal": (143, 167), "hexagonal": (168, 194), "cubic": (195, 230),
}


def _reference_partition():
    # Read the CSV directly, not through the module, so the comparison shares no code with it.
    table = pd.read_csv(DATA / "extinction_groups" / "extinction_groups_99.csv")
    return {int(eg): frozenset(int(s) for s in members.split())
            for eg, members in zip(table["extinction_group"], table["space_groups"])}


def test_derived_partition_equals_reference_exactly():
    reference = _reference_partition()
    derived = {frozenset(members) for members in symmetry.derive_partition("family", cached=False)}
    assert derived == set(reference.values())
    assert symmetry.derive_partition("family") == symmetry.derive_partition("family", cached=False)  # the disk cache
    for eg, members in reference.items():
        assert set(symmetry.space_groups_in(eg)) == members
        for sg in members:
            assert symmetry.extinction_group(sg) == eg


def test_a_single_misplaced_space_group_is_detected():
    reference = set(_reference_partition().values())
    derived = [set(m) for m in symmetry.derive_partition("family")]
    # Move space group 14 (P2_1/c) into the group of space group 4: the comparison must fail.
    derived = [m - {14} for m in derived if m != {14}]
    next(m for m in derived if 4 in m).add(14)
    assert {frozenset(m) for m in derived} != reference


def test_every_space_group_in_exactly_one_group():
    members = [sg for eg in range(1, 100) for sg in symmetry.space_groups_in(eg)]
    assert sorted(members) == list(range(1, 231))


def test_crystal_systems_from_operations_match_ita_ranges():
    for system, (lo, hi) in ITA_RANGES.items():
        for sg in range(lo, hi + 1):
            assert symmetry.crystal_system(sg) == system, sg


def test_grouping_by_crystal_system_gives_101_groups():
    assert symmetry.n_extinction_groups("system") == 101
    assert symmetry.n_extinction_groups("family") == 99
    table = symmetry.extinction_table("system")
    assert sorted(sg for m in table["space_groups"] for sg in m) == list(range(1, 231))
    # each class is within one crystal system
    for members in table["space_groups"]:
        assert len({symmetry.crystal_system(sg) for sg in members}) == 1


def test_ita_splits_are_kept():
    assert symmetry.extinction_group(198) != symmetry.extinction_group(208)
    assert symmetry.absences(198) == symmetry.absences(208)  # identical absences, split by ITA
    assert symmetry.extinction_group(144) != symmetry.extinction_group(171)
    assert symmetry.extinction_group(144) == symmetry.extinction_group(145)  # P3_1, P3_2


def test_known_absences():
    # P2_1/c: h0l with l odd and 0k0 with k odd are absent; 0k0 with k even is not.
    absent = symmetry.absences(14)
    assert (1, 0, 1) in absent and (0, 1, 0) in absent and (0, 2, 0) not in absent
    # Fm-3m: mixed parity absent, all-odd present
    assert (1, 0, 0) in symmetry.absences(225) and (1, 1, 1) not in symmetry.absences(225)


def test_collapse_sums_member_probabilities():
    p = np.zeros((2, 230), dtype=np.float32)
    p[0, [3 - 1, 6 - 1, 10 - 1]] = [0.2, 0.3, 0.1]  # all in extinction group 1
    p[0, 225 - 1] = 0.4  # Fm-3m is in group 94
    p[1, 14 - 1] = 1.0  # P2_1/c alone in group 4
    q = symmetry.collapse_to_extinction_groups(p)
    assert q.shape == (2, 99)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(q[0, 0], 0.6, rtol=1e-6)
    np.testing.assert_allclose(q[0, 94 - 1], 0.4, rtol=1e-6)
    assert q[1, 4 - 1] == 1.0
    t = symmetry.collapse_to_extinction_groups(torch.from_numpy(p))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), q)


def test_collapse_rejects_wrong_width():
    with pytest.raises(ValueError, match="230"):
        symmetry.collapse_to_extinction_groups(np.ones((2, 99)))


@pytest.mark.parametrize("bad", [0, 231, -5, 3.5, "14", None, True])
def test_bad_space_group_raises(bad):
    with pytest.raises(ValueError, match="space group"):
        symmetry.extinction_group(bad)
    with pytest.raises(ValueError, match="space group"):
        symmetry.crystal_system(bad)


def test_numpy_integers_accepted():
    assert symmetry.extinction_group(np.int64(14)) == 4
    np.testing.assert_array_equal(symmetry.extinction_groups(np.array([14, 225])), [4, 94])
    with pytest.raises(ValueError):
        symmetry.extinction_groups(np.array([0, 14]))


def test_bad_extinction_group_raises():
    with pytest.raises(ValueError, match="extinction group"):
        symmetry.space_groups_in(100)
    assert len(symmetry.space_groups_in(101, grouping="system")) >= 1


# Conditions for reflections of the extinction symbols of monoclinic and orthorhombic names: which
# reflections a lattice letter, a glide perpendicular to axis i, or a screw along axis i removes.
_CENTRING = {"P": lambda h, k, l: False, "C": lambda h, k, l: (h + k) % 2, "A": lambda h, k, l: (k + l) % 2,
             "B": lambda h, k, l: (h + l) % 2, "I": lambda h, k, l: (h + k + l) % 2,
             "F": lambda h, k, l: len({h % 2, k % 2, l % 2}) > 1}
_GLIDE = {"a": lambda h, k, l: h % 2, "b": lambda h, k, l: k % 2, "c": lambda h, k, l: l % 2}


def _absent_by_name(name: str, hkl) -> bool:
    """Whether a monoclinic or orthorhombic extinction symbol (standard setting) forbids hkl."""
    lattice, *positions = name.rsplit(" (", 1)[0].split()
    h, k, l = hkl
    if _CENTRING[lattice](h, k, l):
        return True
    for axis, symbol in enumerate(positions):
        others = [i for i in range(3) if i != axis]
        on_axis = all(hkl[i] == 0 for i in others)
        if "21" in symbol and on_axis and hkl[axis] % 2:
            return True
        glide = symbol.split("/")[-1]
        if hkl[axis] == 0 and glide not in ("-", "1", "21"):
            a, b = (hkl[i] for i in others)
            if glide == "n" and (a + b) % 2:
                return True
            if glide == "d" and (a + b) % 4:
                return True
            if glide.startswith("(") and (a % 2 or b % 2):  # e, a double glide: '(ab)' perpendicular to c
                return True
            if glide in _GLIDE and _GLIDE[glide](h, k, l):
                return True
    return False


_LOW_SYMMETRY = [int(row.extinction_group) for row in symmetry.extinction_table().itertuples()
                 if row.lattice in ("monoclinic", "orthorhombic")]


@pytest.mark.parametrize("eg", _LOW_SYMMETRY)
def test_names_of_monoclinic_and_orthorhombic_groups_state_their_absences(eg):
    """The printed name's symbol, read as the International Tables read it, forbids exactly the
    reflections that spglib's operations forbid in the standard setting: for every member (monoclinic),
    or for at least one (orthorhombic: the members of one group differ in their standard axis order)."""
    name = symmetry.extinction_group_name(eg)
    hkl = [tuple(int(v) for v in row) for row in symmetry._reflections()]
    from_name = frozenset(h for h in hkl if _absent_by_name(name, h))
    agree = [sg for sg in symmetry.space_groups_in(eg) if symmetry.absences(sg) == from_name]
    members = symmetry.space_groups_in(eg)
    assert agree == list(members) if "monoclinic" in name else agree, (name, members)


def test_extinction_group_names_are_unique_and_space_groups_use_the_standard_setting():
    names = [symmetry.extinction_group_name(eg) for eg in range(1, 100)]
    assert len(set(names)) == 99
    assert symmetry.space_group_name(14) == "P 1 21/c 1"
    assert symmetry.extinction_group_name(symmetry.extinction_group(14)) == "P 1 21/c 1 (monoclinic)"
