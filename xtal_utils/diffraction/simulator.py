"""The powder pattern simulator: reflections -> intensities -> profile -> grid, batched in torch.

:class:`PowderSimulator` holds the configuration and runs the stages, one module each:

- :mod:`~xtal_utils.diffraction.laue`: each structure's Laue symmetry, found in the cell's own setting;
- :mod:`~xtal_utils.diffraction.reflections`: the hkl boxes, cut by that symmetry, and their
  reflections within the limiting sphere's shell;
- :mod:`~xtal_utils.diffraction.structure_factors`: the atoms on the device, form factors, |F|^2
  and the intensities;
- :mod:`~xtal_utils.diffraction.profile`: peak widths and the profile sum on the 2-theta grid.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import torch

from xtal_utils.config import default_device
from xtal_utils.diffraction.augment import Augmentation, cell_strain_factors
from xtal_utils.diffraction.laue import (
    HEXAGONAL_GROUPS,
    PERMUTATION_GROUPS,
    clear_symmetry_cache,
    laue_symmetry,
)
from xtal_utils.diffraction.profile import PROFILE_SHAPES, PeakProfile, grid_margin, render_chunks
from xtal_utils.diffraction.reflections import box_points, nonneg_axes, reflections_in_shell
from xtal_utils.diffraction.structure_factors import clear_form_factor_tables, flatten_atoms, intensities
from xtal_utils.structures import StructureBatch

CU_KALPHA1 = 1.5406  # Angstrom
SIMULATOR_VERSION = 2  # part of the key of cached patterns: raise it when patterns change beyond rounding
TWO_THETA_TOL = 1e-5  # degrees; reflections closer than this are one peak (pymatgen's TWO_THETA_TOL)
SCALED_INTENSITY_TOL = 1e-3  # peaks at or below this % of the strongest are dropped (as pymatgen does)
BYTES_PER_HKL = 400  # rough memory per hkl of a box in one pass (lines, candidates, reflections)


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

    def to_frame(self) -> pd.DataFrame:
        """One row per peak: two_theta, d_spacing, h, k, l, multiplicity, intensity."""
        return pd.DataFrame({"two_theta": self.two_theta, "d_spacing": self.d_spacing,
                             "h": self.hkl[:, 0], "k": self.hkl[:, 1], "l": self.hkl[:, 2],
                             "multiplicity": self.multiplicity, "intensity": self.intensity})


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
      setting (or given to :meth:`simulate`), are also computed once and counted by their number
      (``laue.py``, ``reflections.py``). Where the structure has a centre of symmetry, F is summed
      about it: one atom of each pair related by it, twice, and F is real
      (:func:`structure_factors.centric_halves`).
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
        if profile not in PROFILE_SHAPES:
            raise ValueError(f"profile must be one of {PROFILE_SHAPES}, not {profile!r}")
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
        """Degrees 2-theta between grid points."""
        return self.peak_profile.step

    @property
    def peak_profile(self) -> PeakProfile:
        """The settings of the profile stage: peak shape and widths, and the grid."""
        return PeakProfile(shape=self.profile, eta=self.eta, fwhm=self.fwhm, caglioti=self.caglioti,
                           crystallite_size=self.crystallite_size, scherrer_k=self.scherrer_k,
                           wavelength=self.wavelength, two_theta_range=self.two_theta_range,
                           n_points=self.n_points, width_bins=self.width_bins)

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
        atoms = flatten_atoms(batch, r_hi, debye_waller_factors, radiation=self.radiation,
                              dtype=torch.float64, device=torch.device("cpu"), permute=False, table=False,
                              no_reflection=self._no_reflection_problem())
        refl = reflections_in_shell(atoms, r_lo, r_hi, self.wavelength, strain=None)
        if len(refl["row"]) == 0:
            raise ValueError(f"{batch.describe(0)}: {self._no_reflection_problem()}")
        intensity = intensities(atoms, refl, radiation=self.radiation, max_batch_bytes=self.max_batch_bytes,
                                exact=True).numpy()
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
                 symmetry: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
                 as_tensor: bool = False):
        """Patterns of many structures in vectorised passes.

        Args:
            structures: a StructureBatch, or a sequence of pymatgen Structures.
            augmentation: random changes to apply (None: the clean pattern).
            seed, generator: randomness for the augmentation; a generator on ``self.device`` wins.
            debye_waller_factors: {element symbol: B in Angstrom^2}, overriding the batch's b_iso.
            symmetry: the batch's Laue symmetry, precomputed, in exactly the format that
                :func:`laue.laue_symmetry` returns: (flips (n, 3) bool, permutations (n,) int, an index
                into ``laue.PERMUTATION_GROUPS``, centres (n, 3) float, fractional, NaN where there is no
                centre of symmetry, hexagonal (n,) int, an index into ``laue.HEXAGONAL_GROUPS``). None
                (the default) detects it with ``laue_symmetry(batch)``, which hashes every structure's
                content to remember it. A generator that knows each crystal's space group and setting
                can supply it and skip that detection. It must be right for each cell in its own setting
                (its axes and origin as given in the batch, not the standard setting of its space
                group): it is trusted, and a wrong symmetry gives wrong patterns without an error.
                ``laue.no_symmetry(batch)`` is always right, only slower.
            as_tensor: return a tensor on ``self.device`` instead of a numpy array.

        Returns:
            (n, n_points) float32, each row scaled to a maximum of 1 (before ``intensity_scale``).

        Raises:
            ValueError: naming the structure (index and formula) that has no sites, an element
                without scattering data, or no reflection in the 2-theta range; or for a ``symmetry``
                of the wrong form or shape.
        """
        batch = structures if isinstance(structures, StructureBatch) else self._pack(structures)
        n = len(batch)
        if symmetry is not None:
            symmetry = _checked_symmetry(symmetry, n)
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
            out = self._unscaled(batch, augmentation, params, debye_waller_factors, dtype, symmetry)
            top = out.amax(dim=1, keepdim=True)
            if not bool((top > 0).all()):
                bad = int(torch.nonzero(top[:, 0] <= 0)[0, 0])
                raise ValueError(f"{batch.describe(bad)}: {self._no_reflection_problem()}")
        out = out / top  # an ordinary tensor, which autograd may use
        if augmentation is not None:
            out = augmentation.finish(out, params, generator)
        return out if as_tensor else out.cpu().numpy()

    def _unscaled(self, batch: StructureBatch, augmentation: Augmentation | None, params: dict,
                  debye_waller_factors, dtype, symmetry=None) -> torch.Tensor:
        """The patterns of :meth:`simulate` before scaling and the finishing augmentations: (n, n_points).

        Per pass of rows (:meth:`_passes`): atoms (:func:`structure_factors.flatten_atoms`), reflections
        (:func:`reflections.reflections_in_shell`), intensities (:func:`structure_factors.intensities`),
        then the profiles on the grid (:func:`profile.render_chunks`). ``symmetry``: as in
        :meth:`simulate`, already checked there; None detects it.
        """
        n = len(batch)
        peak = self.peak_profile
        no_reflection = self._no_reflection_problem()
        margin, n_fft = grid_margin(peak, augmentation)
        lo, hi = self.two_theta_range
        shift = augmentation.zero_shift if augmentation else 0.0
        strain = augmentation.max_strain() if augmentation else 0.0
        lo_ext = max(lo - margin * peak.step - shift, 1e-3)
        hi_ext = min(hi + margin * peak.step + shift, 179.999)
        r_lo = 2 * math.sin(math.radians(lo_ext / 2)) / self.wavelength
        r_hi = 2 * math.sin(math.radians(hi_ext / 2)) / self.wavelength
        out = None
        flips, permutations, centres, hexagonal = laue_symmetry(batch) if symmetry is None else symmetry
        if "cell_strain" in params:  # edges scaled, angles and symmetry kept: the batch's symmetry still holds
            factors = cell_strain_factors(batch.lattice, params["cell_strain"].cpu().numpy())
            batch = dataclasses.replace(batch, lattice=batch.lattice * factors[:, :, None])
        for rows in self._passes(batch, r_hi * (1 + strain), n_fft, flips):
            sub = {key: value[rows] for key, value in params.items()}
            atoms = flatten_atoms(batch[rows], r_hi * (1 + strain), debye_waller_factors,
                                  radiation=self.radiation, dtype=dtype, device=self.device, permute=True,
                                  no_reflection=no_reflection, md_axis=sub.get("march_dollase_axis"),
                                  flips=flips[rows], permutations=permutations[rows], centres=centres[rows],
                                  hexagonal=hexagonal[rows])
            order = torch.as_tensor(atoms.order, device=self.device)
            strained = sub["strain"][order] if "strain" in sub else None
            refl = reflections_in_shell(atoms, r_lo, r_hi, self.wavelength, strain=strained)
            texture = sub["march_dollase_r"][order] if "march_dollase_r" in sub else None
            intensity = intensities(atoms, refl, radiation=self.radiation,
                                    max_batch_bytes=self.max_batch_bytes, march_dollase_r=texture,
                                    strain=strained)
            rows_of_pass = order.index_select(0, refl["row"])
            reflections = (rows_of_pass, refl["two_theta"], refl["sin2"], intensity)
            n_rows = rows.stop - rows.start
            for part, patterns in render_chunks(peak, reflections, n_rows, sub, margin, n_fft,
                                                max_batch_bytes=self.max_batch_bytes):
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
        nonneg = None if flips is None else nonneg_axes(flips)
        per_row = BYTES_PER_HKL * box_points(extent, nonneg) + 16 * self.width_bins * n_fft
        rows = max(1, int(self.max_batch_bytes // per_row.max()))
        return [slice(start, min(n, start + rows)) for start in range(0, n, rows)]


def clear_caches() -> None:
    """Forget the remembered Laue symmetry and form-factor tables (to time a first call)."""
    clear_symmetry_cache()
    clear_form_factor_tables()


def _checked_symmetry(symmetry, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A ``symmetry`` given to :meth:`PowderSimulator.simulate` as numpy arrays, or a ValueError.

    The form is that of :func:`laue.laue_symmetry` for a batch of ``n`` structures; the values are trusted.
    """
    form = ("symmetry must be (flips, permutations, centres, hexagonal) as laue.laue_symmetry(batch) returns "
            "them")
    if isinstance(symmetry, (str, bytes, dict)) or not hasattr(symmetry, "__len__") or len(symmetry) != 4:
        raise ValueError(f"{form}; got {type(symmetry).__name__}"
                         + (f" of length {len(symmetry)}" if hasattr(symmetry, "__len__") else ""))
    arrays = tuple(np.asarray(part) for part in symmetry)
    shapes = {"flips": (n, 3), "permutations": (n,), "centres": (n, 3), "hexagonal": (n,)}
    kinds = {"flips": "b", "permutations": "iu", "centres": "f", "hexagonal": "iu"}
    ranges = {"permutations": ("PERMUTATION_GROUPS", len(PERMUTATION_GROUPS)),
              "hexagonal": ("HEXAGONAL_GROUPS", len(HEXAGONAL_GROUPS))}
    for (name, shape), array in zip(shapes.items(), arrays):
        if array.shape != shape:
            raise ValueError(f"{form}: {name} must have shape {shape} for a batch of {n} structures, "
                             f"not {array.shape}")
        if array.dtype.kind not in kinds[name]:
            kind = {"b": "bool", "iu": "integer", "f": "float"}[kinds[name]]
            raise ValueError(f"{form}: {name} must be {kind}, not {array.dtype}")
        if name in ranges and n and not (0 <= array.min() and array.max() < ranges[name][1]):
            table, size = ranges[name]
            raise ValueError(f"{form}: {name} must lie in 0..{size - 1} (an index into laue.{table})")
    return arrays
