"""xtal_utils.attribution: known answers for Captum on linear models, and reflection marks of known lattices."""

from __future__ import annotations

import dataclasses
import itertools
import warnings

import numpy as np
import pytest
import torch
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Lattice, Structure
from torch import nn

from xtal_utils import attribution as at
from xtal_utils.diffraction import PowderSimulator
from xtal_utils.models import ResNet1d
from xtal_utils.symmetry import absences

WAVELENGTH = 1.5406  # Angstrom
RANGE = (5.0, 90.0)  # degrees
N_POINTS = 256


def _linear(n_classes=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(N_POINTS, n_classes)).eval()


def _patterns(n=5, seed=1):
    return np.random.default_rng(seed).random((n, N_POINTS)).astype(np.float32)


def _marks(structure):
    return at.reflection_marks(structure, wavelength=WAVELENGTH, two_theta_range=RANGE)


def _squared_index(two_theta, a):
    """h^2 + k^2 + l^2 of a cubic reflection at ``two_theta`` degrees, cell edge ``a`` Angstrom."""
    return (2 * a * np.sin(np.radians(np.asarray(two_theta) / 2)) / WAVELENGTH) ** 2


def _cubic_indices(a, condition):
    """Sorted N = h^2+k^2+l^2 in range, split by whether some hkl of that N meets ``condition``."""
    n_max = int(_squared_index(RANGE[1], a))
    n_min = _squared_index(RANGE[0], a)
    r = range(-int(np.sqrt(n_max)) - 1, int(np.sqrt(n_max)) + 2)
    meets, fails = set(), set()
    for hkl in itertools.product(r, r, r):
        n = sum(h * h for h in hkl)
        if n_min <= n <= n_max and n > 0:
            (meets if condition(*hkl) else fails).add(n)
    return sorted(meets), sorted(fails - meets)


# ------------------------------------------------------------------ attributions


def test_linear_model_known_answers():
    """For f(x) = W x + b, Integrated Gradients from zero is W[t] * x exactly and Saliency is W[t]."""
    model, x = _linear(), _patterns()
    targets = np.array([0, 1, 2, 1, 0])
    weight = model[1].weight.detach().numpy()
    ig = at.attributions(model, x, targets, method="integrated_gradients", n_steps=8, batch_size=2)
    saliency = at.attributions(model, x, targets, method="saliency")
    assert ig.shape == saliency.shape == x.shape
    np.testing.assert_allclose(ig, weight[targets] * x, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(saliency, weight[targets], rtol=1e-6)
    assert at.completeness_error(model, x, targets, ig).max() < 1e-4


def test_baseline_array_shifts_integrated_gradients():
    model, x = _linear(), _patterns()
    targets = np.zeros(len(x), dtype=int)
    baseline = np.full(N_POINTS, 0.5, dtype=np.float32)
    ig = at.attributions(model, x, targets, baseline=baseline, n_steps=8)
    np.testing.assert_allclose(ig, model[1].weight.detach().numpy()[0] * (x - 0.5), rtol=1e-4, atol=1e-6)
    assert at.completeness_error(model, x, targets, ig, baseline=baseline).max() < 1e-4


def test_completeness_on_a_resnet_and_its_failure_when_broken():
    torch.manual_seed(0)
    model = ResNet1d(5, widths=(8, 16), blocks=(1, 1), pool_size=4).eval()
    x, targets = _patterns(4), np.array([0, 1, 2, 3])
    ig = at.attributions(model, x, targets, n_steps=64)
    assert at.completeness_error(model, x, targets, ig).max() < 0.05
    # a check that can fail: attributions that do not sum to the logit change are caught
    assert at.completeness_error(model, x, targets, 2 * ig + 1.0).min() > 0.5


def test_bad_inputs_are_named():
    model, x = _linear(), _patterns()
    with pytest.raises(ValueError, match="method"):
        at.attributions(model, x, np.zeros(5, dtype=int), method="shap")
    with pytest.raises(ValueError, match="targets"):
        at.attributions(model, x, np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="baseline"):
        at.attributions(model, x, np.zeros(5, dtype=int), baseline="mean")
    with pytest.raises(ValueError, match="NaN"):
        at.attributions(model, np.full_like(x, np.nan), np.zeros(5, dtype=int))


def test_class_average():
    attr = np.arange(12, dtype=float).reshape(4, 3)
    np.testing.assert_allclose(at.class_average(attr, [1, 2, 1, 3], 1), [3.0, 4.0, 5.0])
    with pytest.raises(ValueError, match="no pattern"):
        at.class_average(attr, [1, 2, 1, 3], 7)


def test_windows_and_enrichment():
    two_theta = np.linspace(0.0, 10.0, 101)  # 0.1 degree steps
    mask = at.window_mask(two_theta, [2.0, 7.0], 0.25)
    assert mask.sum() == 10 and mask[two_theta.searchsorted(2.0)] and not mask[0]
    assert not at.window_mask(two_theta, [], 0.25).any()
    masks = np.tile(mask, (3, 1))
    uniform = np.ones((3, 101))
    assert at.enrichment(uniform, masks)["enrichment"] == pytest.approx(1.0)
    inside = np.where(masks, -1.0, 0.0)  # the sign of an attribution does not matter
    result = at.enrichment(inside, masks)
    assert result["share"] == pytest.approx(1.0) and result["enrichment"] == pytest.approx(101 / 10)
    outside = at.enrichment(np.where(masks, 0.0, 1.0), masks)
    assert outside["enrichment"] == 0.0
    assert at.enrichment(np.vstack([uniform[:2], np.zeros(101)]), masks)["n"] == 2  # all-zero rows left out


# ------------------------------------------------------------------ reflection marks


@pytest.mark.parametrize("symbol, a, element, condition", [
    ("Im-3m", 2.87, "Fe", lambda h, k, l: (h + k + l) % 2 == 0),  # body centred: h+k+l odd absent
    ("Fm-3m", 3.615, "Cu", lambda h, k, l: h % 2 == k % 2 == l % 2),  # face centred: mixed parity absent
])
def test_centred_cubic_lattices(symbol, a, element, condition):
    structure = Structure.from_spacegroup(symbol, Lattice.cubic(a), [element], [[0, 0, 0]])
    marks = _marks(structure)
    allowed_n, absent_n = _cubic_indices(a, condition)
    np.testing.assert_allclose(_squared_index(marks.allowed, a), allowed_n, atol=1e-3)
    np.testing.assert_allclose(_squared_index(marks.absent, a), absent_n, atol=1e-3)
    assert all(not condition(*hkl) for hkl in marks.absent_hkl)
    # the allowed positions are pymatgen's peaks (no atom sits where it cancels a reflection here)
    pattern = XRDCalculator(wavelength=WAVELENGTH).get_pattern(structure, two_theta_range=RANGE)
    np.testing.assert_allclose(marks.allowed, pattern.x, atol=1e-3)


def test_site_extinction_is_not_systematic():
    """Si (Fd-3m, 8a): 222 vanishes because of where the atoms sit, not by the space group."""
    a = 5.431
    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(a), ["Si"], [[0, 0, 0]])
    marks = _marks(si)
    n_allowed = np.rint(_squared_index(marks.allowed, a))
    n_peaks = np.rint(_squared_index(PowderSimulator(device="cpu").peaks(si).two_theta, a))
    assert 12 in n_allowed and 12 not in n_peaks
    assert set(n_peaks) <= set(n_allowed)
    assert 4 in np.rint(_squared_index(marks.absent, a))  # 200: the d-glide


