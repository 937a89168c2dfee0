"""Symmetry labels: crystal systems and extinction groups, derived from symmetry operations.

Nothing here is typed in by hand. For each of the 230 space groups we take its symmetry operations
(reference setting, hexagonal axes for the rhombohedral groups) from spglib's database and compute

- its **crystal system**, from the orders of the proper parts of its point-group operations;
- its **systematic absences**: a reflection ``h`` is absent when some operation ``(R, t)`` has
  ``h R = h`` while ``h . t`` is not an integer (then ``F(h) = exp(2 pi i h.t) F(h)`` forces
  ``F(h) = 0``). Centring translations are operations too, so lattice absences come for free.

Two space groups share an **extinction group** when they belong to the same crystal family (trigonal
and hexagonal together) and have identical absences, for orthorhombic groups up to a permutation of
the axes. Two splits of the International Tables are kept (P3_1 type from P6_2 type, P2_13 from
P4_232), giving the 99 groups of Baggett et al. (2026). Grouping by crystal system instead of family,
without those splits, gives the 101 classes of Park et al. (2017).

The partition is derived here; only the numbering and the representative symbols are taken from the
reference table ``data/extinction_groups/extinction_groups_99.csv``, so that our labels match the
published ones. A derived group that is not a row of that table is an error.
"""

from __future__ import annotations

import itertools
import json
import numbers
from functools import cache

import numpy as np
import pandas as pd
import spglib

from xtal_utils.config import cache_key, write_json_atomic
from xtal_utils.paths import CACHE, TABLES

N_SPACE_GROUPS = 230
HKL_MAX = 6  # absences are compared for |h|, |k|, |l| <= HKL_MAX; enough for every screw and glide
CRYSTAL_SYSTEMS = (
    "triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic",
)
GROUPINGS = ("family", "system")
KINDS = ("space_group", "extinction_group")  # what a model predicts
REFERENCE_CSV = TABLES / "extinction_groups_99.csv"

# The International Tables give distinct extinction symbols to groups whose absences coincide:
# the 3_1/3_2 screws (trigonal) against 6_2/6_4 (hexagonal), and P2_13 (Laue class m-3) against
# P4_232 (m-3m). Each entry names one space group of each side; the merged class is split by the
# attribute that separates them.
_ITA_SPLITS = (((144, 171), "crystal_system"), ((198, 208), "laue_class"))


def check_space_group(space_group) -> int:
    """Return ``space_group`` as an int, or raise ValueError if it is not an integer in 1..230."""
    if isinstance(space_group, bool) or not isinstance(space_group, numbers.Integral):
        raise ValueError(f"space group must be an integer from 1 to 230, got {space_group!r}")
    if not 1 <= int(space_group) <= N_SPACE_GROUPS:
        raise ValueError(f"space group must be from 1 to 230, got {space_group}")
    return int(space_group)


@cache
def _hall_numbers() -> dict[int, int]:
    """The first Hall number of each space group: spglib's reference setting."""
    first: dict[int, int] = {}
    for hall in range(1, 531):
        first.setdefault(spglib.get_spacegroup_type(hall).number, hall)
    return first


