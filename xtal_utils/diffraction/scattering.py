"""Scattering data per element, indexed by atomic number: the same tables pymatgen's calculators use.

- X-rays: the four-Gaussian fit to the atomic form factor that pymatgen's ``XRDCalculator`` uses
  (``pymatgen/analysis/diffraction/atomic_scattering_params.json``),
  ``f(s) = Z - 41.78214 s^2 sum_i a_i exp(-b_i s^2)`` with ``s = sin(theta) / lambda`` in 1/Angstrom.
- Neutrons: bound coherent scattering lengths in fm for the natural isotope mixture, from the Neutron
  Data Booklet as shipped with pymatgen's ``NDCalculator`` (``neutron_scattering_length.json``).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

import pymatgen.analysis.diffraction as _pmg_diffraction
from pymatgen.core import Element

_TABLES = Path(_pmg_diffraction.__file__).parent
MAX_Z = 118
XRAY_SCALE = 41.78214  # pymatgen's constant in f(s) = Z - XRAY_SCALE s^2 sum a exp(-b s^2)


def _symbols() -> list[str]:
    return [""] + [Element.from_Z(z).symbol for z in range(1, MAX_Z + 1)]


@functools.lru_cache(maxsize=None)
def xray_table() -> tuple[np.ndarray, np.ndarray]:
    """X-ray form-factor coefficients by atomic number.

    Returns:
        coeffs: (MAX_Z + 1, 4, 2) float64, the (a_i, b_i) pairs; b_i in Angstrom^2.
        known: (MAX_Z + 1,) bool, whether the element has coefficients.
    """
    params = json.loads((_TABLES / "atomic_scattering_params.json").read_text())
    coeffs = np.zeros((MAX_Z + 1, 4, 2))
    known = np.zeros(MAX_Z + 1, dtype=bool)
    for z, symbol in enumerate(_symbols()):
        if symbol in params:
            pairs = np.asarray(params[symbol], dtype=float)
            coeffs[z, : len(pairs)] = pairs
            known[z] = True
    return coeffs, known


@functools.lru_cache(maxsize=None)
def neutron_table() -> tuple[np.ndarray, np.ndarray]:
    """Coherent neutron scattering lengths by atomic number.

    Returns:
        lengths: (MAX_Z + 1,) float64 in fm (may be negative, e.g. H, Ti, Mn).
        known: (MAX_Z + 1,) bool.
    """
    table = json.loads((_TABLES / "neutron_scattering_length.json").read_text())
    lengths = np.zeros(MAX_Z + 1)
    known = np.zeros(MAX_Z + 1, dtype=bool)
    for z, symbol in enumerate(_symbols()):
        if symbol in table:
            lengths[z] = float(table[symbol])
            known[z] = True
    return lengths, known


def symbol(z: int) -> str:
    return Element.from_Z(int(z)).symbol