def _p21c():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_spacegroup(
            "P2_1/c", Lattice.monoclinic(5.2, 7.9, 6.3, 104.0), ["Ca", "S", "O"],
            [[0.12, 0.31, 0.22], [0.61, 0.08, 0.37], [0.27, 0.72, 0.91]])


def test_absent_hkl_match_the_symmetry_module_in_the_reference_setting():
    structure = _p21c()
    marks = _marks(structure)
    assert marks.space_group == 14
    within = {tuple(h) for h in marks.absent_hkl if np.abs(h).max() <= 6}
    lattice = structure.lattice.reciprocal_lattice_crystallographic
    in_range = {h for h in absences(14) if lattice.get_cartesian_coords(h) @ lattice.get_cartesian_coords(h)
                <= (2 * np.sin(np.radians(RANGE[1] / 2)) / WAVELENGTH) ** 2}
    assert within == in_range and (0, 1, 0) in within and (1, 0, 1) in within
    # every peak the simulator computes sits at an allowed position, none at an absent one
    peaks = PowderSimulator(device="cpu").peaks(structure).two_theta
    allowed_mask = at.window_mask(peaks, marks.allowed, 1e-3)
    assert allowed_mask.all()
    assert not at.window_mask(peaks, marks.absent, 1e-3).any()


def test_positions_do_not_depend_on_the_setting():
    """The same crystal with its axes relabelled (c, a, b) has the same allowed and absent positions."""
    structure = _p21c()
    a, b, c = structure.lattice.abc
    alpha, beta, gamma = structure.lattice.angles
    relabelled = Structure(Lattice.from_parameters(c, a, b, gamma, alpha, beta), structure.species,
                           structure.frac_coords[:, [2, 0, 1]])
    one, other = _marks(structure), _marks(relabelled)
    assert other.space_group == 14 and len(one.absent) > 0
    np.testing.assert_allclose(one.allowed, other.allowed, atol=1e-3)
    np.testing.assert_allclose(one.absent, other.absent, atol=1e-3)


