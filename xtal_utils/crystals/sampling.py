"""Random crystals drawn as arrays: the fresh-crystal stream of balanced training.

:func:`sample_crystals` returns a :class:`~xtal_utils.structures.StructureBatch` directly, with no
pymatgen or PyXtal object in the loop. It is vectorised over the crystals of a batch; the batch is a
function of its arguments alone.

Recipe for ``n`` crystals (every draw from one ``numpy.random.Generator`` seeded by ``seed``):

1. **Space group.** Uniform over extinction groups (then over each group's space groups), uniform
   over space groups, or by given class weights.
2. **Composition.** As in :mod:`~xtal_utils.crystals.generation`, from AMCSD's statistics
   (:func:`~xtal_utils.crystals.generation.amcsd_statistics`): the number of elements (at least
   :data:`MIN_SPECIES`), the number of occupied orbits (asymmetric-unit sites, at least one per
   element), the elements by their AMCSD frequency without replacement. Or, with ``cell_atoms``,
   the number of atoms in the cell, drawn alike for every group, which the orbits then fill.
3. **Wyckoff positions.** From PyXtal's tables, read once for all 230 groups as arrays of affine
   maps (PyXtal's standard settings, the same throughout: monoclinic unique axis b, rhombohedral
   groups on hexagonal axes, origin choice 2). The first two orbits take the positions with the most
   free parameters that fit the atom budget: free coordinates are what keep a crystal from having
   more symmetry than its group. Further orbits take any position that fits; a position with no
   free parameter is used at most once. A group's budget is ``max_atoms``, raised where its
   smallest position with two free parameters and its smallest free one need more.
4. **Coordinates.** One uniform random point per orbit, mapped by the position's affine maps.
5. **Cell.** Random axis ratios and angles for the crystal system (in the conventional setting of
   the tables), scaled so that the volume is the sum of the atoms' volumes
   (:data:`ATOMIC_VOLUME`, from pymatgen's atomic radii) times a log-normal factor whose median
   brings the volume per atom near AMCSD's (12.8 A^3).
6. **Distances (optional).** With ``min_distance``, the coordinates of a crystal with two atoms
   closer than that are drawn again, up to ``max_redraws`` times (Schopmans et al. 2023 used no
   check; ``benchmarks/generate.py`` measures what the check costs).

Because every crystal is in the tables' setting with its space group known, the parts of its Laue
group that the simulator uses are known too: :func:`laue_symmetry_of` gives them without the
content-hash detection of :func:`xtal_utils.diffraction.laue.laue_symmetry`.
"""

from __future__ import annotations

import math
import warnings
from functools import cache

import numpy as np
from pymatgen.core import Element

from xtal_utils.config import atomic_path
from xtal_utils.crystals.generation import amcsd_statistics
from xtal_utils.diffraction.laue import cell_symmetry
from xtal_utils.paths import CACHE
from xtal_utils.structures import StructureBatch
from xtal_utils.symmetry import N_SPACE_GROUPS, crystal_system, extinction_groups

MIN_SPECIES = 2  # one element alone is far more often more symmetric than its group
VOLUME_PER_ATOM_SPREAD = 0.2  # sigma of the log-normal volume factor
VOLUME_FACTOR = 1.4  # median factor on the summed atomic volumes: median 12.8 A^3 per atom, as AMCSD
AXIS_RATIO = 2.5  # largest ratio of two cell lengths, drawn log-uniformly
B_ISO = np.round(np.arange(0.3, 1.51, 0.1), 1)  # Angstrom^2, isotropic Debye-Waller B of each orbit, one of
#                                                  these: few (element, B) pairs, so the simulator's form-factor tables are reused
CELL_ATOMS_SPREAD = 0.77  # log sigma of the atoms per conventional cell drawn with cell_atoms: in the parsed
#                           amcsd_set the median is 24 and the 90th percentile 64, over all families
BALANCES = ("extinction_group", "space_group")
TABLES_VERSION = 1  # raise when the layout of the cached Wyckoff tables changes