@cache
def operations(space_group: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotations (n, 3, 3) and translations (n, 3) of a space group in spglib's reference setting (its
    first Hall number: unique axis b, hexagonal axes for R), centring included."""
    ops = spglib.get_symmetry_from_database(_hall_numbers()[space_group])
    return ops["rotations"], ops["translations"]


def _order(rotation: np.ndarray) -> int:
    power, order = rotation, 1
    while not np.array_equal(power, np.eye(3, dtype=rotation.dtype)):
        power, order = power @ rotation, order + 1
    return order


@cache
def _system_of(space_group: int) -> str:
    """Crystal system from the point group: the orders of the proper parts det(R) R."""
    rotations, _ = operations(space_group)
    proper = {(np.rint(np.linalg.det(r)).astype(int) * r).tobytes(): np.rint(np.linalg.det(r)).astype(int) * r
              for r in rotations}
    orders = [_order(r) for r in proper.values()]
    if orders.count(3) == 8:  # four body-diagonal 3-fold axes
        return "cubic"
    for order, system in ((6, "hexagonal"), (3, "trigonal"), (4, "tetragonal")):
        if order in orders:
            return system
    return {3: "orthorhombic", 1: "monoclinic", 0: "triclinic"}[orders.count(2)]


def crystal_system(space_group: int) -> str:
    """Lower-case crystal system ('triclinic' ... 'cubic') of a space group (1..230)."""
    return _system_of(check_space_group(space_group))


def crystal_family(space_group: int) -> str:
    """Crystal family: the crystal system, with trigonal merged into hexagonal."""
    system = crystal_system(space_group)
    return "hexagonal" if system == "trigonal" else system


@cache
def _laue_class(space_group: int) -> str:
    return spglib.get_spacegroup_type(_hall_numbers()[space_group]).pointgroup_international


def _reflections() -> np.ndarray:
    grid = range(-HKL_MAX, HKL_MAX + 1)
    hkl = np.array([h for h in itertools.product(grid, grid, grid) if any(h)])
    return hkl


def systematically_absent(hkl, rotations, translations, tol: float = 1e-6) -> np.ndarray:
    """(n,) bool: reflections forced to zero by the operations (R, t), centring translations included.

    h is absent when some operation has h R = h and h.t not an integer, since then
    F(h) = exp(2 pi i h.t) F(h). ``tol`` is how near an integer h.t may lie and still count as one
    (raise it for operations measured from a real structure, whose t carry errors).

    Args:
        hkl: (n, 3) integer reflections.
        rotations: (k, 3, 3) integer rotation parts, acting on fractional coordinates.
        translations: (k, 3) fractional translations.
    """
    hkl = np.asarray(hkl)
    absent = np.zeros(len(hkl), dtype=bool)
    for rotation, translation in zip(rotations, translations):
        fixed = np.all(hkl @ rotation == hkl, axis=1)
        phase = hkl @ translation
        absent |= fixed & (np.abs(phase - np.rint(phase)) > tol)
    return absent


@cache
def absences(space_group: int) -> frozenset[tuple[int, int, int]]:
    """The systematically absent reflections of a space group with |h|,|k|,|l| <= HKL_MAX."""
    hkl = _reflections()
    absent = systematically_absent(hkl, *operations(check_space_group(space_group)))
    return frozenset(map(tuple, hkl[absent]))


@cache
def space_group_symbol(space_group: int) -> str:
    """Short Hermann-Mauguin symbol in spglib's reference setting, e.g. 'P2_1/c' for 14."""
    return spglib.get_spacegroup_type(_hall_numbers()[check_space_group(space_group)]).international_short


@cache
def space_group_name(space_group: int) -> str:
    """Full Hermann-Mauguin symbol in the standard setting of the International Tables (unique axis b,
    cell choice 1), screws written 21, e.g. 'P 1 21/c 1' for 14."""
    full = spglib.get_spacegroup_type(_hall_numbers()[check_space_group(space_group)]).international_full
    return full.replace("_", "")


# Names use the standard setting of the space-group symbols (spglib's reference setting). The reference
# table writes monoclinic extinction symbols with the unique axis first (a); here it is b, cell choice 1
# (with C centring, an n glide perpendicular to b is a c glide). Twelve orthorhombic symbols of the table
# hold in no member's standard setting; here they are permuted to the setting of their lowest-numbered
# member that they fit. tests/test_symmetry.py reads each name's absences back against spglib.
_STANDARD_SETTING = {"P - 1 1": "P 1 - 1", "P 21 1 1": "P 1 21 1", "P b 1 1": "P 1 c 1",
                     "P 21/b 1 1": "P 1 21/c 1", "C - 1 1": "C 1 - 1", "C n 1 1": "C 1 c 1",
                     "P - 21 21": "P 21 21 -", "P - a a": "P c c -", "P - a b": "P c a -", "P - a n": "P n c -",
                     "P - c b": "P b a -", "P - c n": "P n a -", "P - n n": "P n n -", "P b a a": "P c c a",
                     "P b n b": "P c c n", "P b n n": "P n n a", "I - c b": "I b a -", "F - d d": "F d d -"}


