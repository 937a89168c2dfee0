"""Peak profiles and their rendering onto a 2-theta grid.

Each reflection is spread over the three grid points around its 2-theta with quadratic (Lagrange)
weights, which keep the zeroth, first and second moments of a delta function, so the peak position
is exact and the shape error is third order in the grid step. The profile is then applied as one
FFT convolution; the kernel is the analytic Fourier transform of a unit-area Gaussian or
pseudo-Voigt, so a different width for every pattern costs nothing extra. Widths that change with
2-theta (Caglioti, Scherrer) are handled with a few width bins: each reflection is split between the
two bins whose widths bracket its own, linearly in FWHM^2 (which keeps the variance of a Gaussian).

The second half is the simulator's profile stage (stages 3 and 4): the peak widths of a
:class:`PeakProfile` (a simulator's settings) under an augmentation, and the rendering of the
reflections in row chunks of bounded memory.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import scipy.fft
import torch

from xtal_utils.diffraction.augment import Augmentation

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # Gaussian FWHM = 2.3548 sigma
PROFILE_SHAPES = ("gaussian", "pseudo_voigt")
FFT_ROW_BLOCK = 16  # rows per FFT call are padded to a multiple of this (bitwise reproducible chunking)
PEAK_TAIL_FWHM = {"gaussian": 4.0, "pseudo_voigt": 25.0}  # margin kept beyond the range, in FWHM
WIDTH_SAMPLES = 33  # 2-theta samples used to find each pattern's range of peak widths


def kernel_spectrum(fwhm_points: torch.Tensor, n_fft: int, shape: str, eta: float) -> torch.Tensor:
    """The real Fourier transform of a unit-area peak centred on sample 0.

    Args:
        fwhm_points: (...,) FWHM in grid steps.
        n_fft: length of the periodic buffer.
        shape: 'gaussian' or 'pseudo_voigt' (eta Lorentzian + (1 - eta) Gaussian, same FWHM).

    Returns:
        (..., n_fft // 2 + 1) real spectrum, to multiply an ``rfft`` by.
    """
    freq = torch.fft.rfftfreq(n_fft, device=fwhm_points.device, dtype=fwhm_points.dtype)
    w = fwhm_points[..., None]
    sigma = w / FWHM_PER_SIGMA
    gauss = torch.exp(-2.0 * math.pi**2 * (sigma * freq) ** 2)
    if shape == "gaussian":
        return gauss
    lorentz = torch.exp(-math.pi * w * freq)  # FT of a Lorentzian of FWHM w
    return eta * lorentz + (1.0 - eta) * gauss


def render(row: torch.Tensor, position: torch.Tensor, intensity: torch.Tensor, n_rows: int, *,
           n_fft: int, offset: int, n_points: int, shape: str, eta: float,
           row_fwhm: torch.Tensor | None = None, fwhm: torch.Tensor | None = None,
           bin_fwhm: torch.Tensor | None = None) -> torch.Tensor:
    """Sum the profiles of reflections onto a grid, one pattern per row.

    Args:
        row: (r,) long, the pattern each reflection belongs to.
        position: (r,) reflection positions in grid steps from the first visible point.
        intensity: (r,) integrated intensities.
        n_rows: number of patterns.
        n_fft: periodic buffer length, at least n_points + 2 * offset (no wrap-around into view).
        offset: points of margin before the first visible point.
        n_points: visible points returned.
        row_fwhm: (n_rows,) one FWHM per pattern, or (1,) one for all, in grid steps; or else
        fwhm: (r,) one FWHM per reflection with bin_fwhm: (n_rows, n_bins) increasing bin widths,
            both in grid steps.

    Returns:
        (n_rows, n_points) the profile sum, same dtype as ``intensity``.
    """
    u = position + offset
    centre = torch.round(u)
    frac = u - centre
    inside = (centre >= 1) & (centre <= n_fft - 2)
    intensity = torch.where(inside, intensity, 0.0)  # outside the buffer: add zero, at a clamped position
    centre = centre.clamp_(1, n_fft - 2).long()
    frac2 = frac * frac
    taps = (0.5 * (frac2 - frac), 1.0 - frac2, 0.5 * (frac2 + frac))

    if bin_fwhm is None:
        n_bins = 1
        base, weights = (row * n_fft + centre,), (intensity,)
        spectrum = kernel_spectrum(row_fwhm.reshape(-1, 1), n_fft, shape, eta)  # (n or 1, 1, f)
    else:
        n_bins = bin_fwhm.shape[1]
        bin_var = (bin_fwhm**2)[row]  # (r, n_bins)
        var = fwhm**2
        j = torch.searchsorted(bin_var, var[:, None]).clamp(1, n_bins - 1) - 1
        lo, hi = bin_var.gather(1, j)[:, 0], bin_var.gather(1, j + 1)[:, 0]
        t = ((var - lo) / (hi - lo).clamp_min(1e-12)).clamp(0.0, 1.0)
        j = j[:, 0]
        base = ((row * n_bins + j) * n_fft + centre, (row * n_bins + j + 1) * n_fft + centre)
        weights = (intensity * (1.0 - t), intensity * t)
        spectrum = kernel_spectrum(bin_fwhm, n_fft, shape, eta)  # (n, n_bins, f)

    # one allocation each for all taps: fresh large buffers cost page faults on CPU
    r = len(intensity)
    shifts = torch.arange(-1, 2, device=row.device)[:, None]
    index = torch.empty((len(base), 3, r), dtype=torch.long, device=row.device)
    value = torch.empty((len(base), 3, r), dtype=intensity.dtype, device=intensity.device)
    for b, (start, weight) in enumerate(zip(base, weights)):
        torch.add(start, shifts, out=index[b])
        for k, tap in enumerate(taps):
            torch.mul(weight, tap, out=value[b, k])
    # FFT libraries treat rows in SIMD blocks, so a row's last bits could depend on how many rows
    # there are; padding to a multiple of FFT_ROW_BLOCK keeps every row on the same code path.
    padded_rows = -(-n_rows // FFT_ROW_BLOCK) * FFT_ROW_BLOCK
    buffer = torch.zeros(padded_rows * n_bins * n_fft, dtype=intensity.dtype, device=intensity.device)
    buffer.scatter_add_(0, index.view(-1), value.view(-1))
    spec = torch.fft.rfft(buffer.view(padded_rows, n_bins, n_fft), dim=-1)
    if spectrum.shape[0] > 1:
        spectrum = torch.nn.functional.pad(spectrum, (0, 0, 0, 0, 0, padded_rows - n_rows))
    # a real kernel: no complex promotion; repeated for the real and imaginary parts so that the
    # product runs over contiguous memory
    torch.view_as_real(spec).mul_(torch.stack([spectrum, spectrum], dim=-1))
    out = torch.fft.irfft(spec.sum(dim=1) if n_bins > 1 else spec[:, 0], n=n_fft, dim=-1)
    return out[:n_rows, offset: offset + n_points]


# ---------------------------------------------------------------- simulator stages 3 and 4: widths, grid


@dataclasses.dataclass(frozen=True)
class PeakProfile:
    """The peak shape and widths of a simulator's settings, and the 2-theta grid they are rendered on.

    Attributes:
        shape: 'gaussian' or 'pseudo_voigt'.
        eta: Lorentzian fraction of the pseudo-Voigt, 0..1.
        fwhm: constant instrumental FWHM in degrees 2-theta (ignored when ``caglioti`` is given).
        caglioti: (U, V, W) in degrees^2 for FWHM^2 = U tan^2 theta + V tan theta + W, or None.
        crystallite_size: in nm, adds Scherrer broadening; or None.
        scherrer_k: the Scherrer shape factor K.
        wavelength: Angstrom.
        two_theta_range: (first, last) grid point in degrees.
        n_points: grid samples.
        width_bins: kernels used when the width changes with 2-theta.
    """

    shape: str
    eta: float
    fwhm: float
    caglioti: tuple[float, float, float] | None
    crystallite_size: float | None
    scherrer_k: float
    wavelength: float
    two_theta_range: tuple[float, float]
    n_points: int
    width_bins: int

    @property
    def step(self) -> float:
        """Degrees 2-theta between grid points."""
        lo, hi = self.two_theta_range
        return (hi - lo) / (self.n_points - 1)


def peak_fwhm(peak: PeakProfile, sin2: torch.Tensor, scale=None, size=None) -> torch.Tensor:
    """FWHM in degrees 2-theta where sin^2 theta = ``sin2``; scale, size (nm): (g,) or None.

    The width of ``peak``: its constant ``fwhm`` or Caglioti (U, V, W), with Scherrer broadening of
    ``size`` (else of ``peak.crystallite_size``) added in quadrature, times ``scale``.
    cos and tan come from square roots of sin^2 theta, which round the same way in SIMD and scalar
    code, so a pattern does not depend on which other patterns share its pass.
    """
    cos_theta = torch.sqrt((1 - sin2).clamp_min(1e-12))
    if peak.caglioti is not None:
        U, V, W = peak.caglioti
        t = torch.sqrt(sin2) / cos_theta
        var = (U * t * t + V * t + W).clamp_min(0.0)
    else:
        var = torch.full_like(sin2, peak.fwhm**2)
    size = size if size is not None else peak.crystallite_size
    if size is not None:
        if torch.is_tensor(size):
            size = size.reshape(-1, *([1] * (sin2.dim() - 1)))
        scherrer = (180 / math.pi) * peak.scherrer_k * peak.wavelength / (10.0 * size * cos_theta)
        var = var + scherrer * scherrer
    fwhm = torch.sqrt(var)
    if scale is not None:
        fwhm = fwhm * scale.reshape(-1, *([1] * (sin2.dim() - 1)))
    return fwhm


def width_varies(peak: PeakProfile, params: dict) -> bool:
    """Whether the peak width changes with 2-theta (Caglioti or Scherrer), so that width bins are needed."""
    return peak.caglioti is not None or peak.crystallite_size is not None or "crystallite_size" in params


def grid_margin(peak: PeakProfile, augmentation: Augmentation | None) -> tuple[int, int]:
    """(margin, n_fft): grid points kept beyond each end of the range, and the FFT buffer length.

    The margin holds the tails (PEAK_TAIL_FWHM) of the widest peak of the range under the
    augmentation's widths, so that peaks just outside the range reach into it and nothing wraps around.
    """
    scale, size = 1.0, None
    if augmentation is not None:
        scale = augmentation.fwhm_scale[1] if augmentation.fwhm_scale else 1.0
        size = augmentation.crystallite_size[0] if augmentation.crystallite_size else None
    margin = math.ceil(PEAK_TAIL_FWHM[peak.shape] * max_fwhm(peak, scale, size) / peak.step) + 2
    return margin, scipy.fft.next_fast_len(peak.n_points + 2 * margin, real=True)


@functools.lru_cache(maxsize=256)
def max_fwhm(peak: PeakProfile, scale: float = 1.0, size: float | None = None) -> float:
    """The widest peak (degrees) over the range, widened by ``scale`` and with Scherrer broadening of
    crystallites of ``size`` (nm; None: ``peak.crystallite_size``); remembered per setting."""
    lo, hi = peak.two_theta_range
    theta = torch.linspace(lo, min(hi + 5.0, 179.0), 64, dtype=torch.float64) * (math.pi / 360)
    widest = float(peak_fwhm(peak, torch.sin(theta) ** 2, size=size).max()) * scale
    if not widest > 0:
        raise ValueError("the peak width is zero everywhere in the 2-theta range; check fwhm / caglioti")
    return widest


def render_chunks(peak: PeakProfile, reflections: tuple, n: int, params: dict, margin: int, n_fft: int, *,
                  max_batch_bytes: int):
    """Render every reflection onto the grid, in row chunks of at most ``max_batch_bytes``.

    Args:
        reflections: (rows, two_theta, sin2, intensity), (r,) tensors, rows indexing the pass.
        n: the rows of the pass; params: the augmentation's draws for them, (n,) each.
        margin, n_fft: from :func:`grid_margin`.

    Yields:
        (rows, patterns): a slice of the batch and its (rows, n_points) unscaled patterns.
    """
    rows, two_theta, sin2, intensity = reflections
    varies = width_varies(peak, params)
    n_bins = peak.width_bins if varies else 1
    per_row = 16 * n_bins * n_fft
    step = max(1, max_batch_bytes // per_row)
    for start in range(0, n, step):
        stop = min(n, start + step)
        if start == 0 and stop == n:
            r, t, s, i = rows, two_theta, sin2, intensity
        else:
            keep = (rows >= start) & (rows < stop)
            r, t, s, i = rows[keep] - start, two_theta[keep], sin2[keep], intensity[keep]
        sub = {key: value[start:stop] for key, value in params.items()}
        yield slice(start, stop), profile_and_grid(peak, r, t, s, i, stop - start, sub, margin, n_fft)


def profile_and_grid(peak: PeakProfile, row, two_theta, sin2, intensity, n_rows: int, params: dict,
                     margin: int, n_fft: int) -> torch.Tensor:
    """Peak widths, then the profile sum on the grid: (n_rows, n_points)."""
    if "zero_shift" in params:
        two_theta = two_theta + params["zero_shift"][row]
    position = (two_theta - peak.two_theta_range[0]) / peak.step
    scale, size = params.get("fwhm_scale"), params.get("crystallite_size")
    common = dict(n_fft=n_fft, offset=margin, n_points=peak.n_points, shape=peak.shape, eta=peak.eta)
    if not width_varies(peak, params):
        row_fwhm = torch.full((1,), peak.fwhm / peak.step, dtype=intensity.dtype, device=intensity.device)
        if scale is not None:
            row_fwhm = row_fwhm * scale  # (n_rows,); else one kernel serves every row
        return render(row, position, intensity, n_rows, row_fwhm=row_fwhm, **common)
    lo = peak.two_theta_range[0] - margin * peak.step
    hi = peak.two_theta_range[1] + margin * peak.step
    sample = torch.deg2rad(torch.linspace(max(lo, 1e-3), min(hi, 179.0), WIDTH_SAMPLES,
                                          dtype=intensity.dtype, device=intensity.device)) / 2
    widths = peak_fwhm(peak, (torch.sin(sample) ** 2).expand(n_rows, -1), scale, size)  # (n_rows, samples)
    w_lo, w_hi = widths.amin(dim=1, keepdim=True) * 0.999, widths.amax(dim=1, keepdim=True) * 1.001
    steps = torch.linspace(0.0, 1.0, peak.width_bins, dtype=intensity.dtype, device=intensity.device)
    bins = w_lo * (w_hi / w_lo) ** steps  # (n_rows, n_bins) degrees
    fwhm = peak_fwhm(peak, sin2, None if scale is None else scale[row], None if size is None else size[row])
    fwhm = torch.maximum(torch.minimum(fwhm, w_hi[row, 0]), w_lo[row, 0])
    return render(row, position, intensity, n_rows, fwhm=fwhm / peak.step, bin_fwhm=bins / peak.step,
                  **common)
