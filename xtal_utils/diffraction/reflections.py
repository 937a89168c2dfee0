"""Stage 1 of the simulator: each structure's hkl box, and the reflections of the box in the shell.

The box of a structure holds every hkl with |h| <= r_max |a| (and so on) for |g| <= r_max. It is
cut by the parts of the structure's Laue group that :mod:`~xtal_utils.diffraction.laue` finds: sign
changes make some of its axes start at 0 (``nonneg``), axis permutations and the trigonal and
hexagonal groups keep one hkl of each orbit; what a kept hkl stands for is its ``friedel`` weight.
The box is then cut into lines along its first axis, whose ends come from the limiting sphere, so
that only the hkl of the sphere are generated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from xtal_utils.diffraction.laue import HEXAGONAL_GROUPS, PERMUTATION_GROUPS

if TYPE_CHECKING:
    from xtal_utils.diffraction.structure_factors import Atoms

LINE_SLACK = 1e-3  # the h range of each line, from the limiting sphere, is widened by this before the exact test
# per PERMUTATION_GROUPS code: what the kept hkl must satisfy (0: h >= k, h >= l, k >= l; -1e9: nothing),
# which of swap01, swap02, swap12 and the cycles are in the group, and its order
_PERMUTATION_RULES = np.array([[-1e9, -1e9, -1e9, 0, 0, 0, 0, 1], [0, -1e9, -1e9, 1, 0, 0, 0, 2],
                               [-1e9, 0, -1e9, 0, 1, 0, 0, 2], [-1e9, -1e9, 0, 0, 0, 1, 0, 2],
                               [0, 0, -1e9, 0, 0, 0, 1, 3], [0, -1e9, 0, 1, 1, 1, 1, 6]])
# the (h, k) plane of hexagonal axes under each Laue group: the planar group for l > 0 and for l = 0
# (1 C3, 2 C6, 3 D3 with mirrors along a* and b*, 4 D3 with a mirror along a* + b*, 5 D6), by HEXAGONAL_GROUPS
_PLANE_GROUPS = {"-3": (1, 2), "6/m": (2, 2), "-3m1": (3, 5), "-31m": (4, 5), "6/mmm": (5, 5)}
_PLANE_PLUS, _PLANE_ZERO = np.array([(0, 0)] + [_PLANE_GROUPS[name] for name in HEXAGONAL_GROUPS[1:]]).T


class HklBoxes(NamedTuple):
    """The hkl boxes of a batch (:func:`hkl_boxes`), with the cell axes in the order the boxes use."""

    extent: np.ndarray  # (n, 3) int64 box half-widths
    nonneg: np.ndarray  # (n,) 1, 2 or 3: the last this many box axes start at 0 (see laue.py)
    perm: np.ndarray | None  # (n, 3) the cell axis of each box axis; None where the axes are as given
    recip_metric: np.ndarray  # (n, 3, 3) float64 G* = (L L^T)^-1 of the lattice with permuted axes
    md_axis: torch.Tensor | None  # (n,) long, the March-Dollase axis renamed like the lattice axes
    permutations: np.ndarray  # (n,) the permutation group in the new axis order (PERMUTATION_GROUPS)
    hexagonal: np.ndarray  # (n,) the hexagonal Laue group used (HEXAGONAL_GROUPS, 0: none)


def hkl_boxes(lattice: np.ndarray, r_max: float, *, permute: bool, md_axis=None,
              flips: np.ndarray | None = None, permutations: np.ndarray | None = None,
              hexagonal: np.ndarray | None = None) -> HklBoxes:
    """Each structure's hkl box within |g| <= ``r_max`` (1/Angstrom), cut by its Laue symmetry.

    Without ``permute`` the boxes are whole half-spheres in the cell's own axes and the symmetry is
    not used. With it, the largest box axis comes first (the lines of :func:`reflections_in_shell`
    run along it), and ``flips`` (n, 3), ``permutations`` (n,) and ``hexagonal`` (n,) (from
    :func:`laue.laue_symmetry`) cut the box: with one sign change (axis u), the larger other axis
    goes first and keeps both signs; with a hexagonal group, the cell's own axes and the half-sphere
    l >= 0. A March-Dollase texture axis ``md_axis`` ((n,) long tensor) keeps only the symmetry that
    keeps the angle to it.

    Args:
        lattice: (n, 3, 3) float64 lattice vectors as rows, Angstrom.
    """
    n = len(lattice)
    extent = np.floor(r_max * np.linalg.norm(lattice, axis=2) + 1e-9).astype(np.int64)  # (n, 3)
    nonneg = np.ones(n, dtype=np.int64)
    perm = None
    if hexagonal is None or not permute:
        hexagonal = np.zeros(n, dtype=np.int64)
    elif md_axis is not None:  # the three-fold axis keeps the angle to c* only
        hexagonal = np.where(md_axis.cpu().numpy() == 2, hexagonal, 0)
    if permute:
        order_key = -extent.astype(np.float64)
        if flips is not None:
            nonneg = nonneg_axes(flips)
            # one flip (axis u): the larger other axis goes first and keeps both signs
            one = np.flatnonzero(nonneg == 2)
            free = np.argmax(np.where(flips[one], -1, extent[one]), axis=1)
            order_key[one, free] -= 1e9
        # hexagonal Laue groups: the cell's own axes (lines along a), all of the half-sphere l >= 0
        order_key[hexagonal > 0] = np.arange(3)
        nonneg[hexagonal > 0] = 1
        perm = np.argsort(order_key, axis=1, kind="stable")
        extent = np.take_along_axis(extent, perm, axis=1)
        lattice = np.take_along_axis(lattice, perm[:, :, None], axis=1)
        if md_axis is not None:  # the texture axis, renamed like the lattice axes
            perm_t = torch.as_tensor(perm, device=md_axis.device)
            md_axis = torch.argmax((perm_t == md_axis[:, None]).long(), dim=1)
        if permutations is not None:
            permutations = _renamed_permutations(permutations, perm, md_axis)
    if permutations is None or not permute:
        permutations = np.zeros(n, dtype=np.int64)
    # G* = B B^T with the reciprocal basis B (rows b_i = a_j x a_k / V): no per-matrix LAPACK call
    recip = np.cross(lattice[:, [1, 2, 0]], lattice[:, [2, 0, 1]])
    recip /= np.einsum("ni,ni->n", lattice[:, 0], recip[:, 0])[:, None, None]
    recip_metric = recip @ recip.transpose(0, 2, 1)
    return HklBoxes(extent=extent, nonneg=nonneg, perm=perm, recip_metric=recip_metric, md_axis=md_axis,
                    permutations=permutations, hexagonal=hexagonal)


def reflections_in_shell(atoms: Atoms, r_lo: float, r_hi: float, wavelength: float, strain) -> dict:
    """The hkl of every structure's box that lie in the shell r_lo <= |g| <= r_hi (1/Angstrom).

    Each box is cut into lines along h, one per (k, l). Along a line |g|^2 = a h^2 + b h + c, so
    the h that can lie within r_hi are those between the roots of a h^2 + b h + c = r_hi^2: only
    they are generated (with LINE_SLACK to spare) and then tested, all structures at once.

    Args:
        atoms: the batch (:func:`structure_factors.flatten_atoms`): its boxes, reciprocal metrics
            and Laue groups.
        wavelength: Angstrom, for sin^2 theta and 2-theta.
        strain: (n,) isotropic strain e of each structure (a -> a (1 + e)), or None.

    Returns a dict of tensors on the device, in structure order: hkl (3, r) int32; and (r,) row (an
    index into ``atoms``), g2 = |g|^2, sin2 = sin^2 theta, two_theta (degrees) and friedel (how
    many reflections it stands for: the size of its orbit under the parts of the Laue group used,
    Friedel mates included; see laue.py).
    """
    # In numpy and float64 (float32 would put 2-theta ~1e-5 degrees off): the arrays here have 10^4
    # elements, where numpy's operations cost less than torch's (comparisons and gathers several
    # times less); only the results go to the device.
    G = atoms.recip_metric
    n = len(G)
    if strain is not None:  # isotropic strain a -> a (1 + e) scales G* by (1 + e)^-2
        G = (torch.as_tensor(G) / ((1 + strain.cpu()) ** 2)[:, None, None]).numpy()
    extent, nonneg = atoms.extent, atoms.nonneg
    first = np.where(np.arange(3)[None, :] < 3 - nonneg[:, None], -extent, 0)
    size = extent - first + 1
    n_lines = size[:, 1] * size[:, 2]
    line_row = np.repeat(np.arange(n), n_lines)

    def per_line(x):
        return np.repeat(x, n_lines)

    # the lines of each box, (k, l) in order: k from first[1], l from 0
    first_line = (np.cumsum(n_lines) - n_lines).astype(np.float64)
    t = np.arange(len(line_row), dtype=np.float64) - per_line(first_line)
    size_l = per_line(size[:, 2].astype(np.float64))
    k = np.floor((t + 0.5) / size_l)
    l = t - k * size_l
    k += per_line(first[:, 1].astype(np.float64))
    g00, g01, g02, g11, g12, g22 = (per_line(G[:, i, j])
                                    for i, j in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)))
    a = g00
    b = 2 * (g01 * k + g02 * l)
    c = (g11 * k + 2 * g12 * l) * k + g22 * (l * l)
    disc = b * b - 4 * a * (c - r_hi**2)
    root = np.sqrt(np.maximum(disc, 0.0))
    h_lo = np.maximum(np.ceil((-b - root) / (2 * a) - LINE_SLACK), per_line(first[:, 0]))
    h_hi = np.minimum(np.floor((-b + root) / (2 * a) + LINE_SLACK), per_line(extent[:, 0]))
    permuted, hexagonal = bool(atoms.permutations.any()), bool(atoms.hexagonal.any())
    permutation = atoms.permutations[line_row] if permuted else None  # each line's group, or None
    group = atoms.hexagonal[line_row] if hexagonal else None
    if permuted:  # keep the largest of each orbit of axis permutations: h >= k, h >= l or k >= l
        on = np.flatnonzero(permutation)
        rules, k_on, l_on = _PERMUTATION_RULES[permutation[on]], k[on], l[on]
        # cycles: (h, k, l) must also beat (k, l, h) and (l, h, k), so h = l < k... is out where k < l
        tie = (rules[:, 6] > 0) & (rules[:, 5] == 0) & (k_on < l_on)
        lo = np.maximum(np.maximum(h_lo[on], k_on + rules[:, 0]), l_on + rules[:, 1] + tie)
        h_hi[on] = np.where(k_on < l_on + rules[:, 2], lo - 1, h_hi[on])
        h_lo[on] = lo
    if hexagonal:
        on = np.flatnonzero(group)
        h_lo[on] = np.maximum(h_lo[on], _hexagonal_wedge(group[on], k[on], l[on], orbits=False))
    count = (np.maximum(h_hi - h_lo + 1, 0.0) * (disc >= 0)).astype(np.int64)

    # the lines that keep any hkl (about half of them), and what each of their hkl stands for
    live = np.flatnonzero(count)
    line_row, k, l, h_lo, count, a, b, c = (x[live] for x in (line_row, k, l, h_lo, count, a, b, c))
    permutation, group = (None if x is None else x[live] for x in (permutation, group))
    fixed = nonneg[line_row]
    # the reflections each hkl stands for (laue.py): 2 for each index whose sign the box fixes and that
    # is not 0 (h: with ``doubled``, where h != 0); with permutations or a hexagonal group, the orbit,
    # which differs at a few h of a line (``special``: lines, their h there and the orbit there)
    weight = (1.0 + (l > 0)) * (1.0 + ((fixed >= 2) & (k != 0)))
    doubled = weight * (fixed == 3)
    special = []
    if permuted:  # |P| / |stabiliser of hkl| distinct hkl
        on = np.flatnonzero(permutation)
        code = permutation[on]
        swap01, swap02, swap12, cycles, order = (_PERMUTATION_RULES[:, j][code] for j in range(3, 8))
        k_on, l_on, w, d = k[on], l[on], weight[on], doubled[on]
        same_kl = k_on == l_on
        for h_on in (k_on, l_on):
            # |stabiliser of hkl| = 1 + i12 [k = l] + (i01 + 2 cyc [k = l]) [h = k] + i02 [h = l], from the
            # swaps i01, i02, i12 and the cycles cyc in the group
            stabiliser = (1 + swap12 * same_kl + (swap01 + 2 * cycles * same_kl) * (h_on == k_on)
                          + swap02 * (h_on == l_on))
            special.append((on, h_on, (w + d * (h_on != 0)) * (order / stabiliser)))
        generic = order / (1 + swap12 * same_kl)  # h != k, h != l
        weight[on], doubled[on] = w * generic, d * generic
    if hexagonal:  # ``origin`` at h = 0, ``full`` elsewhere, less on the wedge's mirror lines
        on = np.flatnonzero(group)
        _, origin, full, mirror_1, mirror_2, smaller = _hexagonal_wedge(group[on], k[on], l[on])
        weight[on], doubled[on] = origin, full - origin
        special += [(on, mirror_1, full - smaller), (on, mirror_2, full - smaller)]

    # every hkl of the lines, then one comparison each: |g|^2 within the shell around its middle
    n_candidates = int(count.sum())
    start = np.cumsum(count) - count
    line_of = np.repeat(np.arange(len(count)), count)
    h = np.arange(n_candidates, dtype=np.float64) + (h_lo - start)[line_of]
    g2 = c[line_of] + (b[line_of] + a[line_of] * h) * h
    friedel = weight[line_of] + doubled[line_of] * (h != 0)
    for on, h_on, orbit in special:
        inside = (h_on >= h_lo[on]) & (h_on < h_lo[on] + count[on])  # False for NaN
        friedel[(start[on] + h_on - h_lo[on])[inside].astype(np.int64)] = orbit[inside]
    middle, half = 0.5 * (r_hi**2 + r_lo**2), 0.5 * (r_hi**2 - r_lo**2)
    valid = np.abs(g2 - middle) <= half
    if r_lo <= 0:
        valid &= g2 > 0
    index = np.flatnonzero(valid)
    line_of, h, g2, friedel = line_of[index], h[index], g2[index], friedel[index]
    row, k, l = line_row[line_of], k[line_of], l[line_of]

    g2 = torch.from_numpy(g2)
    sin2 = (0.25 * wavelength**2) * g2
    two_theta = torch.rad2deg(2 * torch.asin(torch.sqrt(sin2.clamp(0.0, 1.0))))
    device, dtype = atoms.chunks[0].feat.device, atoms.dtype
    return {"row": torch.as_tensor(row, device=device),
            "hkl": torch.as_tensor(np.stack([h, k, l]).astype(np.int32), device=device),
            "friedel": torch.from_numpy(friedel).to(device=device, dtype=dtype),
            **{key: x.to(device=device, dtype=dtype)
               for key, x in (("g2", g2), ("sin2", sin2), ("two_theta", two_theta))}}


def box_points(extent: np.ndarray, nonneg: np.ndarray | None = None) -> np.ndarray:
    """(n,) hkl points in boxes of half-widths ``extent`` (n, 3) whose last ``nonneg`` axes start at 0."""
    if nonneg is None:
        nonneg = np.ones(len(extent), dtype=np.int64)
    two_sided = np.arange(3)[None, :] < 3 - nonneg[:, None]
    return np.prod(np.where(two_sided, 2 * extent + 1, extent + 1), axis=1)


def nonneg_axes(flips: np.ndarray) -> np.ndarray:
    """(n,) how many box axes can start at 0, from the Laue sign changes ``flips`` (n, 3)."""
    count = flips.sum(axis=1)
    return np.where(count == 3, 3, np.where(count == 1, 2, 1))


def _hexagonal_wedge(group: np.ndarray, k: np.ndarray, l: np.ndarray, orbits: bool = True):
    """The hkl that stand for their orbits in hexagonal Laue groups, line by line (k, l fixed).

    The largest of each orbit by (l, h, k) is kept: l >= 0, and (h, k) the largest of its orbit under
    the planar group of the l-keeping operations (for l = 0, of all). With the three-fold rotation
    (h, k) -> (k, -h-k), these wedges (h > 0 unless h = k = 0) are: C3: h >= k for k > 0, 2h + k > 0
    for k <= 0; C6: -h < k <= 0; D3 (mirrors (h, k) -> (-h, h + k)): -h <= k <= 0; D3 (mirror
    (h, k) -> (k, h)): -h/2 <= k <= h; D6: -h/2 <= k <= 0. An orbit has |G| members, half that for
    hkl on a mirror line of the wedge, 1 or 2 for (0, 0, l).

    Args:
        group: (lines,) an index into laue.HEXAGONAL_GROUPS (not 0); k, l: (lines,).
        orbits: False for h_min alone.

    Returns:
        h_min (lines,), the least h of each line (inf where the line keeps nothing); the orbit of
        the kept (0, k, l) and of the other kept hkl; the two h (NaN if none) on a mirror line and
        how much smaller the orbit is there.
    """
    plane = np.where(l > 0, _PLANE_PLUS[group], _PLANE_ZERO[group])
    # k > 0: h >= k (C3, D3 with (h, k) -> (k, h)) or nothing; k < 0: h >= floor(a |k|) + b
    a = np.array([0, 0.5, 1, 1, 2, 2])[plane]
    b = np.array([0, 1, 1, 0, 0, 0])[plane]
    h_min = np.where(k > 0, np.where((plane == 1) | (plane == 4), k, np.inf), np.floor(a * -k) + b)
    h_min = np.where(k == 0, 0.0, h_min)  # (0, 0, l), then h >= 1 on k = 0
    if not orbits:
        return h_min
    copies = np.where(l > 0, 2.0, 1.0)  # the orbit's members at -l
    full = np.array([1, 3, 6, 6, 6, 12])[plane] * copies
    full = np.where(((plane == 3) | (plane == 5)) & (k == 0), full / 2, full)  # k = 0 is a mirror line
    mirror_1 = np.where(plane == 4, k, np.where(plane == 3, -k, np.nan))  # h = k; h = -k
    mirror_2 = np.where((plane == 4) | (plane == 5), -2.0 * k, np.nan)  # 2k = -h
    mirror_1[k == 0] = mirror_2[k == 0] = np.nan  # there, h = 0 is the origin of the plane
    return h_min, copies, full, mirror_1, mirror_2, full / 2


def _renamed_permutations(codes: np.ndarray, perm: np.ndarray, md_axis) -> np.ndarray:
    """Permutation groups (PERMUTATION_GROUPS codes, cell axes) in the axis order ``perm`` (n, 3).

    A swap of cell axes i and j becomes the swap of their new places (swap01, swap02, swap12 are codes
    1, 2, 3: the sum of the two axes); the cyclic group and the group of all permutations stay. With a
    March-Dollase texture axis (``md_axis``, (n,) in the new order), only permutations that keep it
    stay: the texture factor depends on the angle to that axis.
    """
    rows = np.arange(len(codes))
    place = np.argsort(perm, axis=1)  # where each cell axis went
    first, second = np.array([0, 0, 0, 1, 0, 0])[codes], np.array([0, 1, 2, 2, 0, 0])[codes]
    renamed = np.where((codes >= 1) & (codes <= 3), place[rows, first] + place[rows, second], codes)
    if md_axis is not None:
        swap_others = 3 - md_axis.cpu().numpy()  # the swap of the two axes other than the texture axis
        all_ = PERMUTATION_GROUPS.index("all")
        renamed = np.where(renamed == all_, swap_others, np.where(renamed == swap_others, renamed, 0))
    return renamed