# ---------------------------------------------------------------------------------------------
# Tables of all 230 groups, as arrays


@cache
def wyckoff_tables() -> dict:
    """Every Wyckoff position of every space group as arrays (PyXtal's settings), cached on disk.

    Returns a dict of arrays:
        ``first`` (231,): index of each group's first position (groups 1..230; ``first[0]`` unused),
        ``count`` (231,): positions per group;
        ``multiplicity``, ``dof`` (free parameters), ``op_start`` (index of its first map): (w,) per position;
        ``rotation`` (o, 3, 3), ``translation`` (o, 3): every position's affine maps, orbit order.
    """
    import pyxtal  # slow to import; needed only when crystals are drawn

    path = CACHE / "wyckoff" / f"pyxtal-{pyxtal.__version__}-v{TABLES_VERSION}.npz"
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    from pyxtal.symmetry import Group  # slow to import; needed only to build the tables

    first, count = np.zeros(N_SPACE_GROUPS + 1, np.int64), np.zeros(N_SPACE_GROUPS + 1, np.int64)
    multiplicity, dof, op_start, rotation, translation = [], [], [], [], []
    for g in range(1, N_SPACE_GROUPS + 1):
        positions = Group(g).Wyckoff_positions
        first[g], count[g] = len(multiplicity), len(positions)
        for wp in positions:
            op_start.append(len(rotation))
            multiplicity.append(wp.multiplicity)
            dof.append(wp.get_dof())
            for op in wp.ops:
                affine = np.asarray(op.affine_matrix, dtype=float)
                rotation.append(affine[:3, :3])
                translation.append(affine[:3, 3])
    tables = {"first": first, "count": count, "multiplicity": np.array(multiplicity),
              "dof": np.array(dof), "op_start": np.array(op_start),
              "rotation": np.array(rotation), "translation": np.array(translation)}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **tables)
    return tables


@cache
def _group_arrays() -> dict:
    """Per group, its positions padded to the largest count: (231, W) arrays, and its atom budget base."""
    t = wyckoff_tables()
    width = int(t["count"].max())
    index = t["first"][:, None] + np.arange(width)[None, :]
    valid = np.arange(width)[None, :] < t["count"][:, None]
    index = np.where(valid, index, 0)
    multiplicity = np.where(valid, t["multiplicity"][index], 10**6)
    dof = np.where(valid, t["dof"][index], -1)
    # the budget needs room for one position with >= 2 free parameters plus the smallest free one
    two = np.where(dof >= 2, multiplicity, 10**6).min(axis=1)
    free = np.where(dof >= 1, multiplicity, 10**6).min(axis=1)
    need = np.where(two < 10**6, two + free, 0)
    need[0] = 0
    system = np.array([""] + [crystal_system(g) for g in range(1, N_SPACE_GROUPS + 1)])
    return {"index": index, "valid": valid, "multiplicity": multiplicity, "dof": dof, "need": need,
            "smallest_free": free, "system": system}


@cache
def _atomic_volumes() -> np.ndarray:
    """(95,) volume of a sphere of pymatgen's atomic radius for each Z (Angstrom^3), 0 for Z = 0."""
    out = np.zeros(95)
    with warnings.catch_warnings():  # pymatgen warns for the few elements without a radius (At, Fr)
        warnings.simplefilter("ignore")
        for z in range(1, 95):
            r = Element.from_Z(z).atomic_radius or Element.from_Z(z).atomic_radius_calculated or 1.5
            out[z] = 4 / 3 * math.pi * float(r) ** 3
    return out


@cache
def _element_table() -> tuple[np.ndarray, np.ndarray]:
    """AMCSD's elements (Z) and their log frequencies, for the Gumbel top-k draw."""
    stats = amcsd_statistics()
    z = np.array([Element(s).Z for s in stats["elements"]])
    return z, np.log(np.asarray(stats["element_p"]))


