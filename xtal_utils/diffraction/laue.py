"""Reflections related by symmetry, so that the simulator computes one of each and multiplies.

Only the part of the Laue group that keeps the hkl box a box is used: the diagonal operations, which
change the signs of some of h, k and l. Such a sign change D is in the Laue group when D or -D maps
the structure onto itself (x -> D x + t for some translation t, with the same species, occupancy and
B on each image) and keeps the lattice metric (D G D = G). Then |F(D hkl)| = |F(hkl)| and the two
reflections have the same d-spacing, Lorentz-polarisation and Debye-Waller factors, and also the same
March-Dollase factor, because the texture axis is a*, b* or c* and D only changes signs along them.

The test works in the cell as given (any setting), on every structure of a batch at once, and is
exact up to COORD_BITS: each structure's sites, coded as (type, rounded fractional coordinates), are
compared as a set with their images. A rounding that falls differently on the two sides only hides a
symmetry, which costs speed, never accuracy.

The sign changes in a Laue group form {+-1}, {+-1, +-D_u} (D_u flips axis u alone: a two-fold axis
or a mirror along u) or all eight (three perpendicular two-fold axes). One representative of each
orbit is kept with its orbit size:

- order 2 (Friedel pairs only): l >= 0, weight 2 where l > 0;
- order 4 (axis u flips): hkl_u >= 0 and hkl_v >= 0 for one other axis v, weight 2 per non-zero
  index among u, v;
- order 8: h, k, l >= 0, weight 2 per non-zero index.

When all eight sign changes hold (three perpendicular two-fold axes), the Laue group may also permute
the axes: a four-fold axis (a tetragonal cell: one swap of two axes of equal length) or three-fold
axes along the body diagonals (a cubic cell: the cyclic permutations, and with them all six
permutations when a swap holds too). :func:`cell_symmetry` finds which. The permutations that
hold form a group P, and the Laue group contains D x| P (D the eight sign changes), so one hkl with
h, k, l >= 0 stands for a whole orbit: the simulator keeps the lexicographically largest of its
permutations under P and weights it by their number (:data:`PERMUTATION_GROUPS`).

:func:`cell_symmetry` also finds, with the same test (R = -1), where a structure has a centre of
symmetry; about it F is real, which the simulator uses to sum over half of the atoms.

In hexagonal cells (a = b, gamma = 120 degrees) :func:`cell_symmetry` finds the trigonal and
hexagonal Laue groups (-3, 6/m, -3m1, -31m, 6/mmm) from the three-fold axis along c and the two-fold
axes along c, a and [1-10]; the simulator keeps one hkl of each orbit from a wedge of the (h, k) plane.
"""

from __future__ import annotations

import numpy as np

from xtal_utils.structures import StructureBatch

COORD_BITS = 18  # fractional coordinates are compared to 2^-18 ~ 4e-6 (3e-5 Angstrom in an 8 A cell)
METRIC_TOL = 1e-7  # |cos| of a cell angle below this counts as 90 degrees
CACHE_SIZE = 2**18  # structures whose symmetry is remembered (about 200 bytes each)
CHUNK_BYTES = 2**26  # bound on the site images tested at once (18 operations x m candidates x m sites)
_KEY_BITS = 62  # bits of an int64 key: type, then three coordinates
_PADDING = np.iinfo(np.int64).max
PERMUTATION_GROUPS = ("none", "swap01", "swap02", "swap12", "cyclic", "all")  # axis permutations in a Laue group
# hexagonal cells (a = b, gamma = 120, c unique): x -> R x for the three-fold axis along c and the
# two-fold axes along c, a and [1-10] (each tested with its product with -1, a mirror)
_HEXAGONAL_OPS = np.array([[[0, -1, 0], [1, -1, 0], [0, 0, 1]], [[-1, 0, 0], [0, -1, 0], [0, 0, 1]],
                           [[1, -1, 0], [0, -1, 0], [0, 0, -1]], [[0, -1, 0], [-1, 0, 0], [0, 0, -1]]], dtype=float)
