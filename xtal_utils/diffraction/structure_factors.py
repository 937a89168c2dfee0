"""Stage 2 of the simulator: atoms on the device, their scattering factors, and the intensities.

A batch's site species are flattened into atoms and padded, per structure, to one of a few fixed
sizes (:func:`_padded_atoms`), so that a structure's pattern does not depend on the rest of the batch;
where a structure has a centre of symmetry, one atom of each pair related by it stands for both
(:func:`centric_halves`). Coordinates go to the device in 32-bit fixed point, so that g.r wraps
exactly in integer arithmetic. Each structure factor F = sum_j o_j f_j(s) exp(2 pi i g.r_j) is then
summed over a structure's atoms, with the form factors f_j(s) exp(-B_j s^2) interpolated from a
table that is shared by all batches (:func:`form_factor_table`).
"""

from __future__ import annotations

import dataclasses
import math
import numpy as np
import torch

from xtal_utils.diffraction.reflections import hkl_boxes
from xtal_utils.diffraction.scattering import XRAY_SCALE, neutron_table, symbol, xray_table
from xtal_utils.structures import StructureBatch

BYTES_PER_PAIR = 64  # device memory per (reflection, atom) pair while summing structure factors
CENTRIC_TOL = 2.0**-12  # fractional coordinates this close to 0 or 1/2 (from a centre) lie on x = -x
MIN_PADDED_ATOMS = 8  # the ladder of padded sizes starts at 3/4 of this (see _padded_atoms)
PHASE_BITS = 32  # fractional coordinates in fixed point, so that g.r wraps exactly in int32 arithmetic
FORM_FACTOR_POINTS = 1024  # s^2 samples of the form-factor table
EXP_FLOOR = 80.0  # exp(-x) for x > 80 is below float32's normal range (and slow as a denormal)
TABLE_CACHE_SIZE = 4096  # (element, B) pairs in a form-factor table before it starts afresh, 8 kB each
_TABLE_CACHE: dict[tuple, tuple] = {}  # (radiation, s^2 top, dtype, device) -> table, {(Z, B): row block}


@dataclasses.dataclass
class AtomChunk:
    """Structures ``start:stop`` of an :class:`Atoms`, all padded to the same number of atoms."""

    start: int
    stop: int
    feat: torch.Tensor  # (g, 5, m) int32: x, y, z in units of 2^-32 (PHASE_BITS), the bits of the float32
    #                     weight, and the atom's (element, B) pair: its first row of ``table``, or an index into key_z
    acentric: int  # the first structure (in the Atoms) whose F is complex; those before are centric


@dataclasses.dataclass
class Atoms:
    """A batch as device tensors, its structures reordered by padded atom count (``order``).

    Atoms are site species; a structure's atoms are padded (weight 0) to the next of 6, 8, 12, 16,
    24, ... (:func:`_padded_atoms`), which depends on the structure alone, so that its pattern does not
    depend on the other structures of the batch.
    """

    order: np.ndarray  # (n,) the batch row of each structure here
    dtype: torch.dtype  # of the intensities and the reflection positions
    recip_metric: np.ndarray  # (n, 3, 3) float64 G* = (L L^T)^-1 of the lattice with permuted axes, 1/Angstrom^2
    chunks: list[AtomChunk]  # consecutive structures with the same padded size
    within_chunk: torch.Tensor  # (n,) long, each structure's place in its chunk
    key_z: torch.Tensor  # (p,) long, atomic number of each distinct (Z, B) pair (0 for neutrons)
    key_b: torch.Tensor  # (p,) isotropic Debye-Waller B, Angstrom^2
    any_b: bool
    md_axis: torch.Tensor | None  # (n,) long, March-Dollase axis after permuting the lattice axes
    table: torch.Tensor | None  # (p * FORM_FACTOR_POINTS, 2) f(s) exp(-B s^2) of each pair on a grid of s^2,
    #                            and its step to the next grid point
    table_top: float  # the largest s^2 of the table, 1/Angstrom^2
    extent: np.ndarray  # (n, 3) hkl box half-widths
    nonneg: np.ndarray  # (n,) 1, 2 or 3: the last this many box axes start at 0 (see laue.py)
    permutations: np.ndarray  # (n,) the axis permutations of the Laue group, an index into PERMUTATION_GROUPS
    hexagonal: np.ndarray  # (n,) the hexagonal Laue group used, an index into laue.HEXAGONAL_GROUPS (0: none)