@cache
def _size_distributions() -> tuple[np.ndarray, np.ndarray]:
    stats = amcsd_statistics()
    return np.cumsum(stats["n_species_p"]), np.cumsum(stats["n_orbits_p"])


# ---------------------------------------------------------------------------------------------
# The draw


def draw_space_groups(n: int, rng: np.random.Generator, *, balance: str = "extinction_group",
                      space_groups=None, weights=None) -> np.ndarray:
    """(n,) ITA numbers: uniform over extinction groups or space groups, or by ``weights``.

    ``weights`` (one per class of ``balance`` that ``space_groups`` reach: 99 extinction groups or 230
    space groups, in label order) replaces the uniform choice of a class; members of an extinction
    group are always drawn uniformly.
    """
    if balance not in BALANCES:
        raise ValueError(f"balance must be one of {BALANCES}, got {balance!r}")
    groups = np.arange(1, N_SPACE_GROUPS + 1) if space_groups is None else np.unique(np.asarray(space_groups))
    if len(groups) == 0 or groups.min() < 1 or groups.max() > N_SPACE_GROUPS:
        raise ValueError("space_groups must be ITA numbers 1-230")
    if balance == "space_group":
        classes, members = groups, [np.array([g]) for g in groups]
    else:
        labels = extinction_groups(groups)
        classes = np.unique(labels)
        members = [groups[labels == c] for c in classes]
    if weights is None:
        p = np.full(len(classes), 1 / len(classes))
    else:
        weights = np.asarray(weights, dtype=float)
        size = 99 if balance == "extinction_group" else N_SPACE_GROUPS
        if weights.shape != (size,) or (weights < 0).any() or not weights[classes - 1].sum() > 0:
            raise ValueError(f"weights must be {size} non-negative numbers, one per {balance}, "
                             "not all zero over the classes drawn from")
        p = weights[classes - 1] / weights[classes - 1].sum()
    which = rng.choice(len(classes), size=n, p=p)
    sizes = np.array([len(m) for m in members])
    pick = np.floor(rng.random(n) * sizes[which]).astype(np.int64)
    table = np.zeros((len(classes), sizes.max()), dtype=np.int64)
    for i, m in enumerate(members):
        table[i, : len(m)] = m
    return table[which, pick]


