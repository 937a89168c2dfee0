"""The powder pattern simulator: reflections -> intensities -> profile -> grid, batched in torch."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from xtal_utils.config import default_device
from xtal_utils.diffraction import profile as _profile
from xtal_utils.diffraction.augment import Augmentation
from xtal_utils.diffraction.laue import HEXAGONAL_GROUPS, PERMUTATION_GROUPS, laue_symmetry
from xtal_utils.diffraction.laue import _cache as _laue_cache
from xtal_utils.diffraction.scattering import XRAY_SCALE, neutron_table, symbol, xray_table
from xtal_utils.structures import StructureBatch

CU_KALPHA1 = 1.5406  # Angstrom
SIMULATOR_VERSION = 2  # part of the key of cached patterns: raise it when patterns change beyond rounding
TWO_THETA_TOL = 1e-5  # degrees; reflections closer than this are one peak (pymatgen's TWO_THETA_TOL)
SCALED_INTENSITY_TOL = 1e-3  # peaks at or below this % of the strongest are dropped (as pymatgen does)
PEAK_TAIL_FWHM = {"gaussian": 4.0, "pseudo_voigt": 25.0}  # margin kept beyond the range, in FWHM
WIDTH_SAMPLES = 33  # 2-theta samples used to find each pattern's range of peak widths
BYTES_PER_HKL = 400  # rough memory per hkl of a box in one pass (lines, candidates, reflections)
BYTES_PER_PAIR = 64  # device memory per (reflection, atom) pair while summing structure factors
CENTRIC_TOL = 2.0**-12  # fractional coordinates this close to 0 or 1/2 (from a centre) lie on x = -x
MIN_PADDED_ATOMS = 8  # the ladder of padded sizes starts at 3/4 of this (see _padded_atoms)
PHASE_BITS = 32  # fractional coordinates in fixed point, so that g.r wraps exactly in int32 arithmetic
LINE_SLACK = 1e-3  # the h range of each line, from the limiting sphere, is widened by this before the exact test
FORM_FACTOR_POINTS = 1024  # s^2 samples of the form-factor table
EXP_FLOOR = 80.0  # exp(-x) for x > 80 is below float32's normal range (and slow as a denormal)
TABLE_CACHE_SIZE = 4096  # (element, B) pairs in a form-factor table before it starts afresh, 8 kB each
# per PERMUTATION_GROUPS code: what the kept hkl must satisfy (0: h >= k, h >= l, k >= l; -1e9: nothing),
# which of swap01, swap02, swap12 and the cycles are in the group, and its order
_PERMUTATION_RULES = np.array([[-1e9, -1e9, -1e9, 0, 0, 0, 0, 1], [0, -1e9, -1e9, 1, 0, 0, 0, 2],
                               [-1e9, 0, -1e9, 0, 1, 0, 0, 2], [-1e9, -1e9, 0, 0, 0, 1, 0, 2],
                               [0, 0, -1e9, 0, 0, 0, 1, 3], [0, -1e9, 0, 1, 1, 1, 1, 6]])
_TABLE_CACHE: dict[tuple, tuple] = {}  # (radiation, s^2 top, dtype, device) -> table, {(Z, B): row block}


@dataclasses.dataclass
class Peaks:
    """The reflections of one structure, merged where they coincide in 2-theta.

    Attributes:
        two_theta: (r,) degrees, increasing.
        d_spacing: (r,) Angstrom.
        hkl: (r, 3) int, one representative of the reflections merged into each peak.
        multiplicity: (r,) int, how many hkl (with their Friedel mates) fall on the peak.
        intensity: (r,) scaled so that the strongest peak is 100.
    """

    two_theta: np.ndarray
    d_spacing: np.ndarray
    hkl: np.ndarray
    multiplicity: np.ndarray
    intensity: np.ndarray

    def __len__(self) -> int:
        return len(self.two_theta)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"two_theta": self.two_theta, "d_spacing": self.d_spacing,
                             "h": self.hkl[:, 0], "k": self.hkl[:, 1], "l": self.hkl[:, 2],
                             "multiplicity": self.multiplicity, "intensity": self.intensity})


@dataclasses.dataclass
class _Chunk:
    """Structures ``start:stop`` of an :class:`_Atoms`, all padded to the same number of atoms."""

    start: int
    stop: int
    feat: torch.Tensor  # (g, 5, m) int32: x, y, z in units of 2^-32 (PHASE_BITS), the bits of the float32
    #                     weight, and the atom's (element, B) pair: its first row of ``table``, or an index into key_z
    acentric: int  # the first structure (in the _Atoms) whose F is complex; those before are centric


@dataclasses.dataclass
class _Atoms:
    """A batch as device tensors, its structures reordered by padded atom count (``order``).

    Atoms are site species; a structure's atoms are padded (weight 0) to the next of 6, 8, 12, 16,
    24, ... (:func:`_padded_atoms`), which depends on the structure alone, so that its pattern does not
    depend on the other structures of the batch.
    """

    order: np.ndarray  # (n,) the batch row of each structure here
    dtype: torch.dtype  # of the intensities and the reflection positions
    recip_metric: np.ndarray  # (n, 3, 3) float64 G* = (L L^T)^-1 of the lattice with permuted axes, 1/Angstrom^2
    chunks: list[_Chunk]  # consecutive structures with the same padded size
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


class PowderSimulator:
    r"""Powder diffraction patterns of many structures at once, on CPU or GPU.

    Physics (kinematic, as pymatgen's ``XRDCalculator`` and ``NDCalculator``):

    - Reflections: every reciprocal lattice point g = h a* + k b* + l c* with
      2 sin(theta_min)/lambda <= |g| <= 2 sin(theta_max)/lambda; d = 1/|g|, Bragg's law
      lambda = 2 d sin(theta). All hkl in the sphere are counted (none are excluded by symmetry),
      so the multiplicity comes from summing reflections of equal 2-theta; Friedel mates g and -g
      are computed once and counted twice. In :meth:`simulate`, reflections related by the sign
      changes of the structure's Laue group (two-fold axes and mirrors along the cell axes), by
      its permutations of the cell axes (four- and three-fold axes of tetragonal and cubic cells)
      and, in hexagonal cells, by the trigonal and hexagonal Laue groups, found in the cell's own
      setting, are also computed once and counted by their number (``laue.py``). Where the
      structure has a centre of symmetry, F is summed about it: one atom of each pair related by
      it, twice, and F is real (:func:`_centric_halves`).
    - Structure factor: F(hkl) = sum_j o_j f_j(s) exp(-B_j s^2) exp(2 pi i (h x_j + k y_j + l z_j)),
      s = sin(theta)/lambda = |g|/2, o_j the site occupancy of species j. X-rays: the form factor
      f(s) = Z - 41.78214 s^2 sum_i a_i exp(-b_i s^2) with pymatgen's coefficients. Neutrons:
      f = b, the bound coherent scattering length (fm). B_j is the isotropic Debye-Waller B in
      Angstrom^2 (StructureBatch.b_iso, or ``debye_waller_factors`` per element as in pymatgen).
    - Intensity: I = |F|^2 LP(theta) [P_MD]. X-rays: LP = (1 + cos^2 2theta) / (sin^2 theta cos theta)
      (unpolarised beam, no monochromator); neutrons: LP = 1 / (sin^2 theta cos theta). P_MD is the
      optional March-Dollase texture factor (r^2 cos^2 alpha + sin^2 alpha / r)^(-3/2), alpha the
      angle between g and the texture axis.
    - Profile: Gaussian or pseudo-Voigt (eta Lorentzian fraction, same FWHM), unit area. FWHM in
      degrees 2-theta: constant ``fwhm``, or Caglioti FWHM^2 = U tan^2 theta + V tan theta + W, plus
      Scherrer size broadening K lambda / (L cos theta) (radians) added in quadrature.
    - Grid: ``n_points`` equally spaced 2-theta values over ``two_theta_range``; each pattern is
      scaled to a maximum of 1.

    Left out: anomalous dispersion (f' and f''), absorption, extinction, anisotropic displacement
    (U_ij), the K-alpha2 line, peak asymmetry (axial divergence), sample displacement other than the
    optional zero shift, incoherent neutron scattering, magnetic scattering.

    Implementation: the structures of a pass are handled together, with no Python loop over them.
    Each hkl box is cut into lines along h, whose ends come from solving |g| = r_max, so only the hkl
    of the limiting sphere are generated. F = sum_j o_j f_j(s) exp(2 pi i g.r_j) is then summed over
    each structure's atoms, with g.r_j exact in 32-bit fixed point and the atoms padded to a few fixed
    sizes, so that a structure's pattern does not depend on the rest of the batch; the peaks are
    rendered by one FFT convolution.
    """

    def __init__(self, radiation: str = "xray", wavelength: float = CU_KALPHA1,
                 two_theta_range: tuple[float, float] = (5.0, 90.0), n_points: int = 4096, *,
                 profile: str = "gaussian", fwhm: float = 0.1, eta: float = 0.5,
                 caglioti: tuple[float, float, float] | None = None, crystallite_size: float | None = None,
                 scherrer_k: float = 0.9, width_bins: int = 8, device: str | None = None,
                 max_batch_bytes: int = 2**29):
        """Store and check the configuration; nothing is computed here.

        Args:
            radiation: 'xray' or 'neutron'.
            wavelength: in Angstrom (default Cu K-alpha1).
            two_theta_range: (first, last) grid point in degrees, 0 < first < last < 180.
            n_points: grid samples.
            profile: 'gaussian' or 'pseudo_voigt'.
            fwhm: constant instrumental FWHM in degrees 2-theta (ignored when ``caglioti`` is given).
            eta: Lorentzian fraction of the pseudo-Voigt, 0..1.
            caglioti: (U, V, W) in degrees^2 for FWHM^2 = U tan^2 theta + V tan theta + W.
            crystallite_size: in nm, adds Scherrer broadening.
            scherrer_k: the Scherrer shape factor K.
            width_bins: kernels used when the width changes with 2-theta.
            device: 'cpu' or 'cuda'; by default CUDA when available.
            max_batch_bytes: bound on the memory one pass may use; larger batches are chunked.
        """
        if radiation not in ("xray", "neutron"):
            raise ValueError(f"radiation must be 'xray' or 'neutron', not {radiation!r}")
        if profile not in _profile.PROFILE_SHAPES:
            raise ValueError(f"profile must be one of {_profile.PROFILE_SHAPES}, not {profile!r}")
        lo, hi = (float(t) for t in two_theta_range)
        if not 0 < lo < hi < 180:
            raise ValueError("two_theta_range must satisfy 0 < first < last < 180 degrees, "
                             f"got {two_theta_range}")
        if not wavelength > 0:
            raise ValueError(f"wavelength must be positive (Angstrom), got {wavelength}")
        if n_points < 2 or width_bins < 2:
            raise ValueError("n_points and width_bins must be at least 2")
        if caglioti is None and crystallite_size is None and not fwhm > 0:
            raise ValueError("give a positive fwhm (degrees), caglioti=(U, V, W) or a crystallite_size (nm)")
        if not 0 <= eta <= 1:
            raise ValueError(f"eta must lie in [0, 1], got {eta}")
        self.radiation = radiation
        self.wavelength = float(wavelength)
        self.two_theta_range = (lo, hi)
        self.n_points = int(n_points)
        self.profile = profile
        self.fwhm = float(fwhm or 0.0)
        self.eta = float(eta)
        self.caglioti = None if caglioti is None else tuple(float(c) for c in caglioti)
        self.crystallite_size = None if crystallite_size is None else float(crystallite_size)
        self.scherrer_k = float(scherrer_k)
        self.width_bins = int(width_bins)
        self.device = torch.device(default_device(device))
        self.max_batch_bytes = int(max_batch_bytes)

    def __repr__(self) -> str:
        return (f"PowderSimulator(radiation={self.radiation!r}, wavelength={self.wavelength}, "
                f"two_theta_range={self.two_theta_range}, n_points={self.n_points}, "
                f"profile={self.profile!r}, "
                f"device={str(self.device)!r})")

    @property
    def two_theta(self) -> np.ndarray:
        """(n_points,) the grid in degrees."""
        return np.linspace(*self.two_theta_range, self.n_points)

    @property
    def step(self) -> float:
        lo, hi = self.two_theta_range
        return (hi - lo) / (self.n_points - 1)

    # ---------------------------------------------------------------- public calls

    def peaks(self, structure, debye_waller_factors: dict[str, float] | None = None) -> Peaks:
        """The reflections of one pymatgen Structure within ``two_theta_range``, as pymatgen lists them.

        Computed in float64 on the CPU with the same stages as :meth:`simulate`.

        Args:
            structure: a pymatgen Structure (site property 'b_iso' used when present).
            debye_waller_factors: {element symbol: B in Angstrom^2}, overriding 'b_iso' as in pymatgen.
        """
        batch = self._pack([structure])
        r_lo, r_hi = (2 * math.sin(math.radians(t / 2)) / self.wavelength for t in self.two_theta_range)
        atoms = self._atoms(batch, r_hi, debye_waller_factors, dtype=torch.float64,
                            device=torch.device("cpu"), permute=False, table=False)
        refl = self._reflections(atoms, r_lo, r_hi, strain=None)
        if len(refl["row"]) == 0:
            raise ValueError(self._describe(batch, 0, self._no_reflection_problem()))
        intensity = self._intensities(atoms, refl, exact=True).numpy()
        hkl = refl["hkl"].T.numpy().astype(np.int64)
        two_theta, g2, friedel = (refl[key].numpy() for key in ("two_theta", "g2", "friedel"))

        keys, first, inverse = np.unique(np.round(two_theta / TWO_THETA_TOL).astype(np.int64),
                                         return_index=True, return_inverse=True)
        total = np.bincount(inverse, intensity)
        multiplicity = np.bincount(inverse, friedel).round().astype(int)
        # one representative hkl per peak: the lexicographically largest of the hkl and their mates
        o = int(np.abs(hkl).max())
        span = 2 * o + 1
        code = np.maximum(np.ravel_multi_index((hkl + o).T, (span,) * 3),
                          np.ravel_multi_index((o - hkl).T, (span,) * 3))
        best = np.full(len(keys), -1)
        np.maximum.at(best, inverse, code)
        representative = np.stack(np.unravel_index(best, (span,) * 3), axis=1) - o
        scaled = 100 * total / total.max()
        keep = scaled > SCALED_INTENSITY_TOL
        return Peaks(two_theta=two_theta[first][keep], d_spacing=1 / np.sqrt(g2[first][keep]),
                     hkl=representative[keep], multiplicity=multiplicity[keep], intensity=scaled[keep])

    def simulate(self, structures, augmentation: Augmentation | None = None, *, seed: int | None = None,
                 generator: torch.Generator | None = None,
                 debye_waller_factors: dict[str, float] | None = None,
                 as_tensor: bool = False):
        """Patterns of many structures in vectorised passes.

        Args:
            structures: a StructureBatch, or a sequence of pymatgen Structures.
            augmentation: random changes to apply (None: the clean pattern).
            seed, generator: randomness for the augmentation; a generator on ``self.device`` wins.
            debye_waller_factors: {element symbol: B in Angstrom^2}, overriding the batch's b_iso.
            as_tensor: return a tensor on ``self.device`` instead of a numpy array.

        Returns:
            (n, n_points) float32, each row scaled to a maximum of 1 (before ``intensity_scale``).

        Raises:
            ValueError: naming the structure (index and formula) that has no sites, an element
                without scattering data, or no reflection in the 2-theta range.
        """
        batch = structures if isinstance(structures, StructureBatch) else self._pack(structures)
        n = len(batch)
        dtype = torch.float32
        if n == 0:
            out = torch.zeros((0, self.n_points), dtype=dtype, device=self.device)
            return out if as_tensor else out.cpu().numpy()
        params = {}
        if augmentation is not None:
            if generator is None:
                generator = torch.Generator(device=self.device)
                generator.manual_seed(seed if seed is not None else int(torch.seed() % 2**63))
            params = augmentation.draw(n, generator, self.device, dtype)
        with torch.inference_mode():  # less per-operation overhead; the result is copied out below
            out = self._unscaled(batch, augmentation, params, debye_waller_factors, dtype)
            top = out.amax(dim=1, keepdim=True)
            if not bool((top > 0).all()):
                bad = int(torch.nonzero(top[:, 0] <= 0)[0, 0])
                raise ValueError(self._describe(batch, bad, self._no_reflection_problem()))
        out = out / top  # an ordinary tensor, which autograd may use
        if augmentation is not None:
            out = augmentation.finish(out, params, generator)
        return out if as_tensor else out.cpu().numpy()

    def _unscaled(self, batch: StructureBatch, augmentation: Augmentation | None, params: dict,
                  debye_waller_factors, dtype) -> torch.Tensor:
        """The patterns of :meth:`simulate` before scaling and the finishing augmentations: (n, n_points)."""
        n = len(batch)
        margin = math.ceil(PEAK_TAIL_FWHM[self.profile] * self._max_fwhm(augmentation) / self.step) + 2
        n_fft = _next_fast_len(self.n_points + 2 * margin)
        lo, hi = self.two_theta_range
        shift = augmentation.zero_shift if augmentation else 0.0
        strain = augmentation.max_strain() if augmentation else 0.0
        lo_ext = max(lo - margin * self.step - shift, 1e-3)
        hi_ext = min(hi + margin * self.step + shift, 179.999)
        r_lo = 2 * math.sin(math.radians(lo_ext / 2)) / self.wavelength
        r_hi = 2 * math.sin(math.radians(hi_ext / 2)) / self.wavelength
        out = None
        flips, permutations, centres, hexagonal = laue_symmetry(batch)
        for rows in self._passes(batch, r_hi * (1 + strain), n_fft, flips):
            sub = {key: value[rows] for key, value in params.items()}
            atoms = self._atoms(batch[rows], r_hi * (1 + strain), debye_waller_factors, dtype=dtype,
                                device=self.device, permute=True, md_axis=sub.get("march_dollase_axis"),
                                flips=flips[rows], permutations=permutations[rows], centres=centres[rows],
                                hexagonal=hexagonal[rows])
            order = torch.as_tensor(atoms.order, device=self.device)
            strained = sub["strain"][order] if "strain" in sub else None
            refl = self._reflections(atoms, r_lo, r_hi, strain=strained)
            texture = sub["march_dollase_r"][order] if "march_dollase_r" in sub else None
            intensity = self._intensities(atoms, refl, texture, strained)
            rows_of_pass = order.index_select(0, refl["row"])
            reflections = (rows_of_pass, refl["two_theta"], refl["sin2"], intensity)
            for part, patterns in self._render_chunks(reflections, rows.stop - rows.start, sub, margin, n_fft):
                if rows.start + part.start == 0 and rows.start + part.stop == n:
                    out = patterns  # the whole batch at once: a view, copied once by the division below
                else:
                    if out is None:
                        out = torch.empty((n, self.n_points), dtype=dtype, device=self.device)
                    out[rows.start + part.start: rows.start + part.stop] = patterns
        return out

    # ---------------------------------------------------------------- stage 0: arrays

    def _pack(self, structures) -> StructureBatch:
        structures = list(structures)
        try:
            return StructureBatch.from_structures(structures)
        except Exception:
            for i, structure in enumerate(structures):
                try:
                    StructureBatch.from_structures([structure])
                except Exception as error:
                    raise ValueError(f"structure {i} ({structure.composition.reduced_formula}): "
                                     f"cannot be read ({error})") from None
            raise

    @staticmethod
    def _describe(batch: StructureBatch, i: int, problem: str) -> str:
        from pymatgen.core import Composition, Element

        amounts = {}
        for z, o in zip(batch.atomic_number[i].ravel(), batch.occupancy[i].ravel()):
            if z > 0 and o > 0:
                amounts[Element.from_Z(int(z))] = amounts.get(Element.from_Z(int(z)), 0.0) + float(o)
        formula = Composition(amounts).reduced_formula if amounts else "empty"
        return f"structure {i} ({formula}): {problem}"

    def _no_reflection_problem(self) -> str:
        lo, hi = self.two_theta_range
        d_min = self.wavelength / (2 * math.sin(math.radians(hi / 2)))
        return (f"no reflection within 2-theta {lo:g}-{hi:g} deg at wavelength {self.wavelength:g} A "
                f"(d-spacings down to {d_min:.3f} A are reachable); the wavelength is too long for this cell "
                "or the range too narrow")

    def _passes(self, batch: StructureBatch, r_max: float, n_fft: int,
                flips: np.ndarray | None = None) -> list[slice]:
        """Rows of the batch to simulate together, so that one pass stays within ``max_batch_bytes``.

        ``flips`` (n, 3) are the Laue sign changes of :func:`laue.cell_symmetry`, which shrink the boxes.
        """
        n = len(batch)
        extent = np.floor(r_max * np.linalg.norm(batch.lattice, axis=2) + 1e-9)
        extent = np.sort(extent, axis=1)[:, ::-1]
        nonneg = None if flips is None else _nonneg(flips)
        per_row = BYTES_PER_HKL * _box_points(extent, nonneg) + 16 * self.width_bins * n_fft
        rows = max(1, int(self.max_batch_bytes // per_row.max()))
        return [slice(start, min(n, start + rows)) for start in range(0, n, rows)]

    def _atoms(self, batch: StructureBatch, r_max: float, debye_waller_factors, *, dtype, device,
               permute: bool, md_axis=None, table: bool = True, flips: np.ndarray | None = None,
               permutations: np.ndarray | None = None, centres: np.ndarray | None = None,
               hexagonal: np.ndarray | None = None) -> _Atoms:
        """Check the batch, flatten site species into atoms, name their scattering factors, move to the device.

        ``r_max`` (1/Angstrom) bounds |g| of every reflection that will be asked for. ``flips`` (n, 3)
        and ``permutations`` (n,), each structure's Laue symmetry (:func:`laue.laue_symmetry`), let its
        box be cut (with ``permute``); ``centres`` (n, 3), its centre of symmetry (NaN if none), let
        half of its atoms stand for all (:func:`_centric_halves`); ``hexagonal`` (n,), its trigonal or
        hexagonal Laue group, lets a wedge of the (h, k) plane stand for the rest (:func:`_hexagonal_wedge`).
        """
        n, n_sites, n_species = batch.atomic_number.shape
        z_all = batch.atomic_number.reshape(n, -1)
        occupancy_all = batch.occupancy.reshape(n, -1)
        within = np.arange(n_sites * n_species)[None, :] // n_species < batch.n_sites[:, None]
        rows, cols = np.nonzero((z_all > 0) & (occupancy_all > 0) & within)  # every atom, by structure
        n_atoms = np.bincount(rows, minlength=n)
        if (n_atoms == 0).any():
            raise ValueError(self._describe(batch, int(np.argmax(n_atoms == 0)), "has no sites"))
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
        if self.radiation == "xray":
            _, known = xray_table()
        else:
            lengths, known = neutron_table()
        unknown = ~known[np.minimum(z, len(known) - 1)]
        if unknown.any():
            j = int(np.argmax(unknown))
            data = "X-ray form factor" if self.radiation == "xray" else "neutron scattering length"
            raise ValueError(self._describe(batch, int(rows[j]), f"element {symbol(z[j])} has no {data} "
                                            "in pymatgen's tables"))
        if self.radiation == "neutron":
            weight = weight * lengths[z]

        # the scattering factor of each atom: one per (element, B) pair for X-rays, one per B for neutrons
        key_z = z if self.radiation == "xray" else np.zeros_like(z)
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
            keep, factor, centric, coords = _centric_halves(rows, coords, centres, n_atoms)
            keep = np.flatnonzero(keep)
            rows, coords, key, weight = rows[keep], coords[keep], key[keep], weight[keep] * factor[keep]
            n_atoms = np.bincount(rows, minlength=n)

        # hkl box: |h| <= |g| |a| for g within the limiting sphere
        lattice = batch.lattice.astype(np.float64)
        extent = np.floor(r_max * np.linalg.norm(lattice, axis=2) + 1e-9).astype(np.int64)  # (n, 3)
        if (extent.max(axis=1) == 0).any():
            raise ValueError(self._describe(batch, int(np.argmax(extent.max(axis=1) == 0)),
                                            self._no_reflection_problem()))
        nonneg = np.ones(n, dtype=np.int64)
        if hexagonal is None or not permute:
            hexagonal = np.zeros(n, dtype=np.int64)
        elif md_axis is not None:  # the three-fold axis keeps the angle to c* only
            hexagonal = np.where(md_axis.cpu().numpy() == 2, hexagonal, 0)
        if permute:  # the largest box axis first: the lines of :meth:`_reflections` run along it
            order_key = -extent.astype(np.float64)
            if flips is not None:
                nonneg = _nonneg(flips)
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
            coords = np.take_along_axis(coords, perm[rows], axis=1)
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

        # structures in order of padded size; each atom at its place in its structure's row
        padded = _padded_atoms(n_atoms)
        order = np.lexsort((~centric, padded))  # by padded size, centric structures first
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        place = np.arange(len(rows)) - (np.cumsum(n_atoms) - n_atoms)[rows]  # rows are sorted
        table_top = (r_max / 2) ** 2 * (1 + 1e-6)
        form_factors = None
        if table:  # atoms then name rows of the shared table instead of pairs of this batch
            form_factors, pair_rows = self._form_factor_table(pairs, table_top, dtype, device)
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
            chunks.append(_Chunk(start, stop, feat=put(feat[start:stop, :, :padded[start]], torch.int32),
                                 acentric=start + int(centric[start:stop].sum())))
        within_chunk = np.arange(n) - np.repeat(bounds[:-1], np.diff(bounds))
        if md_axis is not None:
            md_axis = md_axis[torch.as_tensor(order, device=md_axis.device)]
        atoms = _Atoms(order=order, dtype=dtype, recip_metric=recip_metric[order], chunks=chunks,
                       within_chunk=put(within_chunk, torch.long),
                       key_z=put(pairs[:, 0].astype(np.int64), torch.long), key_b=put(pairs[:, 1]),
                       any_b=bool((pairs[:, 1] != 0).any()), md_axis=md_axis, table=form_factors,
                       table_top=table_top, extent=extent[order], nonneg=nonneg[order],
                       permutations=permutations[order], hexagonal=hexagonal[order])
        return atoms

    def _form_factor_table(self, pairs: np.ndarray, table_top: float, dtype, device) -> tuple[torch.Tensor, np.ndarray]:
        """f(s) exp(-B s^2) of (element, B) pairs on FORM_FACTOR_POINTS values of s^2 up to ``table_top``.

        One table is kept per (radiation, s^2 range, dtype, device) and grows by the pairs it has not
        seen (``_TABLE_CACHE``), as the same elements recur in every batch.

        Args:
            pairs: (p, 2) atomic number and B (Angstrom^2).

        Returns:
            the table (q * FORM_FACTOR_POINTS, 2): value and step to the next grid point; and (p,) the
            table's row block of each pair.
        """
        key = (self.radiation, table_top, dtype, str(device))
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
            f = self._pair_form_factors(z, b, grid[None, :])  # (q, t)
            rows = torch.stack([f, torch.diff(f, dim=1, append=f[:, -1:])], dim=-1).reshape(-1, 2)
            table = rows if table is None else torch.cat([table, rows])
            index = {**index, **{names[i]: len(index) + j for j, i in enumerate(missing)}}
            _TABLE_CACHE[key] = table, index
        return table, np.array([index[name] for name in names], dtype=np.int64)

    # ---------------------------------------------------------------- stage 1: reflections

    def _reflections(self, atoms: _Atoms, r_lo: float, r_hi: float, strain) -> dict:
        """The hkl of every structure's box that lie in the shell r_lo <= |g| <= r_hi (1/Angstrom).

        Each box is cut into lines along h, one per (k, l). Along a line |g|^2 = a h^2 + b h + c, so
        the h that can lie within r_hi are those between the roots of a h^2 + b h + c = r_hi^2: only
        they are generated (with LINE_SLACK to spare) and then tested, all structures at once.

        Args:
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
        sin2 = (0.25 * self.wavelength**2) * g2
        two_theta = torch.rad2deg(2 * torch.asin(torch.sqrt(sin2.clamp(0.0, 1.0))))
        device, dtype = atoms.chunks[0].feat.device, atoms.dtype
        return {"row": torch.as_tensor(row, device=device),
                "hkl": torch.as_tensor(np.stack([h, k, l]).astype(np.int32), device=device),
                "friedel": torch.from_numpy(friedel).to(device=device, dtype=dtype),
                **{key: x.to(device=device, dtype=dtype)
                   for key, x in (("g2", g2), ("sin2", sin2), ("two_theta", two_theta))}}

    # ---------------------------------------------------------------- stage 2: intensities

    def _intensities(self, atoms: _Atoms, refl: dict, march_dollase_r=None, strain=None,
                     exact: bool = False) -> torch.Tensor:
        """|F|^2 x LP x Friedel weight [x March-Dollase] of each reflection: (r,).

        F = sum_j o_j f_j(s) exp(i (h X_j + k Y_j + l Z_j)) over each structure's padded atoms, one
        chunk of equally padded structures at a time (and within it, pieces of at most
        ``max_batch_bytes``). ``exact`` evaluates the form factors at every reflection instead of
        interpolating a table.
        """
        row = refl["row"]
        h, k, l = refl["hkl"][:, :, None].unbind(0)  # (r, 1) int32 each
        s2 = 0.25 * refl["g2"]
        F2 = torch.empty_like(s2)
        form = self._form_factors(atoms, s2, exact)
        local_all = atoms.within_chunk.index_select(0, row)
        starts = [x for chunk in atoms.chunks for x in (chunk.start, chunk.acentric)] + [len(atoms.extent)]
        bounds = torch.searchsorted(row, torch.as_tensor(starts, device=row.device)).tolist()  # structure order
        for chunk, first, complex_from, last in zip(atoms.chunks, bounds[::2], bounds[1::2], bounds[2::2]):
            m = chunk.feat.shape[2]
            step = max(1, self.max_batch_bytes // (BYTES_PER_PAIR * m))
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
        if self.radiation == "xray":
            lp = (1 + (1 - 2 * sin2) ** 2) / (sin2 * cos_theta)
        else:
            lp = 1 / (sin2 * cos_theta)
        intensity = F2 * lp * refl["friedel"]
        if march_dollase_r is not None:
            intensity = intensity * self._march_dollase(atoms, refl, march_dollase_r, strain)
        return intensity

    def _pair_form_factors(self, z: torch.Tensor, b: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
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
        if self.radiation == "xray":
            coeffs, _ = xray_table()
            c = torch.as_tensor(coeffs, dtype=s2.dtype, device=s2.device)[z]  # (..., 4, 2)
            decay = torch.exp(-(c[..., 1] * s2[..., None]).clamp_max(EXP_FLOOR))
            f = z.to(s2.dtype) - XRAY_SCALE * s2 * (c[..., 0] * decay).sum(-1)
        if any_b:
            f = f * torch.exp(-(b * s2).clamp_max(EXP_FLOOR))
        return f

    def _form_factors(self, atoms: _Atoms, s2: torch.Tensor, exact: bool):
        """The scattering factors of atoms at the reflections' s^2 (r,), or None where they are all 1.

        Returns a function of (pair, a, b): the factor (b - a, m) of the atoms whose (element, B) pairs
        are ``pair`` (b - a, m) int32 (:class:`_Chunk`) at reflections a:b. None for neutrons without
        Debye-Waller factors. Unless ``exact``, each pair is tabulated once on FORM_FACTOR_POINTS
        values of s^2 (``atoms.table``) and is interpolated linearly (relative error below 1e-4).
        """
        if self.radiation == "neutron" and not atoms.any_b:
            return None
        if exact:
            full = self._pair_form_factors(atoms.key_z, atoms.key_b, s2[None, :]).T  # (r, p)
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

    @staticmethod
    def _march_dollase(atoms: _Atoms, refl: dict, r: torch.Tensor, strain=None) -> torch.Tensor:
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

    # ---------------------------------------------------------------- stages 3 and 4: profile and grid

    def _fwhm(self, sin2: torch.Tensor, scale=None, size=None) -> torch.Tensor:
        """FWHM in degrees 2-theta where sin^2 theta = ``sin2``; scale, size (nm): (g,) or None.

        cos and tan come from square roots of sin^2 theta, which round the same way in SIMD and scalar
        code, so a pattern does not depend on which other patterns share its pass.
        """
        cos_theta = torch.sqrt((1 - sin2).clamp_min(1e-12))
        if self.caglioti is not None:
            U, V, W = self.caglioti
            t = torch.sqrt(sin2) / cos_theta
            var = (U * t * t + V * t + W).clamp_min(0.0)
        else:
            var = torch.full_like(sin2, self.fwhm**2)
        size = size if size is not None else self.crystallite_size
        if size is not None:
            if torch.is_tensor(size):
                size = size.reshape(-1, *([1] * (sin2.dim() - 1)))
            scherrer = (180 / math.pi) * self.scherrer_k * self.wavelength / (10.0 * size * cos_theta)
            var = var + scherrer * scherrer
        fwhm = torch.sqrt(var)
        if scale is not None:
            fwhm = fwhm * scale.reshape(-1, *([1] * (sin2.dim() - 1)))
        return fwhm

    def _width_varies(self, params: dict) -> bool:
        return self.caglioti is not None or self.crystallite_size is not None or "crystallite_size" in params

    def _max_fwhm(self, augmentation: Augmentation | None) -> float:
        """The widest peak (degrees) over the range and the augmentation's widths, remembered per setting."""
        widths = None if augmentation is None else (augmentation.fwhm_scale, augmentation.crystallite_size)
        key = (repr(widths), self.fwhm, self.caglioti, self.crystallite_size, self.scherrer_k, self.wavelength,
               self.two_theta_range)
        known = self.__dict__.setdefault("_widest", {})
        if key not in known:
            known[key] = self._widest_fwhm(augmentation)
        return known[key]

    def _widest_fwhm(self, augmentation: Augmentation | None) -> float:
        lo, hi = self.two_theta_range
        theta = torch.linspace(lo, min(hi + 5.0, 179.0), 64, dtype=torch.float64) * (math.pi / 360)
        scale = augmentation.fwhm_scale[1] if augmentation and augmentation.fwhm_scale else 1.0
        size = augmentation.crystallite_size[0] if augmentation and augmentation.crystallite_size else None
        widest = float(self._fwhm(torch.sin(theta) ** 2, size=size).max()) * scale
        if not widest > 0:
            raise ValueError("the peak width is zero everywhere in the 2-theta range; check fwhm / caglioti")
        return widest

    def _render_chunks(self, reflections: tuple, n: int, params: dict, margin: int, n_fft: int):
        """Render every reflection onto the grid, in row chunks of at most ``max_batch_bytes``.

        Args:
            reflections: (rows, two_theta, sin2, intensity), (r,) tensors, rows indexing the pass.

        Yields:
            (rows, patterns): a slice of the batch and its (rows, n_points) unscaled patterns.
        """
        rows, two_theta, sin2, intensity = reflections
        varies = self._width_varies(params)
        n_bins = self.width_bins if varies else 1
        per_row = 16 * n_bins * n_fft
        step = max(1, self.max_batch_bytes // per_row)
        for start in range(0, n, step):
            stop = min(n, start + step)
            if start == 0 and stop == n:
                r, t, s, i = rows, two_theta, sin2, intensity
            else:
                keep = (rows >= start) & (rows < stop)
                r, t, s, i = rows[keep] - start, two_theta[keep], sin2[keep], intensity[keep]
            sub = {key: value[start:stop] for key, value in params.items()}
            yield slice(start, stop), self._profile_and_grid(r, t, s, i, stop - start, sub, margin, n_fft)

    def _profile_and_grid(self, row, two_theta, sin2, intensity, n_rows: int, params: dict, margin: int,
                          n_fft: int) -> torch.Tensor:
        """Peak widths, then the profile sum on the grid: (n_rows, n_points)."""
        if "zero_shift" in params:
            two_theta = two_theta + params["zero_shift"][row]
        position = (two_theta - self.two_theta_range[0]) / self.step
        scale, size = params.get("fwhm_scale"), params.get("crystallite_size")
        common = dict(n_fft=n_fft, offset=margin, n_points=self.n_points, shape=self.profile, eta=self.eta)
        if not self._width_varies(params):
            row_fwhm = torch.full((1,), self.fwhm / self.step, dtype=intensity.dtype, device=intensity.device)
            if scale is not None:
                row_fwhm = row_fwhm * scale  # (n_rows,); else one kernel serves every row
            return _profile.render(row, position, intensity, n_rows, row_fwhm=row_fwhm, **common)
        lo = self.two_theta_range[0] - margin * self.step
        hi = self.two_theta_range[1] + margin * self.step
        sample = torch.deg2rad(torch.linspace(max(lo, 1e-3), min(hi, 179.0), WIDTH_SAMPLES,
                                              dtype=intensity.dtype, device=intensity.device)) / 2
        widths = self._fwhm((torch.sin(sample) ** 2).expand(n_rows, -1), scale, size)  # (n_rows, samples)
        w_lo, w_hi = widths.amin(dim=1, keepdim=True) * 0.999, widths.amax(dim=1, keepdim=True) * 1.001
        steps = torch.linspace(0.0, 1.0, self.width_bins, dtype=intensity.dtype, device=intensity.device)
        bins = w_lo * (w_hi / w_lo) ** steps  # (n_rows, n_bins) degrees
        fwhm = self._fwhm(sin2, None if scale is None else scale[row], None if size is None else size[row])
        fwhm = torch.maximum(torch.minimum(fwhm, w_hi[row, 0]), w_lo[row, 0])
        return _profile.render(row, position, intensity, n_rows, fwhm=fwhm / self.step,
                               bin_fwhm=bins / self.step, **common)


def clear_caches() -> None:
    """Forget the remembered Laue symmetry and form-factor tables (to time a first call)."""
    _laue_cache.clear()
    _TABLE_CACHE.clear()


def _box_points(extent: np.ndarray, nonneg: np.ndarray | None = None) -> np.ndarray:
    """(n,) hkl points in boxes of half-widths ``extent`` (n, 3) whose last ``nonneg`` axes start at 0."""
    if nonneg is None:
        nonneg = np.ones(len(extent), dtype=np.int64)
    two_sided = np.arange(3)[None, :] < 3 - nonneg[:, None]
    return np.prod(np.where(two_sided, 2 * extent + 1, extent + 1), axis=1)


def _nonneg(flips: np.ndarray) -> np.ndarray:
    """(n,) how many box axes can start at 0, from the Laue sign changes ``flips`` (n, 3)."""
    count = flips.sum(axis=1)
    return np.where(count == 3, 3, np.where(count == 1, 2, 1))


# the (h, k) plane of hexagonal axes under each Laue group: the planar group for l > 0 and for l = 0
# (1 C3, 2 C6, 3 D3 with mirrors along a* and b*, 4 D3 with a mirror along a* + b*, 5 D6), by HEXAGONAL_GROUPS
_PLANE_GROUPS = {"-3": (1, 2), "6/m": (2, 2), "-3m1": (3, 5), "-31m": (4, 5), "6/mmm": (5, 5)}
_PLANE_PLUS, _PLANE_ZERO = np.array([(0, 0)] + [_PLANE_GROUPS[name] for name in HEXAGONAL_GROUPS[1:]]).T


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


def _centric_halves(rows: np.ndarray, coords: np.ndarray, centres: np.ndarray, n_atoms: np.ndarray):
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


def _next_fast_len(n: int) -> int:
    import scipy.fft

    return scipy.fft.next_fast_len(n, real=True)