def flatten_atoms(batch: StructureBatch, r_max: float, debye_waller_factors, *, radiation: str, dtype, device,
                  permute: bool, no_reflection: str, md_axis=None, table: bool = True,
                  flips: np.ndarray | None = None, permutations: np.ndarray | None = None,
                  centres: np.ndarray | None = None, hexagonal: np.ndarray | None = None) -> Atoms:
    """Check the batch, flatten site species into atoms, name their scattering factors, move to the device.

    ``r_max`` (1/Angstrom) bounds |g| of every reflection that will be asked for. ``flips`` (n, 3)
    and ``permutations`` (n,), each structure's Laue symmetry (:func:`laue.laue_symmetry`), let its
    box be cut (with ``permute``; :func:`reflections.hkl_boxes`); ``centres`` (n, 3), its centre of
    symmetry (NaN if none), let half of its atoms stand for all (:func:`centric_halves`);
    ``hexagonal`` (n,), its trigonal or hexagonal Laue group, lets a wedge of the (h, k) plane stand
    for the rest. ``table``: tabulate the form factors (:func:`form_factor_table`) rather than
    evaluate them at each reflection. ``radiation``: 'xray' or 'neutron'. ``no_reflection``: the
    problem reported for a structure whose box holds no hkl but 000.
    """
    n, n_sites, n_species = batch.atomic_number.shape
    z_all = batch.atomic_number.reshape(n, -1)
    occupancy_all = batch.occupancy.reshape(n, -1)
    within = np.arange(n_sites * n_species)[None, :] // n_species < batch.n_sites[:, None]
    rows, cols = np.nonzero((z_all > 0) & (occupancy_all > 0) & within)  # every atom, by structure
    n_atoms = np.bincount(rows, minlength=n)
    if (n_atoms == 0).any():
        raise ValueError(f"{batch.describe(int(np.argmax(n_atoms == 0)))}: has no sites")
    site = cols // n_species
    z = z_all[rows, cols].astype(np.int64)
    weight = occupancy_all[rows, cols].astype(np.float64)
    coords = batch.frac_coords[rows, site].astype(np.float64)  # (atoms, 3)
    if debye_waller_factors:
        by_z = np.zeros(z.max() + 1)
        for zz in np.unique(z):
            by_z[zz] = debye_waller_factors.get(symbol(zz), 0.0)
        b_iso = by_z[z]
    else:
        b_iso = batch.b_iso[rows, site].astype(np.float64)
    if radiation == "xray":
        _, known = xray_table()
    else:
        lengths, known = neutron_table()
    unknown = ~known[np.minimum(z, len(known) - 1)]
    if unknown.any():
        j = int(np.argmax(unknown))
        data = "X-ray form factor" if radiation == "xray" else "neutron scattering length"
        raise ValueError(f"{batch.describe(int(rows[j]))}: element {symbol(z[j])} has no {data} "
                         "in pymatgen's tables")
    if radiation == "neutron":
        weight = weight * lengths[z]

    # the scattering factor of each atom: one per (element, B) pair for X-rays, one per B for neutrons
    key_z = z if radiation == "xray" else np.zeros_like(z)
    if b_iso.min() == b_iso.max():  # commonly all 0
        b_values, b_code = np.round(b_iso[:1], 6), 0
    else:
        b_values, b_code = np.unique(np.round(b_iso, 6), return_inverse=True)
    code = key_z * len(b_values) + b_code
    if code.max() < 2**20:  # np.unique without sorting
        present = np.zeros(code.max() + 1, dtype=bool)
        present[code] = True
        pair_values = np.flatnonzero(present)
        key = (np.cumsum(present) - 1)[code]
    else:
        pair_values, key = np.unique(code, return_inverse=True)
    pairs = np.stack([pair_values // len(b_values), b_values[pair_values % len(b_values)]], axis=1)
    centric = np.zeros(n, dtype=bool)
    if centres is not None and permute:
        keep, factor, centric, coords = centric_halves(rows, coords, centres, n_atoms)
        keep = np.flatnonzero(keep)
        rows, coords, key, weight = rows[keep], coords[keep], key[keep], weight[keep] * factor[keep]
        n_atoms = np.bincount(rows, minlength=n)

    # hkl box: |h| <= |g| |a| for g within the limiting sphere
    boxes = hkl_boxes(batch.lattice.astype(np.float64), r_max, permute=permute, md_axis=md_axis, flips=flips,
                      permutations=permutations, hexagonal=hexagonal)
    if (boxes.extent.max(axis=1) == 0).any():
        raise ValueError(f"{batch.describe(int(np.argmax(boxes.extent.max(axis=1) == 0)))}: {no_reflection}")
    if boxes.perm is not None:  # the atoms in the axis order of the box
        coords = np.take_along_axis(coords, boxes.perm[rows], axis=1)
    md_axis = boxes.md_axis

    # structures in order of padded size; each atom at its place in its structure's row
    padded = _padded_atoms(n_atoms)
    order = np.lexsort((~centric, padded))  # by padded size, centric structures first
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    place = np.arange(len(rows)) - (np.cumsum(n_atoms) - n_atoms)[rows]  # rows are sorted
    table_top = (r_max / 2) ** 2 * (1 + 1e-6)
    form_factors = None
    if table:  # atoms then name rows of the shared table instead of pairs of this batch
        form_factors, pair_rows = form_factor_table(radiation, pairs, table_top, dtype, device)
        key = pair_rows[key] * FORM_FACTOR_POINTS
    feat = np.zeros((n, 5, padded.max()), dtype=np.int32)
    fixed_point = np.round((coords - np.round(coords)) * 2.0**PHASE_BITS).astype(np.int64)
    feat[rank[rows], :3, place] = fixed_point.astype(np.int32)  # +1/2 turn wraps to -1/2, the same phase
    feat[rank[rows], 3, place] = weight.astype(np.float32).view(np.int32)
    feat[rank[rows], 4, place] = key  # padding atoms name pair 0 (with weight 0)
    padded = padded[order]

    def put(x, kind=dtype):
        return torch.as_tensor(np.ascontiguousarray(x), device=device).to(kind)

    chunks = []
    bounds = [0, *(np.flatnonzero(np.diff(padded)) + 1).tolist(), n]
    centric = centric[order]
    for start, stop in zip(bounds, bounds[1:]):
        chunks.append(AtomChunk(start, stop, feat=put(feat[start:stop, :, :padded[start]], torch.int32),
                             acentric=start + int(centric[start:stop].sum())))
    within_chunk = np.arange(n) - np.repeat(bounds[:-1], np.diff(bounds))
    if md_axis is not None:
        md_axis = md_axis[torch.as_tensor(order, device=md_axis.device)]
    return Atoms(order=order, dtype=dtype, recip_metric=boxes.recip_metric[order], chunks=chunks,
                  within_chunk=put(within_chunk, torch.long),
                  key_z=put(pairs[:, 0].astype(np.int64), torch.long), key_b=put(pairs[:, 1]),
                  any_b=bool((pairs[:, 1] != 0).any()), md_axis=md_axis, table=form_factors,
                  table_top=table_top, extent=boxes.extent[order], nonneg=boxes.nonneg[order],
                  permutations=boxes.permutations[order], hexagonal=boxes.hexagonal[order])


def intensities(atoms: Atoms, refl: dict, *, radiation: str, max_batch_bytes: int, march_dollase_r=None,
                strain=None, exact: bool = False) -> torch.Tensor:
    """|F|^2 x LP x Friedel weight [x March-Dollase] of each reflection: (r,).

    F = sum_j o_j f_j(s) exp(i (h X_j + k Y_j + l Z_j)) over each structure's padded atoms, one
    chunk of equally padded structures at a time (and within it, pieces of at most
    ``max_batch_bytes``). ``exact`` evaluates the form factors at every reflection instead of
    interpolating a table.

    Args:
        refl: the reflections of :func:`reflections.reflections_in_shell`.
        radiation: 'xray' or 'neutron'.
        march_dollase_r, strain: (n,) each structure's March-Dollase r and isotropic strain, or None.
    """
    row = refl["row"]
    h, k, l = refl["hkl"][:, :, None].unbind(0)  # (r, 1) int32 each
    s2 = 0.25 * refl["g2"]
    F2 = torch.empty_like(s2)
    form = form_factors(radiation, atoms, s2, exact)
    local_all = atoms.within_chunk.index_select(0, row)
    starts = [x for chunk in atoms.chunks for x in (chunk.start, chunk.acentric)] + [len(atoms.extent)]
    bounds = torch.searchsorted(row, torch.as_tensor(starts, device=row.device)).tolist()  # structure order
    for chunk, first, complex_from, last in zip(atoms.chunks, bounds[::2], bounds[1::2], bounds[2::2]):
        m = chunk.feat.shape[2]
        step = max(1, max_batch_bytes // (BYTES_PER_PAIR * m))
        for a in range(first, last, step):
            b = min(last, a + step)
            local = local_all[a:b]
            x = chunk.feat.index_select(0, local)  # (r, 5, m)
            # g.r in units of 2^-32 turns: integer products wrap modulo 2^32, i.e. whole turns, so
            # the phase is exact whatever the size of hkl (float32 would lose |hkl| x 2^-24 turns)
            turns = x[:, 0] * h[a:b]
            turns.addcmul_(x[:, 1], k[a:b]).addcmul_(x[:, 2], l[a:b])
            phase = turns.to(s2.dtype).mul_(2 * math.pi / 2.0**PHASE_BITS)
            weight = x[:, 3].view(torch.float32).to(s2.dtype)
            if form is not None:
                weight = weight * form(x[:, 4], a, b)
            re = (torch.cos(phase) * weight).sum(dim=1)
            torch.mul(re, re, out=F2[a:b])
            c = min(max(complex_from - a, 0), b - a)  # rows from c on have an imaginary part
            if c < b - a:
                im = (torch.sin(phase[c:]) * weight[c:]).sum(dim=1)
                F2[a + c: b].addcmul_(im, im)

    sin2 = refl["sin2"]
    cos_theta = torch.sqrt(1 - sin2)
    if radiation == "xray":
        lp = (1 + (1 - 2 * sin2) ** 2) / (sin2 * cos_theta)
    else:
        lp = 1 / (sin2 * cos_theta)
    intensity = F2 * lp * refl["friedel"]
    if march_dollase_r is not None:
        intensity = intensity * march_dollase(atoms, refl, march_dollase_r, strain)
    return intensity


def form_factor_table(radiation: str, pairs: np.ndarray, table_top: float, dtype,
                      device) -> tuple[torch.Tensor, np.ndarray]:
    """f(s) exp(-B s^2) of (element, B) pairs on FORM_FACTOR_POINTS values of s^2 up to ``table_top``.

    One table is kept per (radiation, s^2 range, dtype, device) and grows by the pairs it has not
    seen (``_TABLE_CACHE``), as the same elements recur in every batch.

    Args:
        pairs: (p, 2) atomic number and B (Angstrom^2).

    Returns:
        the table (q * FORM_FACTOR_POINTS, 2): value and step to the next grid point; and (p,) the
        table's row block of each pair.
    """
    key = (radiation, table_top, dtype, str(device))
    table, index = _TABLE_CACHE.get(key, (None, {}))  # replaced, never changed: safe to share
    names = [(int(z), float(b)) for z, b in pairs.tolist()]
    missing = [i for i, name in enumerate(names) if name not in index]
    if missing:
        if len(index) + len(missing) > TABLE_CACHE_SIZE:
            table, index = None, {}
            missing = list(range(len(names)))
        grid = torch.linspace(0.0, table_top, FORM_FACTOR_POINTS, dtype=dtype, device=device)
        z = torch.as_tensor(pairs[missing, 0].astype(np.int64), device=device)
        b = torch.as_tensor(pairs[missing, 1], device=device).to(dtype)
        f = pair_form_factors(radiation, z, b, grid[None, :])  # (q, t)
        rows = torch.stack([f, torch.diff(f, dim=1, append=f[:, -1:])], dim=-1).reshape(-1, 2)
        table = rows if table is None else torch.cat([table, rows])
        index = {**index, **{names[i]: len(index) + j for j, i in enumerate(missing)}}
        _TABLE_CACHE[key] = table, index
    return table, np.array([index[name] for name in names], dtype=np.int64)


def clear_form_factor_tables() -> None:
    """Forget the form-factor tables that :func:`form_factor_table` keeps between batches."""
    _TABLE_CACHE.clear()


def pair_form_factors(radiation: str, z: torch.Tensor, b: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """f(s) exp(-B s^2) of (element, B) pairs at s^2 in 1/Angstrom^2; pairs and s2 broadcast.

    Args:
        z: (p,) long atomic numbers; b: (p,) B in Angstrom^2; s2: (1 or p, r).

    X-rays: pymatgen's form factor times the Debye-Waller factor; neutrons: the Debye-Waller
    factor only (the scattering length is already in the atom weights).
    """
    any_b = bool((b != 0).any())
    while z.dim() < s2.dim():
        z, b = z[..., None], b[..., None]
    f = torch.ones_like(s2 * b)
    if radiation == "xray":
        coeffs, _ = xray_table()
        c = torch.as_tensor(coeffs, dtype=s2.dtype, device=s2.device)[z]  # (..., 4, 2)
        decay = torch.exp(-(c[..., 1] * s2[..., None]).clamp_max(EXP_FLOOR))
        f = z.to(s2.dtype) - XRAY_SCALE * s2 * (c[..., 0] * decay).sum(-1)
    if any_b:
        f = f * torch.exp(-(b * s2).clamp_max(EXP_FLOOR))
    return f


def form_factors(radiation: str, atoms: Atoms, s2: torch.Tensor, exact: bool):
    """The scattering factors of atoms at the reflections' s^2 (r,), or None where they are all 1.

    Returns a function of (pair, a, b): the factor (b - a, m) of the atoms whose (element, B) pairs
    are ``pair`` (b - a, m) int32 (:class:`AtomChunk`) at reflections a:b. None for neutrons without
    Debye-Waller factors. Unless ``exact``, each pair is tabulated once on FORM_FACTOR_POINTS
    values of s^2 (``atoms.table``) and is interpolated linearly (relative error below 1e-4).
    """
    if radiation == "neutron" and not atoms.any_b:
        return None
    if exact:
        full = pair_form_factors(radiation, atoms.key_z, atoms.key_b, s2[None, :]).T  # (r, p)
        return lambda pair, a, b: full[a:b].gather(1, pair.long())
    u = s2 * ((FORM_FACTOR_POINTS - 1) / atoms.table_top)
    i = u.long().clamp_(0, FORM_FACTOR_POINTS - 2)
    frac, i = (u - i)[:, None], i.to(torch.int32)[:, None]
    table = atoms.table

    def interpolated(pair, a, b):
        # index_select on flat indices is several times faster than advanced indexing on CPU
        value = table.index_select(0, (pair + i[a:b]).view(-1)).view(*pair.shape, 2)  # value and slope
        return torch.addcmul(value[..., 0], value[..., 1], frac[a:b])
    return interpolated


def march_dollase(atoms: Atoms, refl: dict, r: torch.Tensor, strain=None) -> torch.Tensor:
    """(r^2 cos^2 alpha + sin^2 alpha / r)^(-3/2), alpha between g and the texture axis; r, strain: (n,)."""
    G = torch.as_tensor(atoms.recip_metric, device=r.device).to(refl["g2"].dtype)
    axis_row = G[torch.arange(len(G), device=G.device), atoms.md_axis]  # (n, 3): G* e_axis
    axis2 = torch.gather(axis_row, 1, atoms.md_axis[:, None])[:, 0]  # |axis*|^2
    row = refl["row"]
    gd = axis_row[row]
    h, k, l = refl["hkl"].to(gd.dtype)
    dot = gd[:, 0] * h + gd[:, 1] * k + gd[:, 2] * l
    g2 = refl["g2"] if strain is None else refl["g2"] * ((1 + strain) ** 2)[row]  # unstrained |g|^2
    cos2 = (dot**2 / (g2 * axis2[row])).clamp(0.0, 1.0)
    r = r[row]
    x = r * r * cos2 + (1 - cos2) / r
    return 1 / (x * torch.sqrt(x))  # x^(-3/2); sqrt and division round the same in SIMD and scalar code


def centric_halves(rows: np.ndarray, coords: np.ndarray, centres: np.ndarray, n_atoms: np.ndarray):
    """One atom of each pair related by a centre of symmetry, with twice the weight.

    With the origin moved to the centre c, the atoms come in pairs x, -x (or sit on x = -x, each
    coordinate 0 or 1/2), so F = sum_j w_j cos(g.x_j) is real: the pairs count twice in it and their
    sines cancel. The atom of a pair kept is the one whose first coordinate away from 0 and 1/2 is
    positive; a structure whose atoms do not pair up so is left whole.

    Args:
        rows: (a,) the structure of each atom, sorted; coords: (a, 3) fractional.
        centres: (n, 3) each structure's centre, NaN where none; n_atoms: (n,).

    Returns:
        keep (a,) bool, factor (a,) 1 or 2, centric (n,) bool, coords (a, 3) from the centre where centric.
    """
    moved = coords - np.nan_to_num(centres)[rows]
    moved -= np.round(moved)
    off = np.abs(moved)
    # the sign of each coordinate that is not on x = -x (0 or 1/2), and of the first such: the sign of key
    sign = np.sign(moved) * ((off >= CENTRIC_TOL) & (off <= 0.5 - CENTRIC_TOL))
    key = sign @ np.array([4.0, 2.0, 1.0])
    factor = 1.0 + (key != 0)  # paired atoms count twice
    keep = key >= 0
    counted = np.bincount(rows, keep * factor, minlength=len(n_atoms))
    centric = ~np.isnan(centres).any(axis=1) & (counted == n_atoms)  # every atom is its own mate or has one kept
    centric_atom = centric[rows]
    keep |= ~centric_atom
    factor = np.where(centric_atom, factor, 1.0)
    return keep, factor, centric, np.where(centric_atom[:, None], moved, coords)


def _padded_atoms(n_atoms: np.ndarray) -> np.ndarray:
    """(n,) the atom count each structure is padded to: the next of 6, 8, 12, 16, 24, ... (2^k, 3 x 2^(k-2)).

    Small structures share the smallest sizes: they have few reflections, so padding costs less than more chunks.
    """
    power = 2 ** np.ceil(np.log2(np.maximum(n_atoms, MIN_PADDED_ATOMS)))
    return np.where(0.75 * power >= n_atoms, 0.75 * power, power).astype(np.int64)