def sample_crystals(n: int, *, seed, balance: str = "extinction_group", space_groups=None, weights=None,
                    max_atoms: int = 48, max_species: int = 4, max_orbits: int = 8, orbit_scale: float = 1.0,
                    cell_atoms: float | None = None, min_distance: float | None = None, max_redraws: int = 10) -> StructureBatch:
    """``n`` random crystals as a StructureBatch (``space_group`` holds each one's label).

    Args:
        n: crystals.
        seed: an int or a sequence of ints (e.g. ``(seed, step)``): the batch depends on the
            arguments alone.
        balance: 'extinction_group' or 'space_group': which classes are drawn uniformly.
        space_groups: ITA numbers to draw from (default all 230).
        weights: optional class weights, see :func:`draw_space_groups`.
        max_atoms: atoms in the conventional cell (raised for a few cubic groups, see module doc).
        max_species, max_orbits: most elements and occupied orbits per crystal.
        orbit_scale: factor on the number of occupied orbits drawn from AMCSD's statistics (rounded,
            then capped by ``max_orbits`` and the atom budget). larixite's AMCSD holds only entries
            with at most 9 sites in the asymmetric unit; a factor above 1 reaches the complex
            low-symmetry structures it leaves out. 1 draws AMCSD's numbers of orbits unscaled.
        cell_atoms: if given, the median number of atoms in the conventional cell, drawn instead of
            the orbits (log-normal with sigma :data:`CELL_ATOMS_SPREAD`, the same for every group,
            capped by ``max_atoms``); the cell is filled with orbits up to it, at most ``max_orbits``.
            A triclinic crystal then has as many atoms as an orthorhombic one, where the orbit draw
            gives it few (its orbits hold one or two atoms); a cubic one has more where its budget is
            raised (above). AMCSD's median is 24.
        min_distance: Angstrom; if given, crystals with two atoms closer are drawn again.
        max_redraws: coordinate redraws per crystal before it is kept as it is.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    space_group = draw_space_groups(n, rng, balance=balance, space_groups=space_groups, weights=weights)
    orbits = _draw_orbits(space_group, rng, max_atoms=max_atoms, max_species=max_species, max_orbits=max_orbits,
                          orbit_scale=orbit_scale, cell_atoms=cell_atoms)
    batch = _place_atoms(space_group, orbits, rng)
    if min_distance:  # redraw the points of the crystals still too close, testing only those
        pending, sub, placed = np.arange(n), orbits, batch
        for _ in range(max_redraws):
            close = np.flatnonzero(_orbit_shortest(placed, sub) < min_distance)
            if len(close) == 0:
                break
            pending = pending[close]
            keep = np.isin(sub["crystal"], close)
            remap = np.full(len(placed), -1)
            remap[close] = np.arange(len(close))
            sub = {k: v[keep] for k, v in sub.items()}
            sub["crystal"] = remap[sub["crystal"]]
            sub["xyz"] = rng.random((keep.sum(), 3))
            placed = _place_atoms(space_group[pending], sub, rng, lattice=batch.lattice[pending])
            batch.frac_coords[pending, : placed.max_sites] = placed.frac_coords
    return batch


def _draw_orbits(space_group: np.ndarray, rng: np.random.Generator, *, max_atoms: int, max_species: int,
                 max_orbits: int, orbit_scale: float = 1.0, cell_atoms: float | None = None) -> dict:
    """The occupied orbits of every crystal: crystal index, position index, Z, B and random point."""
    g = _group_arrays()
    n = len(space_group)
    species_cdf, orbits_cdf = _size_distributions()
    n_species = np.clip(np.searchsorted(species_cdf, rng.random(n) * species_cdf[-1], side="right"),
                        MIN_SPECIES, max_species)
    n_orbits = np.searchsorted(orbits_cdf, rng.random(n) * orbits_cdf[-1], side="right")
    if orbit_scale != 1.0:
        n_orbits = np.rint(n_orbits * orbit_scale).astype(n_orbits.dtype)
    n_orbits = np.clip(n_orbits, n_species, max(max_orbits, max_species))
    budget = np.full(n, max_atoms)
    if cell_atoms:  # one more draw, after the species and orbit counts (which the budget then overrides)
        budget = np.rint(cell_atoms * np.exp(CELL_ATOMS_SPREAD * rng.standard_normal(n))).astype(np.int64)
        budget = np.clip(budget, 1, max_atoms)
        n_orbits = np.full(n, max(max_orbits, max_species))
    z_table, log_p = _element_table()
    gumbel = log_p[None, :] - np.log(-np.log(rng.random((n, len(log_p)))))
    elements = z_table[np.argsort(-gumbel, axis=1)[:, :max_species]]  # (n, max_species), by draw

    multiplicity = g["multiplicity"][space_group]  # (n, W)
    dof = g["dof"][space_group]
    budget = np.maximum(budget, g["need"][space_group])
    smallest = g["smallest_free"][space_group]
    used = np.zeros(multiplicity.shape, dtype=bool)
    left = budget.copy()
    rows = np.arange(n)
    chosen = np.full((n, max(n_orbits.max(), 1)), -1)
    for k in range(chosen.shape[1]):
        active = k < n_orbits
        if k < 2:  # the orbits that pin the symmetry: most free parameters, distinct where possible
            reserve = smallest[:, None] if k == 0 else 0
            fits = (dof > 0) & (multiplicity <= (left[:, None] - reserve))
            best = np.where(fits, dof, -1).max(axis=1, keepdims=True)
            fits &= dof == best
            if k == 1:
                fresh = fits & ~used
                fits = np.where(fresh.any(axis=1, keepdims=True), fresh, fits)
        else:
            fits = (multiplicity <= left[:, None]) & ((dof > 0) | ~used) & (dof >= 0)
        fits &= active[:, None]
        keys = np.where(fits, rng.random(fits.shape), -1.0)
        j = keys.argmax(axis=1)
        ok = fits[rows, j]
        chosen[ok, k] = j[ok]
        used[rows[ok], j[ok]] = True
        left[ok] -= multiplicity[rows[ok], j[ok]]
    crystal, k = np.nonzero(chosen >= 0)
    position = g["index"][space_group[crystal], chosen[crystal, k]]
    # orbit k takes element k while elements last, then any of the crystal's elements
    slot = np.where(k < n_species[crystal], k,
                    np.floor(rng.random(len(k)) * n_species[crystal]).astype(np.int64))
    return {"crystal": crystal, "position": position, "z": elements[crystal, slot],
            "b_iso": rng.choice(B_ISO, size=len(k)), "xyz": rng.random((len(k), 3))}


def _place_atoms(space_group: np.ndarray, orbits: dict, rng: np.random.Generator, *,
                 lattice: np.ndarray | None = None) -> StructureBatch:
    """Map each orbit's point through its position's affine maps and pack the atoms; draw cells."""
    t = wyckoff_tables()
    n = len(space_group)
    mult = t["multiplicity"][orbits["position"]]
    orbit_of_atom = np.repeat(np.arange(len(mult)), mult)
    within = np.arange(len(orbit_of_atom)) - np.repeat(np.cumsum(mult) - mult, mult)
    op = t["op_start"][orbits["position"]][orbit_of_atom] + within
    xyz = orbits["xyz"][orbit_of_atom]
    coords = np.einsum("aij,aj->ai", t["rotation"][op], xyz) + t["translation"][op]
    coords -= np.floor(coords)
    crystal = orbits["crystal"][orbit_of_atom]  # sorted: orbits come crystal by crystal
    n_sites = np.bincount(crystal, minlength=n)
    site = np.arange(len(crystal)) - np.repeat(np.cumsum(n_sites) - n_sites, n_sites)
    batch = StructureBatch.empty(n, max(int(n_sites.max(initial=1)), 1), 1)
    batch.frac_coords[crystal, site] = coords
    batch.atomic_number[crystal, site, 0] = orbits["z"][orbit_of_atom]
    batch.occupancy[crystal, site, 0] = 1.0
    batch.b_iso[crystal, site] = orbits["b_iso"][orbit_of_atom]
    batch.n_sites[:] = n_sites
    batch.space_group[:] = space_group
    if lattice is None:
        volume = np.bincount(crystal, weights=_atomic_volumes()[orbits["z"][orbit_of_atom]], minlength=n)
        volume *= VOLUME_FACTOR * np.exp(VOLUME_PER_ATOM_SPREAD * rng.standard_normal(n))
        lattice = random_lattices(space_group, volume, rng)
    batch.lattice[:] = lattice
    return batch


def random_lattices(space_group: np.ndarray, volume: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 3) lattice rows for each group's crystal system, in the tables' setting, of the given volumes.

    Lengths: log-uniform ratios up to :data:`AXIS_RATIO`, tied as the system requires. Angles:
    monoclinic beta (unique axis b) uniform in 90-120 degrees; triclinic alpha, beta, gamma uniform in
    70-110 degrees (redrawn where the cell would be degenerate); hexagonal and trigonal cells (also
    rhombohedral groups, on hexagonal axes) gamma = 120.
    """
    n = len(space_group)
    system = _group_arrays()["system"][space_group]
    ratio = np.exp(rng.uniform(-1, 1, size=(n, 3)) * math.log(AXIS_RATIO) / 2)
    a, b, c = ratio.T
    tied_ab = np.isin(system, ("tetragonal", "trigonal", "hexagonal", "cubic"))
    b = np.where(tied_ab, a, b)
    c = np.where(system == "cubic", a, c)
    alpha = np.full(n, 90.0)
    beta = np.full(n, 90.0)
    gamma = np.where(np.isin(system, ("trigonal", "hexagonal")), 120.0, 90.0)
    mono = system == "monoclinic"
    beta[mono] = rng.uniform(90, 120, size=mono.sum())
    tri = np.flatnonzero(system == "triclinic")
    angles = rng.uniform(70, 110, size=(len(tri), 3))
    for _ in range(100):  # a valid triclinic cell needs a positive Gram determinant
        bad = _gram_determinant(*np.radians(angles).T) < 0.1
        if not bad.any():
            break
        angles[bad] = rng.uniform(70, 110, size=(bad.sum(), 3))
    alpha[tri], beta[tri], gamma[tri] = angles.T
    matrix = lattice_matrices(a, b, c, alpha, beta, gamma)
    scale = np.cbrt(volume / np.abs(np.linalg.det(matrix)))
    return matrix * scale[:, None, None]


