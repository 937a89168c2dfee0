"""xtal_utils: crystal symmetry from powder diffraction patterns.

The stages, in the order data flows through them: ``symmetry`` (labels), ``crystals`` (structures),
``diffraction`` (patterns), ``datasets``, ``models``, ``train``, ``evaluate`` and ``classify``.
"""

__version__ = "0.1.0"

# ``xtal_utils.classify(two_theta, intensity, wavelength=..., top=5)`` is the module, made callable.
from xtal_utils import classify  # noqa: E402,F401
