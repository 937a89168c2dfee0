"""Powder diffraction patterns from structures: reflections -> intensities -> profile -> grid.

``PowderSimulator`` computes X-ray or neutron patterns of many structures at once in torch (CPU or
GPU), matching pymatgen's ``XRDCalculator`` and ``NDCalculator``; ``Augmentation`` adds the seeded
imperfections of measured data for training.
"""

from xtal_utils.diffraction.augment import Augmentation
from xtal_utils.diffraction.simulator import CU_KALPHA1, SIMULATOR_VERSION, Peaks, PowderSimulator

__all__ = ["Augmentation", "CU_KALPHA1", "Peaks", "PowderSimulator", "SIMULATOR_VERSION"]