def _gram_determinant(alpha, beta, gamma):
    ca, cb, cg = np.cos(alpha), np.cos(beta), np.cos(gamma)
    return 1 - ca**2 - cb**2 - cg**2 + 2 * ca * cb * cg


def lattice_matrices(a, b, c, alpha, beta, gamma) -> np.ndarray:
    """(n, 3, 3) rows a, b, c (Angstrom) from cell parameters (degrees), in pymatgen's orientation."""
    alpha, beta, gamma = (np.radians(np.asarray(x, dtype=float)) for x in (alpha, beta, gamma))
    ca, cb, cg, sg = np.cos(alpha), np.cos(beta), np.cos(gamma), np.sin(gamma)
    # exact values at 90 and 120 degrees, so that tied metrics are tied to the last bit
    ca, cb = (np.where(np.isclose(x, 0, atol=1e-15), 0.0, x) for x in (ca, cb))
    cg = np.where(np.isclose(cg, 0, atol=1e-15), 0.0, np.where(np.isclose(cg, -0.5), -0.5, cg))
    sg = np.sqrt(1 - cg**2)
    out = np.zeros((len(np.atleast_1d(a)), 3, 3))
    out[:, 0, 0] = a
    out[:, 1, 0] = b * cg
    out[:, 1, 1] = b * sg
    out[:, 2, 0] = c * cb
    out[:, 2, 1] = c * (ca - cb * cg) / sg
    out[:, 2, 2] = c * np.sqrt(np.clip(1 - cb**2 - ((ca - cb * cg) / sg) ** 2, 0, None))
    return out


