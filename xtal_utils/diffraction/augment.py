"""Seeded augmentations that make simulated patterns look measured. All are off by default.

Random numbers are drawn once per call for the whole batch, in the order of the structures, before
any chunking, so that the same seed gives the same patterns however the batch is split in memory.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

N_UNIFORM = 8  # per-pattern uniform draws: one column per effect, so turning one off shifts no other


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """What to randomise, and how much. Each range is sampled uniformly per pattern.

    Attributes:
        fwhm_scale: (low, high) factor on every peak width.
        crystallite_size: (low, high) in nm, sampled log-uniformly; adds Scherrer broadening
            ``K lambda / (L cos theta)`` in quadrature to the instrumental width.
        strain: largest isotropic lattice strain |e| (a -> a (1 + e)). Isotropic, because an
            arbitrary strain would break the symmetry that is the label.
        cell_strain: largest relative change |e_i| of each cell edge, drawn apart for each edge
            (a_i -> a_i (1 + e_i), angles kept; see :func:`cell_strain_factors`). It keeps the space
            group and stands for the isostructural relatives of a structure (other compositions of
            the same structure type), whose edges differ by a few percent, each by its own amount.
        zero_shift: largest |shift| of the 2-theta zero, in degrees.
        march_dollase: (low, high) of the March-Dollase r (1 = random powder, < 1 plates,
            > 1 needles); the texture axis is a*, b* or c*, chosen at random.
        background: largest height of a smooth Chebyshev background, relative to the strongest peak.
        background_order: degree of the Chebyshev polynomial.
        poisson_counts: (low, high) counts at the strongest peak, sampled log-uniformly; None for
            no counting noise.
        gaussian_noise: standard deviation of added Gaussian noise, relative to the strongest peak.
        noise_level: (low, high) standard deviation of added Gaussian noise, relative to the
            strongest peak, sampled log-uniformly per pattern; the pattern's minimum is then
            subtracted, as :meth:`xtal_utils.classify.Classifier.prepare` does to a measured one. This
            is the detector and background noise of a weak measurement, which counting noise at
            the peak does not reach.
        intensity_scale: (low, high) factor on the whole final pattern (so that the maximum is no
            longer exactly 1).
        coverage: (low, high) share of the grid that was measured: a window of that share of the
            points, at a random place, is kept and the rest set to zero, as a measured pattern looks
            once an instrument's 2-theta range is moved onto a wider grid through d. The pattern is
            then scaled to a maximum of 1 again (before ``intensity_scale``).
    """

    fwhm_scale: tuple[float, float] | None = None
    crystallite_size: tuple[float, float] | None = None
    strain: float = 0.0
    zero_shift: float = 0.0
    march_dollase: tuple[float, float] | None = None
    background: float = 0.0
    background_order: int = 4
    poisson_counts: tuple[float, float] | None = None
    gaussian_noise: float = 0.0
    intensity_scale: tuple[float, float] | None = None
    coverage: tuple[float, float] | None = None
    noise_level: tuple[float, float] | None = None
    cell_strain: float = 0.0

    def draw(self, n: int, generator: torch.Generator, device, dtype=torch.float32) -> dict:
        """Per-pattern parameters, each an (n,) tensor on ``device`` (absent when switched off)."""
        u = torch.rand((n, N_UNIFORM), generator=generator, device=device, dtype=dtype)
        bg = torch.randn((n, self.background_order + 1), generator=generator, device=device, dtype=dtype)
        out = {}

        def between(column, bounds, log=False):
            lo, hi = (float(b) for b in bounds)
            if log:
                return lo * (hi / lo) ** u[:, column]
            return lo + (hi - lo) * u[:, column]

        if self.fwhm_scale is not None:
            out["fwhm_scale"] = between(0, self.fwhm_scale)
        if self.crystallite_size is not None:
            out["crystallite_size"] = between(1, self.crystallite_size, log=True)
        if self.strain:
            out["strain"] = between(2, (-self.strain, self.strain))
        if self.zero_shift:
            out["zero_shift"] = between(3, (-self.zero_shift, self.zero_shift))
        if self.march_dollase is not None:
            out["march_dollase_r"] = between(4, self.march_dollase)
            out["march_dollase_axis"] = torch.clamp((u[:, 5] * 3).long(), max=2)
        if self.background:
            out["background_height"] = self.background * u[:, 6]
            out["background_coeffs"] = bg / torch.arange(1, bg.shape[1] + 1, device=device, dtype=dtype)
        if self.poisson_counts is not None:
            out["poisson_counts"] = between(7, self.poisson_counts, log=True)
        if self.intensity_scale is not None:
            lo, hi = self.intensity_scale
            draw = torch.rand(n, generator=generator, device=device, dtype=dtype)
            out["intensity_scale"] = lo + (hi - lo) * draw
        if self.coverage is not None:  # drawn last, so that switching it on changes no other draw
            lo, hi = self.coverage
            draw = torch.rand((n, 2), generator=generator, device=device, dtype=dtype)
            out["coverage_width"] = lo + (hi - lo) * draw[:, 0]
            out["coverage_start"] = (1 - out["coverage_width"]) * draw[:, 1]
        if self.noise_level is not None:  # drawn after coverage, so that switching it on changes no other draw
            lo, hi = self.noise_level
            draw = torch.rand(n, generator=generator, device=device, dtype=dtype)
            out["noise_level"] = lo * (hi / lo) ** draw
        if self.cell_strain:  # drawn last, so that switching it on changes no other draw
            draw = torch.rand((n, 3), generator=generator, device=device, dtype=dtype)
            out["cell_strain"] = self.cell_strain * (2 * draw - 1)
        return out

    def max_strain(self) -> float:
        return abs(self.strain)

    def finish(self, patterns: torch.Tensor, params: dict, generator: torch.Generator) -> torch.Tensor:
        """Background, noise and scaling on (n, n_points) patterns that have a maximum of 1."""
        n, n_points = patterns.shape
        if "background_height" in params:
            x = torch.linspace(-1.0, 1.0, n_points, device=patterns.device, dtype=patterns.dtype)
            coeffs = params["background_coeffs"]
            cheb = [torch.ones_like(x), x]
            for _ in range(2, coeffs.shape[1]):
                cheb.append(2 * x * cheb[-1] - cheb[-2])
            background = coeffs @ torch.stack(cheb[: coeffs.shape[1]])  # (n, n_points)
            background = background - background.amin(dim=1, keepdim=True)
            top = background.amax(dim=1, keepdim=True).clamp_min(1e-12)
            patterns = patterns + background / top * params["background_height"][:, None]
        if "poisson_counts" in params:
            counts = params["poisson_counts"][:, None]
            patterns = torch.poisson(patterns.clamp_min(0) * counts, generator=generator) / counts
        if self.gaussian_noise:
            patterns = patterns + self.gaussian_noise * torch.randn(
                patterns.shape, generator=generator, device=patterns.device, dtype=patterns.dtype)
        if "noise_level" in params:
            patterns = patterns + params["noise_level"][:, None] * torch.randn(
                patterns.shape, generator=generator, device=patterns.device, dtype=patterns.dtype)
            patterns = patterns - patterns.amin(dim=1, keepdim=True)
        if "coverage_width" in params:
            position = torch.linspace(0.0, 1.0, n_points, device=patterns.device, dtype=patterns.dtype)
            start = params["coverage_start"][:, None]
            inside = (position >= start) & (position <= start + params["coverage_width"][:, None])
            patterns = patterns * inside
            patterns = patterns - torch.where(inside, patterns, torch.inf).amin(dim=1, keepdim=True) * inside
        patterns = patterns / patterns.amax(dim=1, keepdim=True).clamp_min(1e-12)
        if "intensity_scale" in params:
            patterns = patterns * params["intensity_scale"][:, None]
        return patterns


def cell_strain_factors(lattice: np.ndarray, strain: np.ndarray, rtol: float = 1e-4) -> np.ndarray:
    """(n, 3) factors 1 + e_i on the edges of cells ``lattice`` (n, 3, 3), rows the edge vectors, from
    drawn strains (n, 3).

    Edges of equal length (within ``rtol``) take the strain of the first of them. Scaling the edges
    with the angles kept then keeps every symmetry operation of a cell in a conventional setting: an
    operation maps edges onto edges of the same length (a = b in tetragonal and hexagonal cells,
    a = b = c in cubic and rhombohedral ones), and only the lengths change.
    """
    lengths = np.linalg.norm(np.asarray(lattice, dtype=np.float64), axis=2)
    e = np.array(strain, dtype=np.float64)
    for j in (1, 2):
        for i in range(j):
            same = np.abs(lengths[:, j] - lengths[:, i]) <= rtol * lengths[:, i]
            e[same, j] = e[same, i]
    return 1.0 + e