def extinction_group_name(extinction_group: int) -> str:
    """The printed name of an extinction group (1..99), unique among the 99: its extinction symbol in
    the standard setting and its crystal family, e.g. 'P - - - (cubic)' or 'P 1 21/c 1 (monoclinic)'."""
    space_groups_in(extinction_group)  # raises for a number outside 1..99
    row = extinction_table("family").iloc[int(extinction_group) - 1]
    return f"{_STANDARD_SETTING.get(row.symbol, row.symbol)} ({row.lattice})"


def _canonical_absences(space_group: int) -> frozenset:
    """Absences as a hashable key; orthorhombic ones are made independent of the axis order."""
    absent = absences(space_group)
    if crystal_system(space_group) != "orthorhombic":
        return absent
    return min(
        (frozenset(tuple(h[i] for i in perm) for h in absent) for perm in itertools.permutations(range(3))),
        key=lambda s: sorted(s),
    )


@cache
def derive_partition(grouping: str = "family", *, cached: bool = True) -> tuple[tuple[int, ...], ...]:
    """Partition the 230 space groups into classes of identical systematic absences.

    The derivation takes a few seconds, so its result is kept in ``data/cache/symmetry/`` (keyed by
    spglib's version and HKL_MAX); ``cached=False`` derives it afresh.

    Args:
        grouping: 'family' (99 classes: crystal family plus the two ITA splits) or 'system'
            (101 classes: crystal system, absences only, as Park et al. 2017).

    Returns:
        Tuple of classes, each a sorted tuple of space-group numbers, ordered by smallest member.
    """
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping must be one of {GROUPINGS}, got {grouping!r}")
    path = CACHE / "symmetry" / f"partition-{grouping}-{cache_key({'spglib': spglib.__version__, 'hkl_max': HKL_MAX})}.json"
    if cached and path.is_file():
        return tuple(tuple(members) for members in json.loads(path.read_text()))
    partition = _derive_partition(grouping)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, [list(members) for members in partition])
    return partition


def _derive_partition(grouping: str) -> tuple[tuple[int, ...], ...]:
    lattice_of = crystal_family if grouping == "family" else crystal_system
    classes: dict[tuple, list[int]] = {}
    for sg in range(1, N_SPACE_GROUPS + 1):
        classes.setdefault((lattice_of(sg), _canonical_absences(sg)), []).append(sg)
    groups = [tuple(members) for members in classes.values()]
    if grouping == "family":
        split_by = {"crystal_system": crystal_system, "laue_class": _laue_class}
        for (a, b), attribute in _ITA_SPLITS:
            merged = next(g for g in groups if a in g)
            assert b in merged, f"space groups {a} and {b} were expected to share absences"
            groups.remove(merged)
            parts: dict[str, list[int]] = {}
            for sg in merged:
                parts.setdefault(split_by[attribute](sg), []).append(sg)
            groups.extend(tuple(p) for p in parts.values())
    return tuple(sorted(groups, key=min))


@cache
def reference_table() -> pd.DataFrame:
    """The published table: columns extinction_group, symbol, space_groups (tuple of ints)."""
    table = pd.read_csv(REFERENCE_CSV)
    table["space_groups"] = [tuple(int(s) for s in row.split()) for row in table["space_groups"]]
    return table


@cache
def extinction_table(grouping: str = "family") -> pd.DataFrame:
    """The derived extinction-group table.

    With grouping='family', numbers and symbols are those of the reference table; a derived class
    that is not one of its rows raises. With grouping='system', the 101 classes are numbered in the
    order of the family table, a family class split between trigonal and hexagonal giving two rows.

    Returns:
        DataFrame with columns extinction_group (1-based), symbol, crystal_system (or family),
        space_groups (tuple of ints), n_space_groups.
    """
    reference = reference_table()
    by_members = {members: row for row, members in enumerate(reference["space_groups"])}
    family_rows = []
    for members in derive_partition("family"):
        if members not in by_members:
            raise ValueError(f"derived extinction group {members} is not a row of {REFERENCE_CSV.name}")
        row = reference.iloc[by_members[members]]
        family_rows.append((int(row.extinction_group), row.symbol, members))
    family_rows.sort()
    if grouping == "family":
        rows = [(eg, sym, crystal_family(m[0]), m) for eg, sym, m in family_rows]
    else:
        family_of = {sg: i for i, (_, _, m) in enumerate(family_rows) for sg in m}
        classes = sorted(derive_partition("system"), key=lambda m: (family_of[m[0]], CRYSTAL_SYSTEMS.index(crystal_system(m[0]))))
        rows = []
        for i, members in enumerate(classes, start=1):
            _, symbol, family_members = family_rows[family_of[members[0]]]
            system = crystal_system(members[0])
            split = any(crystal_system(sg) != system for sg in family_members)
            rows.append((i, f"{symbol} ({system})" if split else symbol, system, members))
    table = pd.DataFrame(rows, columns=["extinction_group", "symbol", "lattice", "space_groups"])
    table["n_space_groups"] = table["space_groups"].map(len)
    return table