def _orbit_shortest(batch: StructureBatch, orbits: dict) -> np.ndarray:
    """(n,) shortest interatomic distance of each crystal, from each orbit's first atom to every atom:
    by symmetry every pair has an image that starts at such an atom, so this is the whole minimum."""
    mult = wyckoff_tables()["multiplicity"][orbits["position"]]
    crystal = orbits["crystal"]
    starts = np.cumsum(mult) - mult
    first_site = starts - starts[np.searchsorted(crystal, crystal)]  # orbits come crystal by crystal
    m = batch.max_sites
    delta = batch.frac_coords[crystal] - batch.frac_coords[crystal, first_site][:, None, :]  # (orbits, m, 3)
    delta -= np.round(delta)
    d = np.linalg.norm(np.einsum("omk,okl->oml", delta, batch.lattice[crystal]), axis=2)
    d[np.arange(m)[None, :] >= batch.n_sites[crystal][:, None]] = np.inf
    d[np.arange(len(crystal)), first_site] = np.inf
    out = np.full(len(batch), np.inf)
    np.minimum.at(out, crystal, d.min(axis=1))
    return out


def shortest_distances(batch: StructureBatch, chunk: int = 64) -> np.ndarray:
    """(n,) the shortest distance between two atoms of each crystal (Angstrom), nearest images.

    The nearest image is taken by rounding fractional differences, exact in cells whose angles are
    near 90 degrees and an upper bound in skewed ones. Crystals are handled in chunks of similar size.
    """
    out = np.full(len(batch), np.inf)
    order = np.argsort(batch.n_sites, kind="stable")
    for start in range(0, len(batch), chunk):
        rows = order[start: start + chunk]
        m = int(batch.n_sites[rows].max(initial=1))
        x = batch.frac_coords[rows, :m]
        present = np.arange(m)[None, :] < batch.n_sites[rows, None]
        delta = x[:, :, None, :] - x[:, None, :, :]
        delta -= np.round(delta)
        cart = np.einsum("nijk,nkl->nijl", delta, batch.lattice[rows])
        d = np.sqrt((cart**2).sum(-1))
        d[~(present[:, :, None] & present[:, None, :])] = np.inf
        d[:, np.arange(m), np.arange(m)] = np.inf
        out[rows] = d.reshape(len(rows), -1).min(axis=1)
    return out


