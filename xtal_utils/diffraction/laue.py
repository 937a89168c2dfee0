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
"""

from __future__ import annotations

import hashlib

import numpy as np

from xtal_utils.structures import StructureBatch

COORD_BITS = 18  # fractional coordinates are compared to 2^-18 ~ 4e-6 (3e-5 Angstrom in an 8 A cell)
METRIC_TOL = 1e-7  # |cos| of a cell angle below this counts as 90 degrees
CACHE_SIZE = 2**18  # structures whose sign changes are remembered (about 100 bytes each)
CHUNK_BYTES = 2**26  # bound on the site images tested at once (6 operations x m candidates x m sites)
_KEY_BITS = 62  # bits of an int64 key: type, then three coordinates
_PADDING = np.iinfo(np.int64).max
_cache: dict[bytes, tuple[bool, bool, bool]] = {}  # content digest of a structure -> its sign changes


def laue_sign_flips(batch: StructureBatch) -> np.ndarray:
    """:func:`sign_flips` of every structure of a batch, remembered by content for the next call.

    Returns:
        (n, 3) bool.
    """
    n = len(batch)
    if n == 0:
        return np.zeros((0, 3), dtype=bool)
    fields = (batch.lattice, batch.frac_coords, batch.atomic_number, batch.occupancy, batch.b_iso,
              batch.n_sites)
    content = np.concatenate([np.ascontiguousarray(x).reshape(n, -1).view(np.uint8) for x in fields], axis=1)
    keys = [hashlib.blake2b(row, digest_size=16).digest() for row in content]
    known = [_cache.get(key) for key in keys]
    missing = [i for i, flips in enumerate(known) if flips is None]
    step = max(1, CHUNK_BYTES // (6 * 3 * 8 * batch.max_sites**2))
    for start in range(0, len(missing), step):
        rows = missing[start: start + step]
        sub = batch[rows]
        found = sign_flips(sub.lattice, sub.frac_coords, site_types(sub))
        if len(_cache) + len(rows) > CACHE_SIZE:
            _cache.clear()
        for i, flips in zip(rows, found.tolist()):
            known[i] = _cache[keys[i]] = tuple(flips)
    return np.array(known, dtype=bool).reshape(n, 3)


def site_types(batch: StructureBatch) -> np.ndarray:
    """(n, m) int, equal for sites with the same species, occupancies and B in the batch; -1 for padding."""
    n, m = len(batch), batch.max_sites
    record = np.concatenate([batch.atomic_number.reshape(n, m, -1).astype(np.float64),
                             batch.occupancy.reshape(n, m, -1).astype(np.float64),
                             batch.b_iso.reshape(n, m, 1).astype(np.float64)], axis=2)
    record = np.ascontiguousarray(record.reshape(n * m, -1))
    _, types = np.unique(record.view(np.dtype((np.void, record.strides[0]))), return_inverse=True)
    return np.where(np.arange(m)[None, :] < batch.n_sites[:, None], types.reshape(n, m), -1)


def sign_flips(lattice: np.ndarray, frac_coords: np.ndarray, site_type: np.ndarray) -> np.ndarray:
    """Which single-index sign changes (h, k or l -> its negative) are in each structure's Laue group.

    Args:
        lattice: (n, 3, 3) rows a, b, c in Angstrom.
        frac_coords: (n, m, 3) fractional coordinates of the sites.
        site_type: (n, m) int, equal for sites with the same species, occupancies and B; -1 for padding.

    Returns:
        (n, 3) bool; the number of True per row is 0, 1 or 3 (two flips imply the third).
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

    # t must take the first site of the structure's rarest type onto a site of that type: one
    # candidate (structure, site) pair for each
    same = (site_type[:, :, None] == site_type[:, None, :]) & present[:, None, :]
    count = np.where(present, same.sum(axis=2), m + 1)
    reference = np.argmin(count, axis=1)  # (n,)
    rows = np.arange(n)
    pair_row, pair_site = np.nonzero(same[rows, reference])  # (p,) each
    offset = frac_coords - frac_coords[rows, reference][:, None, :]  # (n, m, 3) from the reference site

    metric = lattice @ lattice.transpose(0, 2, 1)
    diag = np.sqrt(np.einsum("nii->ni", metric))
    cos = np.abs(metric) / (diag[:, :, None] * diag[:, None, :])  # (n, 3, 3)

    # the six candidate operations: axis a flipped alone (a mirror) or the other two (a two-fold axis)
    signs = np.ones((6, 3))
    signs[np.arange(3), np.arange(3)] = -1.0
    signs[3:] = -signs[:3]
    flipped = signs < 0
    mixed = flipped[:, :, None] != flipped[:, None, :]  # (6, 3, 3) metric entries that change sign
    metric_ok = ((cos[:, None] <= METRIC_TOL) | ~mixed[None]).all(axis=(2, 3))  # (n, 6): D G D = G
    op, pair = np.nonzero(metric_ok[pair_row].T)  # every (operation, candidate) worth testing
    r, site = pair_row[pair], pair_site[pair]
    moved = signs[op][:, None, :] * offset[r] + frac_coords[r, site][:, None, :]  # (q, m, 3)
    image = keys(moved, type_key[r], present[r])
    image.sort(axis=1)  # (q, m)
    same_set = (image == own[r]).all(axis=1)
    holds = np.zeros((n, 6), dtype=bool)
    holds[r[same_set], op[same_set]] = True
    flips = holds[:, :3] | holds[:, 3:]  # a mirror or a two-fold axis along each axis
    flips[flips.sum(axis=1) >= 2] = True  # the product of two flips, times -1, is the third
    return flips