# the Laue group of each hexagonal key of cell_symmetry: 1 + [2 along c] + 2 [2 along a] + 4 [2 along [1-10]]
HEXAGONAL_GROUPS = ("none", "-3", "6/m", "-3m1", "6/mmm", "-31m", "6/mmm", "6/mmm", "6/mmm")
_SWAPS = ((0, 1), (0, 2), (1, 2))
_cache: dict[bytes, tuple] = {}  # content digest -> (sign changes (bits 0-2) + 8 x permutation code, centre)
_UNKNOWN = (-1.0, 0.0, 0.0, 0.0)
_HASH_MIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)  # splitmix64 constants


def laue_sign_flips(batch: StructureBatch) -> np.ndarray:
    """The Laue sign changes of every structure of a batch: (n, 3) bool (see :func:`laue_symmetry`)."""
    return laue_symmetry(batch)[0]


def laue_symmetry(batch: StructureBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`cell_symmetry` of every structure, remembered by content.

    Returns:
        flips: (n, 3) bool; permutations: (n,) int, an index into PERMUTATION_GROUPS; centres: (n, 3)
        fractional coordinates of a centre of symmetry, NaN where there is none; hexagonal: (n,) int,
        an index into HEXAGONAL_GROUPS (0: none found).
    """
    n = len(batch)
    if n == 0:
        return no_symmetry(batch)
    fields = (batch.lattice, batch.frac_coords, batch.atomic_number, batch.occupancy, batch.b_iso,
              batch.n_sites)
    content = np.concatenate([np.ascontiguousarray(x).reshape(n, -1).view(np.uint8) for x in fields], axis=1)
    keys = _digests(content)
    known = np.array([_cache.get(key, _UNKNOWN) for key in keys], dtype=np.float64).reshape(n, 4)
    missing = np.flatnonzero(known[:, 0] < 0).tolist()
    step = max(1, CHUNK_BYTES // (18 * 3 * 8 * batch.max_sites**2))
    for start in range(0, len(missing), step):
        rows = missing[start: start + step]
        sub = batch[rows]
        found, permutations, centres, hexagonal = cell_symmetry(sub.lattice, sub.frac_coords, site_types(sub))
        if len(_cache) + len(rows) > CACHE_SIZE:
            _cache.clear()
        packed = np.column_stack([found @ np.array([1, 2, 4]) + 8 * permutations + 64 * hexagonal, centres])
        for i, value in zip(rows, packed.tolist()):
            known[i] = value
            _cache[keys[i]] = tuple(value)
    packed = known[:, 0].astype(np.int64)
    return (packed[:, None] >> np.arange(3)) & 1 == 1, (packed >> 3) & 7, known[:, 1:], packed >> 6


def clear_symmetry_cache() -> None:
    """Forget the symmetry that :func:`laue_symmetry` remembers by content."""
    _cache.clear()


def no_symmetry(batch: StructureBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`laue_symmetry` as if no structure had any symmetry (every hkl, every atom): a reference."""
    n = len(batch)
    return np.zeros((n, 3), dtype=bool), np.zeros(n, dtype=np.int64), np.full((n, 3), np.nan), np.zeros(n, dtype=np.int64)


def _digests(content: np.ndarray) -> list[bytes]:
    """A 128-bit digest of each row of ``content`` (n, bytes), computed for all rows at once.

    Each 8-byte word is mixed by the splitmix64 finaliser and the words are summed with two sets of
    odd weights (modulo 2^64): a change of any bits changes both sums unless by a 2^-64 chance each.
    """
    n = len(content)
    words = np.pad(content, ((0, 0), (0, -content.shape[1] % 8))).view(np.uint64) ^ np.uint64(_HASH_MIX[0])
    words ^= words >> np.uint64(30)
    words *= np.uint64(_HASH_MIX[1])
    words ^= words >> np.uint64(27)
    words *= np.uint64(_HASH_MIX[2])
    words ^= words >> np.uint64(31)
    position = np.arange(1, words.shape[1] + 1, dtype=np.uint64)
    first = (words * (position * np.uint64(_HASH_MIX[1]) | np.uint64(1))).sum(axis=1, dtype=np.uint64)
    second = (words * (position * np.uint64(_HASH_MIX[2]) | np.uint64(1))).sum(axis=1, dtype=np.uint64)
    return np.stack([first, second], axis=1).view("V16").reshape(n).tolist()


def site_types(batch: StructureBatch) -> np.ndarray:
    """(n, m) int, equal for sites with the same species, occupancies and B in the batch; -1 for padding."""
    n, m = len(batch), batch.max_sites
    record = np.concatenate([batch.atomic_number.reshape(n, m, -1).astype(np.float64),
                             batch.occupancy.reshape(n, m, -1).astype(np.float64),
                             batch.b_iso.reshape(n, m, 1).astype(np.float64)], axis=2)
    record = np.ascontiguousarray(record.reshape(n * m, -1))
    _, types = np.unique(record.view(np.dtype((np.void, record.strides[0]))), return_inverse=True)
    return np.where(np.arange(m)[None, :] < batch.n_sites[:, None], types.reshape(n, m), -1)


def cell_symmetry(lattice: np.ndarray, frac_coords: np.ndarray, site_type: np.ndarray):
    """The parts of each structure's Laue group the simulator uses, found in the cell as given.

    Every candidate operation R (sign changes, axis permutations, -1, the hexagonal rotations) is
    tested in one pass of :func:`_holds`, for the structures whose metric R keeps (R^T G R = G).

    Args:
        lattice: (n, 3, 3) rows a, b, c in Angstrom.
        frac_coords: (n, m, 3) fractional coordinates of the sites.
        site_type: (n, m) int, equal for sites with the same species, occupancies and B; -1 for padding.

    Returns:
        flips: (n, 3) bool, which single-index sign changes (h, k or l -> its negative) are in the
            Laue group; 0, 1 or 3 per row (two flips imply the third).
        permutations: (n,) int, an index into PERMUTATION_GROUPS: the group generated by the axis
            permutations that hold, where all three flips do.
        centres: (n, 3) fractional coordinates of a centre of symmetry (x -> 2c - x), NaN where none.
        hexagonal: (n,) int, an index into HEXAGONAL_GROUPS: 0 unless the cell is hexagonal (|a| = |b|,
            gamma = 120, c perpendicular to both) with a three-fold axis along c.
    """
    n = len(lattice)
    metric = lattice @ lattice.transpose(0, 2, 1)
    diag = np.sqrt(np.einsum("nii->ni", metric))
    cos = metric / (diag[:, :, None] * diag[:, None, :])  # (n, 3, 3)
    right = np.abs(cos) <= METRIC_TOL  # (n, 3, 3) perpendicular axes
    equal = [np.abs(diag[:, i] - diag[:, j]) <= METRIC_TOL * diag[:, i] for i, j in _SWAPS]

    # sign changes: axis a flipped alone (a mirror) or the other two (a two-fold axis)
    signs = np.ones((6, 3))
    signs[np.arange(3), np.arange(3)] = -1.0
    signs[3:] = -signs[:3]
    flipped = signs < 0
    mixed = flipped[:, :, None] != flipped[:, None, :]  # (6, 3, 3) metric entries that change sign
    flip_ok = (right[:, None] | ~mixed[None]).all(axis=(2, 3))  # (n, 6)
    # axis permutations: the three swaps, then the cycle a -> b -> c -> a (in orthogonal cells)
    swaps = np.stack([np.eye(3)[[j if a == i else i if a == j else a for a in range(3)]] for i, j in _SWAPS])
    orthogonal = right[:, 0, 1] & right[:, 0, 2] & right[:, 1, 2]
    permute_ok = np.stack([*equal, equal[0] & equal[2]], axis=1) & orthogonal[:, None]  # (n, 4)
    # hexagonal cells: the three-fold axis and the two-fold axes or mirrors
    hexagonal_cell = equal[0] & (np.abs(cos[:, 0, 1] + 0.5) <= METRIC_TOL) & right[:, 0, 2] & right[:, 1, 2]

    ops = np.concatenate([np.eye(3)[None] * signs[:, None, :], swaps, np.eye(3)[None, [2, 0, 1]], -np.eye(3)[None],
                          _HEXAGONAL_OPS, -_HEXAGONAL_OPS[1:]])  # (18, 3, 3)
    allowed = np.concatenate([flip_ok, permute_ok, np.ones((n, 1), dtype=bool),
                              np.repeat(hexagonal_cell[:, None], 7, axis=1)], axis=1)
    holds, t = _holds(frac_coords, site_type, ops, allowed)

    flips = holds[:, 0:3] | holds[:, 3:6]  # a mirror or a two-fold axis along each axis
    flips[flips.sum(axis=1) >= 2] = True  # the product of two flips, times -1, is the third
    swapped, cyclic = holds[:, 6:9] & flips.all(axis=1, keepdims=True), holds[:, 9] & flips.all(axis=1)
    permutations = np.zeros(n, dtype=np.int64)
    one = swapped.sum(axis=1) == 1
    permutations[one] = 1 + np.argmax(swapped[one], axis=1)
    permutations[cyclic] = PERMUTATION_GROUPS.index("cyclic")
    permutations[(swapped.sum(axis=1) >= 2) | (cyclic & swapped.any(axis=1))] = PERMUTATION_GROUPS.index("all")
    centres = t[:, 10] / 2
    two = holds[:, 12:15] | holds[:, 15:18]
    hexagonal = np.where(holds[:, 11], 1 + two @ np.array([1, 2, 4]), 0)
    return flips, permutations, centres, hexagonal


def _holds(frac_coords: np.ndarray, site_type: np.ndarray, ops: np.ndarray, allowed: np.ndarray):
    """Whether x -> R x + t maps each structure onto itself for some t: (n, q) bool, and one such t.

    Args:
        frac_coords: (n, m, 3); site_type: (n, m) int, -1 for padding (see :func:`site_types`).
        ops: (q, 3, 3) the R to test, on fractional coordinates.
        allowed: (n, q) bool, the (structure, R) pairs worth testing (R keeps the metric).

    Returns:
        holds (n, q) bool; t (n, q, 3), one translation for each operation that holds (NaN where none).
    """
    n, m = site_type.shape
    present = site_type >= 0
    type_bits = max(1, int(site_type.max(initial=0) + 1).bit_length())
    coord_bits = min(COORD_BITS, (_KEY_BITS - type_bits) // 3)
    scale = float(1 << coord_bits)
    type_key = np.where(present, site_type, 0).astype(np.int64) << (3 * coord_bits)

    def keys(x, type_key, present):
        q = np.round(x * scale).astype(np.int64) & ((1 << coord_bits) - 1)  # modulo 1, also below 0
        code = (q[..., 0] << (2 * coord_bits)) | (q[..., 1] << coord_bits) | q[..., 2]
        return np.where(present, type_key | code, _PADDING)

    own = np.sort(keys(frac_coords, type_key, present), axis=1)  # (n, m)

    # t must take the image of the first site of the structure's rarest type onto a site of that
    # type: one candidate (structure, site) pair for each
    same = (site_type[:, :, None] == site_type[:, None, :]) & present[:, None, :]
    count = np.where(present, same.sum(axis=2), m + 1)
    reference = np.argmin(count, axis=1)  # (n,)
    rows = np.arange(n)
    pair_row, pair_site = np.nonzero(same[rows, reference])  # (p,) each
    offset = frac_coords - frac_coords[rows, reference][:, None, :]  # (n, m, 3) from the reference site
    op, pair = np.nonzero(allowed[pair_row].T)  # every (operation, candidate) worth testing
    r, site = pair_row[pair], pair_site[pair]
    moved = np.einsum("qij,qmj->qmi", ops[op], offset[r]) + frac_coords[r, site][:, None, :]  # (q, m, 3)
    image = keys(moved, type_key[r], present[r])
    image.sort(axis=1)  # (q, m)
    same_set = (image == own[r]).all(axis=1)
    holds = np.zeros((n, len(ops)), dtype=bool)
    holds[r[same_set], op[same_set]] = True
    t = np.full((n, len(ops), 3), np.nan)
    r, op, site = r[same_set], op[same_set], site[same_set]
    t[r, op] = frac_coords[r, site] - np.einsum("qij,qj->qi", ops[op], frac_coords[r, reference[r]])
    return holds, t
