"""xtal_utils: crystal symmetry from powder diffraction patterns.

The stages, in the order data flows through them: ``symmetry`` (labels), ``crystals`` (structures),
``diffraction`` (patterns), ``datasets``, ``models``, ``train``, ``evaluate`` and ``classify``.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # ``xtal_utils.classify(two_theta, intensity, wavelength=..., top=5)``: the module, made callable,
    # imported on first use (an eager import here would make ``python -m xtal_utils.classify`` warn)
    if name == "classify":
        import importlib

        return importlib.import_module("xtal_utils.classify")
    raise AttributeError(f"module 'xtal_utils' has no attribute {name!r}")
