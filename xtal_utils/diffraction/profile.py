"""Peak profiles and their rendering onto a 2-theta grid.

Each reflection is spread over the three grid points around its 2-theta with quadratic (Lagrange)
weights, which keep the zeroth, first and second moments of a delta function, so the peak position
is exact and the shape error is third order in the grid step. The profile is then applied as one
FFT convolution; the kernel is the analytic Fourier transform of a unit-area Gaussian or
pseudo-Voigt, so a different width for every pattern costs nothing extra. Widths that change with
2-theta (Caglioti, Scherrer) are handled with a few width bins: each reflection is split between the
two bins whose widths bracket its own, linearly in FWHM^2 (which keeps the variance of a Gaussian).
"""

from __future__ import annotations

import math

import torch

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # Gaussian FWHM = 2.3548 sigma
PROFILE_SHAPES = ("gaussian", "pseudo_voigt")
FFT_ROW_BLOCK = 16  # rows per FFT call are padded to a multiple of this (bitwise reproducible chunking)


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