# ---------------------------------------------------------------------------------------------
# The Laue symmetry the simulator uses, known from the space group


@cache
def _symmetry_table():
    """:func:`_detect_group_symmetry`, cached on disk beside the Wyckoff tables."""
    import pyxtal  # slow to import; needed only when crystals are drawn

    path = CACHE / "wyckoff" / f"pyxtal-{pyxtal.__version__}-v{TABLES_VERSION}-laue.npz"
    if path.exists():
        with np.load(path) as f:
            return tuple(f[k] for k in ("flips", "permutations", "centres", "hexagonal"))
    table = _detect_group_symmetry()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **dict(zip(("flips", "permutations", "centres", "hexagonal"), table)))
    return table


def _detect_group_symmetry():
    """laue.cell_symmetry of one generic crystal per group: its general orbit of two random points.

    A generic point's orbit under a group has exactly that group's symmetry, and the metric of a
    generic cell of the group's system, so the result holds for every crystal of the group drawn in
    the tables' setting.
    """
    t, g = wyckoff_tables(), _group_arrays()
    rng = np.random.default_rng(20261201)
    groups = np.arange(1, N_SPACE_GROUPS + 1)
    general = g["index"][groups, 0]  # PyXtal lists the general position first
    orbits = {"crystal": np.repeat(np.arange(len(groups)), 2), "position": np.repeat(general, 2),
              "z": np.tile([8, 14], len(groups)), "b_iso": np.zeros(2 * len(groups)),
              "xyz": rng.random((2 * len(groups), 3))}
    assert (t["dof"][general] == 3).all()
    batch = _place_atoms(groups, orbits, rng)
    types = np.where(batch.atomic_number[:, :, 0] > 0, batch.atomic_number[:, :, 0], -1)
    types = np.where(np.arange(batch.max_sites)[None, :] < batch.n_sites[:, None], types, -1)
    flips, permutations, centres, hexagonal = cell_symmetry(batch.lattice, batch.frac_coords, types)
    pad = lambda x: np.concatenate([np.zeros_like(x[:1]), x])  # noqa: E731 (row 0: no group)
    return pad(flips), pad(permutations), pad(centres), pad(hexagonal)


def laue_symmetry_of(space_group) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The simulator's symmetry tuple (as :func:`xtal_utils.diffraction.laue.laue_symmetry` returns it)
    of crystals drawn by :func:`sample_crystals`, from their space groups alone: (n, 3) flips,
    (n,) permutations, (n, 3) centres, (n,) hexagonal."""
    space_group = np.asarray(space_group, dtype=np.int64)
    flips, permutations, centres, hexagonal = _symmetry_table()
    return flips[space_group], permutations[space_group], centres[space_group], hexagonal[space_group]