@cache
def _sg_to_eg(grouping: str) -> np.ndarray:
    lookup = np.zeros(N_SPACE_GROUPS + 1, dtype=np.int64)
    for eg, members in zip(*extinction_table(grouping)[["extinction_group", "space_groups"]].T.values):
        lookup[list(members)] = eg
    return lookup


def n_extinction_groups(grouping: str = "family") -> int:
    """Number of extinction groups: 99 for 'family', 101 for 'system'."""
    return len(extinction_table(grouping))


def extinction_group(space_group: int, grouping: str = "family") -> int:
    """Extinction group (1..99, or 1..101 with grouping='system') of a space group (1..230)."""
    return int(_sg_to_eg(grouping)[check_space_group(space_group)])


def extinction_groups(space_groups, grouping: str = "family") -> np.ndarray:
    """Vectorised :func:`extinction_group` for an array of space-group numbers."""
    space_groups = np.asarray(space_groups)
    if space_groups.size and (not np.issubdtype(space_groups.dtype, np.integer)
                              or space_groups.min() < 1 or space_groups.max() > N_SPACE_GROUPS):
        raise ValueError("space groups must be integers from 1 to 230")
    return _sg_to_eg(grouping)[space_groups]


def space_groups_in(extinction_group: int, grouping: str = "family") -> tuple[int, ...]:
    """The member space groups of an extinction group."""
    table = extinction_table(grouping)
    if isinstance(extinction_group, bool) or not isinstance(extinction_group, numbers.Integral) \
            or not 1 <= extinction_group <= len(table):
        raise ValueError(f"extinction group must be an integer from 1 to {len(table)}, got {extinction_group!r}")
    return table["space_groups"].iloc[int(extinction_group) - 1]


@cache
def membership_matrix(grouping: str = "family") -> np.ndarray:
    """(230, n_groups) 0/1 matrix; row sg-1 has a single 1 in column eg-1."""
    lookup = _sg_to_eg(grouping)
    matrix = np.zeros((N_SPACE_GROUPS, n_extinction_groups(grouping)), dtype=np.float32)
    matrix[np.arange(N_SPACE_GROUPS), lookup[1:] - 1] = 1.0
    return matrix


def collapse_to_extinction_groups(probabilities, grouping: str = "family"):
    """Sum space-group probabilities over the members of each extinction group.

    Args:
        probabilities: (n, 230) array or torch tensor; column j is space group j + 1.
        grouping: see :func:`derive_partition`.

    Returns:
        (n, 99) (or (n, 101)) array of the same kind; column i is extinction group i + 1.
    """
    matrix = membership_matrix(grouping)
    if probabilities.shape[-1] != N_SPACE_GROUPS:
        raise ValueError(f"expected {N_SPACE_GROUPS} space-group columns, got shape {tuple(probabilities.shape)}")
    if isinstance(probabilities, np.ndarray):
        return probabilities @ matrix.astype(probabilities.dtype)
    import torch  # only for tensor input: symmetry works without torch

    return probabilities @ torch.as_tensor(matrix, dtype=probabilities.dtype, device=probabilities.device)


def n_classes(kind: str) -> int:
    """230 for 'space_group', 99 for 'extinction_group'."""
    if kind == "space_group":
        return N_SPACE_GROUPS
    if kind == "extinction_group":
        return n_extinction_groups()
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def labels_of(space_groups, kind: str) -> np.ndarray:
    """The labels (1-based) of ``kind`` for an array of space groups."""
    n_classes(kind)
    space_groups = np.asarray(space_groups)
    groups = extinction_groups(space_groups)  # also validates the space groups
    return space_groups.astype(np.int64) if kind == "space_group" else groups