def test_in_model_space_keeps_the_logits_and_scales_the_input():
    torch.manual_seed(0)
    model = ResNet1d(99, intensity="log").eval()
    patterns = np.random.default_rng(0).random((3, 256)).astype(np.float32) ** 4
    bare, scaled = at.in_model_space(model, patterns)
    with torch.no_grad():
        before = model(torch.from_numpy(patterns)[:, None])
        after = bare(torch.from_numpy(scaled)[:, None])
    torch.testing.assert_close(before, after)
    assert bare.config.intensity == "linear" and model.config.intensity == "log"  # the model is left as it was
    assert np.all(np.diff(scaled[0][np.argsort(patterns[0])]) >= 0)  # a monotone rescaling
    linear = ResNet1d(99)
    assert at.in_model_space(linear, patterns)[0] is linear


class _ReadsOnePosition(nn.Module):
    """Extinction-group logits: group 1's logit is 30 times the intensity at grid point ``index``; the
    others are 0. So a peak there takes probability from every other group."""

    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def forward(self, x):
        logits = torch.zeros(len(x), 99, dtype=x.dtype)
        logits[:, 0] = 30 * x[:, 0, self.index]
        return logits


def test_insertion_drop_finds_the_position_a_model_reads():
    two_theta = np.linspace(10, 80, 701)
    pattern = np.exp(-0.5 * ((two_theta - 30) / 0.05) ** 2)[None]
    model = _ReadsOnePosition(int(np.argmin(np.abs(two_theta - 40))))
    group = np.array([2])
    at_read = at.insertion_drop(model, pattern, group, [40.0], two_theta=two_theta, fwhm=0.1, height=0.5)
    elsewhere = at.insertion_drop(model, pattern, group, [60.0], two_theta=two_theta, fwhm=0.1, height=0.5)
    assert at_read[0] > 1.0 and abs(elsewhere[0]) < 1e-6


def test_insertion_positions_avoid_the_reflections():
    two_theta = np.linspace(10, 80, 701)
    marks = at.ReflectionMarks(space_group=14, allowed=np.array([30.0, 50.0]), absent=np.array([30.05, 40.0]),
                               absent_hkl=np.zeros((2, 3), int))
    rng = np.random.default_rng(0)
    for _ in range(20):
        absent, random = at.insertion_positions(marks, two_theta, 0.2, rng)
        assert absent == 40.0  # 30.05 lies under an allowed reflection
        assert min(abs(random - p) for p in (30.0, 50.0, 30.05, 40.0)) > 0.4
    assert at.insertion_positions(dataclasses.replace(marks, absent=np.array([30.05])), two_theta, 0.2, rng) is None


@pytest.mark.parametrize("name, space_group, expected", [
    ("NaCl", 225, {"F - - - (cubic)": 1.0}),
    ("diamond", 227, {"F d - - (cubic)": 1.0}),
    ("alpha-quartz", 154, {"P 31 - - (hexagonal)": 0.5, "P 62 - - (hexagonal)": 0.5}),  # an ITA split
])
def test_the_oracle_reads_known_structures(name, space_group, expected):
    from xtal_utils.diffraction import PowderSimulator
    from xtal_utils.symmetry import extinction_group_name

    structure = {
        "NaCl": lambda: Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "diamond": lambda: Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]]),
        "alpha-quartz": lambda: Structure.from_spacegroup(154, Lattice.hexagonal(4.913, 5.405), ["Si", "O"],
                                                          [[0.4697, 0, 0], [0.4135, 0.2669, 0.1191]]),
    }[name]()
    for fwhm, floor in ((0.1, 1e-3), (1e-4, 0.0)):  # the study's grid, and perfect data
        simulator = PowderSimulator(two_theta_range=(5, 90), n_points=1024, fwhm=fwhm)
        credit = at.extinction_oracle(structure, space_group, simulator, floor=floor)
        assert {extinction_group_name(int(g) + 1): c for g, c in enumerate(credit) if c} == pytest.approx(expected)


def test_the_oracle_is_right_for_nearly_every_random_crystal_on_perfect_data():
    """No width and no floor: only the ITA splits (one half) and reflections that special positions make
    vanish keep the oracle from the true group."""
    from xtal_utils import crystals
    from xtal_utils.diffraction import PowderSimulator
    from xtal_utils.symmetry import extinction_group

    batch = crystals.sample_crystals(40, seed=5)
    simulator = PowderSimulator(two_theta_range=(5, 90), n_points=1024, fwhm=1e-4)
    credit = [at.extinction_oracle(s, int(g), simulator, floor=0.0)[extinction_group(int(g)) - 1]
              for s, g in zip(batch.to_structures(), batch.space_group)]
    assert np.mean(credit) >= 0.9
