"""xtal_utils.diffraction against pymatgen's XRDCalculator / NDCalculator, and its own promises."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import spglib
import torch
from pymatgen.analysis.diffraction.neutron import NDCalculator
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Lattice, Structure

from xtal_utils.diffraction import Augmentation, PowderSimulator, simulator
from xtal_utils.diffraction.augment import cell_strain_factors
from xtal_utils.diffraction.laue import (
    HEXAGONAL_GROUPS,
    PERMUTATION_GROUPS,
    laue_sign_flips,
    laue_symmetry,
    no_symmetry,
)
from xtal_utils.diffraction.structure_factors import centric_halves
from xtal_utils.structures import StructureBatch

WAVELENGTH = 1.5406
RANGE = (5.0, 90.0)
FWHM = 0.1


def _structures() -> dict[str, Structure]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rng = np.random.default_rng(7)
        triclinic = Structure(Lattice.from_parameters(5.1, 6.3, 7.2, 82, 95, 103),
                              ["K", "Al", "Si", "Si", "O", "O", "O", "O", "O"], rng.random((9, 3)))
        return {
            "NaCl": Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
            "rutile": Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"],
                                                [[0, 0, 0], [0.3053, 0.3053, 0]]),
            "quartz": Structure.from_spacegroup(154, Lattice.hexagonal(4.913, 5.405), ["Si", "O"],
                                                [[0.4697, 0, 0], [0.4135, 0.2669, 0.1191]]),
            "Cu3Au_disordered": Structure(Lattice.cubic(3.75), [{"Cu": 0.75, "Au": 0.25}] * 4,
                                          [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]),
            "triclinic": triclinic,
            "pyrite": Structure.from_spacegroup("Pa-3", Lattice.cubic(5.417), ["Fe", "S"],  # cyclic axes only
                                                [[0, 0, 0], [0.385, 0.385, 0.385]]),
            "Mg": Structure.from_spacegroup("P6_3/mmc", Lattice.hexagonal(3.209, 5.211), ["Mg"],  # 6/mmm
                                            [[1 / 3, 2 / 3, 0.25]]),
            "ilmenite": Structure.from_spacegroup("R-3", Lattice.hexagonal(5.088, 14.08), ["Fe", "Ti", "O"],  # -3
                                                  [[0, 0, 0.3554], [0, 0, 0.1464], [0.317, 0.020, 0.2464]]),
        }


STRUCTURES = _structures()


def broadened(grid, two_theta, intensity, fwhm=FWHM):
    """pymatgen's peaks under an exact Gaussian on the grid, scaled to a maximum of 1."""
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    y = (np.asarray(intensity)[:, None] * np.exp(-0.5 * ((grid[None, :] - np.asarray(two_theta)[:, None]) / sigma) ** 2))
    y = y.sum(axis=0)
    return y / y.max()


def cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def reference(radiation, structure, two_theta_range=RANGE, **kwargs):
    calc = (XRDCalculator(wavelength=WAVELENGTH, **kwargs) if radiation == "xray"
            else NDCalculator(wavelength=WAVELENGTH, **kwargs))
    return calc.get_pattern(structure, two_theta_range=two_theta_range)


@pytest.mark.parametrize("radiation", ["xray", "neutron"])
@pytest.mark.parametrize("name", list(STRUCTURES))
def test_peaks_match_pymatgen(radiation, name):
    structure = STRUCTURES[name]
    ours = PowderSimulator(radiation, WAVELENGTH, RANGE).peaks(structure)
    ref = reference(radiation, structure)
    assert len(ours) == len(ref.x)
    np.testing.assert_allclose(ours.two_theta, ref.x, atol=1e-6)
    np.testing.assert_allclose(ours.intensity, ref.y, atol=1e-3)
    np.testing.assert_allclose(ours.d_spacing, ref.d_hkls, rtol=1e-9)
    multiplicity = [sum(f["multiplicity"] for f in families) for families in ref.hkls]
    np.testing.assert_array_equal(ours.multiplicity, multiplicity)


def test_peaks_of_rock_salt():
    """NaCl: (111) at Bragg's angle with multiplicity 8, (200) the strongest with multiplicity 6."""
    peaks = PowderSimulator("xray", WAVELENGTH, RANGE).peaks(STRUCTURES["NaCl"])
    frame = peaks.to_frame()
    first = frame.iloc[0]
    assert (abs(first.h), abs(first.k), abs(first.l)) == (1, 1, 1) and first.multiplicity == 8
    assert first.two_theta == pytest.approx(2 * math.degrees(math.asin(WAVELENGTH * math.sqrt(3) / (2 * 5.64))))
    strongest = frame.loc[frame.intensity.idxmax()]
    assert sorted(abs(strongest[["h", "k", "l"]].to_numpy())) == [0, 0, 2] and strongest.multiplicity == 6
    assert frame.intensity.max() == pytest.approx(100)


@pytest.mark.parametrize("radiation", ["xray", "neutron"])
def test_debye_waller_factors_match_pymatgen(radiation):
    dw = {"Ti": 0.6, "O": 1.1}
    structure = STRUCTURES["rutile"]
    ours = PowderSimulator(radiation, WAVELENGTH, RANGE).peaks(structure, debye_waller_factors=dw)
    ref = reference(radiation, structure, debye_waller_factors=dw)
    np.testing.assert_allclose(ours.intensity, ref.y, atol=1e-3)
    plain = PowderSimulator(radiation, WAVELENGTH, RANGE).peaks(structure)
    assert not np.allclose(plain.intensity, ours.intensity, atol=0.1)  # the factor does something
    # the same B given per site through a StructureBatch
    batch = StructureBatch.from_structures([structure])
    batch.b_iso[0, : len(structure)] = [dw[site.specie.symbol] for site in structure]
    sim = PowderSimulator(radiation, WAVELENGTH, RANGE, fwhm=FWHM, device="cpu")
    np.testing.assert_allclose(sim.simulate(batch), sim.simulate([structure], debye_waller_factors=dw), atol=1e-6)


@pytest.mark.parametrize("radiation", ["xray", "neutron"])
def test_simulate_matches_broadened_pymatgen(radiation):
    sim = PowderSimulator(radiation, WAVELENGTH, RANGE, n_points=4096, fwhm=FWHM, device="cpu")
    patterns = sim.simulate(list(STRUCTURES.values()))
    assert patterns.shape == (len(STRUCTURES), 4096) and patterns.dtype == np.float32
    np.testing.assert_allclose(patterns.max(axis=1), 1.0)
    for row, structure in zip(patterns, STRUCTURES.values()):
        ref = reference(radiation, structure, two_theta_range=(RANGE[0] - 1, RANGE[1] + 1))
        assert cosine(row.astype(float), broadened(sim.two_theta, ref.x, ref.y)) >= 0.999


def test_batch_and_list_inputs_agree():
    sim = PowderSimulator(device="cpu")
    structures = list(STRUCTURES.values())
    np.testing.assert_array_equal(sim.simulate(structures), sim.simulate(StructureBatch.from_structures(structures)))
    tensor = sim.simulate(structures, as_tensor=True)
    assert torch.is_tensor(tensor) and tensor.shape == (len(structures), sim.n_points)


def _isolated_fwhm(pattern, grid, near):
    """FWHM in degrees of the peak closest to ``near``, from the half-maximum crossings."""
    window = np.abs(grid - near) < 1.5
    x, y = grid[window], pattern[window]
    top = int(np.argmax(y))
    half = y[top] / 2
    left = np.interp(half, y[: top + 1], x[: top + 1])
    right = np.interp(-half, -y[top:], x[top:])
    return right - left, x[top]


@pytest.mark.parametrize("profile", ["gaussian", "pseudo_voigt"])
def test_constant_width(profile):
    sim = PowderSimulator(two_theta_range=RANGE, n_points=8192, profile=profile, fwhm=0.15, device="cpu")
    pattern = sim.simulate([STRUCTURES["NaCl"]])[0]
    peak = sim.peaks(STRUCTURES["NaCl"]).two_theta[1]  # (200)
    width, centre = _isolated_fwhm(pattern, sim.two_theta, peak)
    assert width == pytest.approx(0.15, rel=0.03)
    assert centre == pytest.approx(peak, abs=sim.step)


def test_caglioti_and_scherrer_widths():
    """Widths that grow with 2-theta, measured on well separated NaCl peaks."""
    structure = STRUCTURES["NaCl"]
    U, V, W = 0.02, -0.01, 0.01
    size = 20.0  # nm
    cag = PowderSimulator(two_theta_range=RANGE, n_points=8192, caglioti=(U, V, W), device="cpu")
    sch = PowderSimulator(two_theta_range=RANGE, n_points=8192, fwhm=0.05, crystallite_size=size, device="cpu")
    cag_pattern, sch_pattern = cag.simulate([structure])[0], sch.simulate([structure])[0]
    for peak in cag.peaks(structure).two_theta[[0, 1, 2, 5]]:
        theta = math.radians(peak / 2)
        width, _ = _isolated_fwhm(cag_pattern, cag.two_theta, peak)
        assert width == pytest.approx(math.sqrt(U * math.tan(theta) ** 2 + V * math.tan(theta) + W), rel=0.03)
        width, _ = _isolated_fwhm(sch_pattern, sch.two_theta, peak)
        scherrer = math.degrees(0.9 * WAVELENGTH / (size * 10 * math.cos(theta)))
        assert width == pytest.approx(math.hypot(0.05, scherrer), rel=0.03)


def test_chunked_batch_is_identical():
    """A batch in one pass and the same batch one structure per pass give the same patterns."""
    structures = list(STRUCTURES.values()) * 3
    big = PowderSimulator(device="cpu")
    small = PowderSimulator(device="cpu", max_batch_bytes=1)  # one structure per pass
    assert len(small._passes(StructureBatch.from_structures(structures), 1.0, 4096)) == len(structures)
    np.testing.assert_array_equal(big.simulate(structures), small.simulate(structures))
    # With augmentations the random draws are the same; transcendental functions may round the last
    # bit differently in SIMD and scalar code, so a float32 tolerance (and no Poisson sampling, which
    # would turn such a bit into a count) is used here.
    aug = Augmentation(fwhm_scale=(0.8, 1.5), crystallite_size=(20, 200), strain=0.01, zero_shift=0.05,
                       march_dollase=(0.7, 1.3), background=0.1, gaussian_noise=0.01, intensity_scale=(0.5, 1.0))
    np.testing.assert_allclose(big.simulate(structures, aug, seed=3), small.simulate(structures, aug, seed=3),
                               rtol=0, atol=1e-5)


def test_augmentations_are_seeded_and_off_by_default():
    sim = PowderSimulator(device="cpu")
    structures = list(STRUCTURES.values())
    clean = sim.simulate(structures)
    np.testing.assert_array_equal(clean, sim.simulate(structures, None, seed=5))
    np.testing.assert_array_equal(clean, sim.simulate(structures, Augmentation(), seed=5))
    everything = Augmentation(fwhm_scale=(0.8, 1.5), strain=0.01, zero_shift=0.05, march_dollase=(0.7, 1.3),
                              background=0.2, poisson_counts=(1e3, 1e4), gaussian_noise=0.01,
                              intensity_scale=(0.5, 1.0))
    a, b = sim.simulate(structures, everything, seed=1), sim.simulate(structures, everything, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, sim.simulate(structures, everything, seed=2))
    gen = torch.Generator().manual_seed(1)
    np.testing.assert_array_equal(a, sim.simulate(structures, everything, generator=gen))
    for one in (Augmentation(fwhm_scale=(1.5, 2.0)), Augmentation(crystallite_size=(10, 20)),
                Augmentation(strain=0.02), Augmentation(zero_shift=0.2), Augmentation(march_dollase=(0.5, 0.6)),
                Augmentation(background=0.3), Augmentation(poisson_counts=(100, 200)),
                Augmentation(gaussian_noise=0.02), Augmentation(intensity_scale=(0.3, 0.5)),
                Augmentation(noise_level=(0.01, 0.02))):
        changed = sim.simulate(structures, one, seed=0)
        assert changed.shape == clean.shape and np.isfinite(changed).all()
        assert np.abs(changed - clean).max() > 1e-3, one


def test_coverage_keeps_one_window_of_the_grid():
    """coverage cuts each pattern to a window of the drawn share of the grid, scaled to a maximum of 1;
    it is drawn after every other effect, so the other draws do not change when it is switched on."""
    sim = PowderSimulator(device="cpu")
    structures = list(STRUCTURES.values()) * 4
    plain = Augmentation(fwhm_scale=(0.8, 1.5), zero_shift=0.05)
    cut = dataclasses.replace(plain, coverage=(0.3, 0.6))
    draws = cut.draw(len(structures), torch.Generator().manual_seed(4), "cpu")
    before = plain.draw(len(structures), torch.Generator().manual_seed(4), "cpu")
    for key, value in before.items():
        torch.testing.assert_close(draws[key], value)
    full, windowed = sim.simulate(structures, plain, seed=4), sim.simulate(structures, cut, seed=4)
    for row, whole, start, width in zip(windowed, full, draws["coverage_start"], draws["coverage_width"]):
        position = np.linspace(0, 1, sim.n_points)
        inside = (position >= float(start)) & (position <= float(start + width))
        assert 0.3 <= inside.mean() <= 0.6 + 1e-3 and (row[~inside] == 0).all()
        assert row.max() == pytest.approx(1.0)
        kept = whole[inside] - whole[inside].min()
        np.testing.assert_allclose(row[inside], kept / kept.max(), atol=1e-5)  # the same pattern, cut


def test_noise_level_adds_baseline_noise_of_the_drawn_size():
    """noise_level adds Gaussian noise of a per-pattern standard deviation drawn log-uniformly in its
    range, then subtracts each pattern's minimum (as prepare does to a measured pattern); it is drawn
    last, so the other draws do not change when it is switched on."""
    sim = PowderSimulator(device="cpu", n_points=8192)
    structures = list(STRUCTURES.values()) * 4
    plain = Augmentation(fwhm_scale=(0.8, 1.5), zero_shift=0.05, coverage=(0.5, 1.0))
    noisy = dataclasses.replace(plain, noise_level=(0.002, 0.05))
    draws = noisy.draw(len(structures), torch.Generator().manual_seed(4), "cpu")
    before = plain.draw(len(structures), torch.Generator().manual_seed(4), "cpu")
    for key, value in before.items():
        torch.testing.assert_close(draws[key], value)
    assert ((draws["noise_level"] >= 0.002) & (draws["noise_level"] <= 0.05)).all()
    assert np.isfinite(sim.simulate(structures, noisy, seed=4)).all()
    # Without coverage: the noise between peaks has the drawn size, once the pattern (whose maximum
    # the noise raised by a few sigma) is scaled back to a maximum of 1.
    plain, noisy = Augmentation(), Augmentation(noise_level=(0.002, 0.05))
    levels = noisy.draw(len(structures), torch.Generator().manual_seed(4), "cpu")["noise_level"].numpy()
    clean, rows = sim.simulate(structures, plain, seed=4), sim.simulate(structures, noisy, seed=4)
    for row, whole, level in zip(rows, clean, levels):
        assert row.min() == pytest.approx(0.0, abs=1e-6) and row.max() == pytest.approx(1.0)
        between_peaks = whole < 1e-6
        assert between_peaks.sum() > 1000
        assert level / (1 + 12 * level) <= np.std(row[between_peaks]) <= 1.05 * level


def test_zero_shift_and_strain_move_peaks():
    sim = PowderSimulator(two_theta_range=RANGE, n_points=8192, device="cpu")
    structure = [STRUCTURES["NaCl"]]
    peak = sim.peaks(STRUCTURES["NaCl"]).two_theta[1]
    _, base = _isolated_fwhm(sim.simulate(structure)[0], sim.two_theta, peak)
    shifted = sim.simulate(structure, Augmentation(zero_shift=0.3), seed=0)
    shift = float(Augmentation(zero_shift=0.3).draw(1, torch.Generator().manual_seed(0), "cpu")["zero_shift"][0])
    _, moved = _isolated_fwhm(shifted[0], sim.two_theta, peak)
    assert moved - base == pytest.approx(shift, abs=2 * sim.step)
    strained = sim.simulate(structure, Augmentation(strain=0.01), seed=0)
    e = float(Augmentation(strain=0.01).draw(1, torch.Generator().manual_seed(0), "cpu")["strain"][0])
    d = WAVELENGTH / (2 * math.sin(math.radians(peak / 2))) * (1 + e)
    _, moved = _isolated_fwhm(strained[0], sim.two_theta, peak)
    assert moved == pytest.approx(2 * math.degrees(math.asin(WAVELENGTH / (2 * d))), abs=2 * sim.step)


def test_bad_input_names_the_structure():
    nacl = STRUCTURES["NaCl"]
    empty = Structure(Lattice.cubic(4.0), [], [])
    with pytest.raises(ValueError, match=r"structure 1 \(empty\): has no sites"):
        PowderSimulator(device="cpu").simulate([nacl, empty])
    polonium = Structure(Lattice.cubic(3.35), ["Po"], [[0, 0, 0]])
    with pytest.raises(ValueError, match=r"structure 1 \(Po\): element Po has no neutron scattering length"):
        PowderSimulator("neutron", device="cpu").simulate([nacl, polonium])
    einsteinium = Structure(Lattice.cubic(3.35), ["Es"], [[0, 0, 0]])
    with pytest.raises(ValueError, match=r"structure 0 \(Es\): element Es has no X-ray form factor"):
        PowderSimulator(device="cpu").peaks(einsteinium)
    with pytest.raises(ValueError, match=r"structure 0 \(NaCl\): no reflection"):
        PowderSimulator(wavelength=50.0, device="cpu").simulate([nacl])
    with pytest.raises(ValueError, match=r"structure 0 \(NaCl\): no reflection"):
        PowderSimulator(wavelength=12.0, device="cpu").peaks(nacl)
    with pytest.raises(ValueError, match="radiation"):
        PowderSimulator("electron")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_cuda_matches_cpu():
    structures = list(STRUCTURES.values())
    cpu = PowderSimulator(device="cpu").simulate(structures)
    gpu = PowderSimulator(device="cuda").simulate(structures, as_tensor=True)
    assert gpu.device.type == "cuda"
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu, atol=2e-4)
    aug = Augmentation(fwhm_scale=(0.8, 1.5), crystallite_size=(20, 200), march_dollase=(0.7, 1.3), background=0.1,
                       poisson_counts=(1e3, 1e4))
    assert torch.isfinite(PowderSimulator(device="cuda").simulate(structures, aug, seed=0, as_tensor=True)).all()


def _monoclinic(unique_axis: str = "b") -> Structure:
    """A P2_1/c cell, with its two-fold axis along b (the standard setting) or relabelled to c."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structure = Structure.from_spacegroup(14, Lattice.monoclinic(5.2, 6.1, 7.3, 104.0), ["Fe", "P", "O"],
                                              [[0.12, 0.31, 0.27], [0.41, 0.08, 0.19], [0.23, 0.44, 0.06]])
    if unique_axis == "c":  # a, b, c -> c, a, b: the same crystal, unique axis now the cell's third
        lattice = structure.lattice.matrix[[2, 0, 1]]
        structure = Structure(Lattice(lattice), structure.species, structure.frac_coords[:, [2, 0, 1]])
    return structure


def test_laue_sign_flips_in_the_cells_own_setting():
    rutile, quartz, nacl = STRUCTURES["rutile"], STRUCTURES["quartz"], STRUCTURES["NaCl"]
    shaken = _monoclinic().copy()
    shaken.translate_sites([0], [0.01, 0.0, 0.0])  # breaks the two-fold axis and the mirror
    structures = [nacl, rutile, quartz, STRUCTURES["triclinic"], _monoclinic("b"), _monoclinic("c"), shaken,
                  STRUCTURES["Cu3Au_disordered"]]
    flips = laue_sign_flips(StructureBatch.from_structures(structures))
    expected = [[1, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0], [1, 1, 1]]
    np.testing.assert_array_equal(flips, np.array(expected, dtype=bool))
    # the same answer when remembered, and for a batch with different padding
    reversed_batch = StructureBatch.from_structures(structures[::-1])
    np.testing.assert_array_equal(laue_sign_flips(reversed_batch), flips[::-1])


def _relabelled(structure: Structure, order) -> Structure:
    """The same crystal with its cell axes taken in ``order``."""
    return Structure(Lattice(structure.lattice.matrix[list(order)]), structure.species,
                     structure.frac_coords[:, list(order)])


def test_laue_symmetry_finds_axis_permutations_hexagonal_groups_and_centres():
    structures = {name: STRUCTURES[name] for name in ("NaCl", "rutile", "quartz", "pyrite", "triclinic", "Mg",
                                                      "ilmenite")}
    structures["rutile, c first"] = _relabelled(STRUCTURES["rutile"], (2, 0, 1))  # the four-fold axis is a
    structures["P2_1/c"] = _monoclinic("b")
    batch = StructureBatch.from_structures(list(structures.values()))
    _, permutations, centres, hexagonal = laue_symmetry(batch)
    names = [PERMUTATION_GROUPS[code] for code in permutations]
    assert names == ["all", "swap01", "none", "cyclic", "none", "none", "none", "swap12", "none"]
    assert [HEXAGONAL_GROUPS[code] for code in hexagonal] == ["none", "none", "-3m1", "none", "none", "6/mmm", "-3",
                                                                "none", "none"]
    # quartz (P3_221) and the random triclinic cell have no centre of symmetry; the others map onto
    # themselves through theirs
    assert np.isnan(centres).any(axis=1).tolist() == [False, False, True, False, True, False, False, False, False]
    for structure, centre in zip(structures.values(), centres):
        if np.isnan(centre).any():
            continue
        inverted = Structure(structure.lattice, structure.species, 2 * centre - structure.frac_coords)
        assert _same_sites(structure, inverted)


def _same_sites(a: Structure, b: Structure) -> bool:
    """Whether two structures in the same cell have the same sites (species and positions modulo 1)."""
    for site in a:
        delta = b.frac_coords - site.frac_coords
        delta -= np.round(delta)
        near = np.linalg.norm(delta @ a.lattice.matrix, axis=1) < 1e-4
        if not any(b[j].species == site.species for j in np.flatnonzero(near)):
            return False
    return len(a) == len(b)


def test_centric_halves_keep_one_of_each_pair():
    # a centre at (1/4, 1/4, 1/4): atoms at c + x and c - x pair up, the atom at c is its own mate
    x = np.array([[0.1, 0.2, 0.3], [0.0, 0.3, 0.1]])
    centre = np.array([[0.25, 0.25, 0.25]])
    coords = np.concatenate([0.25 + x, 0.25 - x, centre]) % 1.0
    keep, factor, centric, moved = centric_halves(np.zeros(5, dtype=int), coords, centre, np.array([5]))
    assert centric.tolist() == [True]
    assert keep.tolist() == [True, True, False, False, True] and factor[keep].tolist() == [2, 2, 1]
    np.testing.assert_allclose(moved[keep], [*x, [0, 0, 0]], atol=1e-12)
    # atoms that do not pair up about the centre leave the structure whole
    keep, factor, centric, moved = centric_halves(np.zeros(2, dtype=int), 0.25 + x, centre, np.array([2]))
    assert centric.tolist() == [False] and keep.all() and (factor == 1).all()
    np.testing.assert_allclose(moved, 0.25 + x)


@pytest.mark.parametrize("radiation", ["xray", "neutron"])
def test_laue_reduction_changes_nothing(radiation, monkeypatch):
    """Patterns from one reflection per Laue orbit (sign changes, axis permutations, hexagonal groups)
    and from centric halves of the atoms equal those from every atom and every hkl of the half-sphere."""
    structures = list(STRUCTURES.values()) + [_monoclinic("b"), _monoclinic("c")]
    sim = PowderSimulator(radiation, WAVELENGTH, RANGE, fwhm=FWHM, device="cpu")
    aug = Augmentation(fwhm_scale=(0.8, 1.5), crystallite_size=(20, 200), strain=0.01, zero_shift=0.05,
                       march_dollase=(0.7, 1.3))
    reduced = sim.simulate(structures), sim.simulate(structures, aug, seed=2)
    monkeypatch.setattr(simulator, "laue_symmetry", no_symmetry)
    full = sim.simulate(structures), sim.simulate(structures, aug, seed=2)
    for a, b in zip(reduced, full):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-6)


def test_precomputed_symmetry_is_used_instead_of_detection(monkeypatch):
    """symmetry=laue_symmetry(batch) gives the default patterns bit for bit, no_symmetry the same within
    float32 summation order, and a given symmetry skips the detection; a malformed one is refused."""
    batch = StructureBatch.from_structures(list(STRUCTURES.values()) + [_monoclinic("b"), _monoclinic("c")])
    sim = PowderSimulator(device="cpu")
    aug = Augmentation(fwhm_scale=(0.8, 1.5), strain=0.01, zero_shift=0.05, march_dollase=(0.7, 1.3))
    default = sim.simulate(batch), sim.simulate(batch, aug, seed=4)
    symmetry = laue_symmetry(batch)

    def no_detection(batch):
        raise AssertionError("laue_symmetry called although a symmetry was given")

    monkeypatch.setattr(simulator, "laue_symmetry", no_detection)
    given = sim.simulate(batch, symmetry=symmetry), sim.simulate(batch, aug, seed=4, symmetry=symmetry)
    unreduced = (sim.simulate(batch, symmetry=no_symmetry(batch)),
                 sim.simulate(batch, aug, seed=4, symmetry=no_symmetry(batch)))
    for a, b, c in zip(default, given, unreduced):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=0, atol=1e-5)
        np.testing.assert_allclose(c.max(axis=1), 1.0)

    flips, permutations, centres, hexagonal = symmetry
    with pytest.raises(ValueError, match="flips, permutations, centres, hexagonal"):
        sim.simulate(batch, symmetry=(flips, permutations, centres))
    with pytest.raises(ValueError, match=r"permutations must have shape \(10,\)"):
        sim.simulate(batch, symmetry=(flips, permutations[:-1], centres, hexagonal))
    with pytest.raises(ValueError, match=r"centres must have shape \(10, 3\)"):
        sim.simulate(batch, symmetry=(flips, permutations, centres[:, :2], hexagonal))
    with pytest.raises(ValueError, match="flips must be bool"):
        sim.simulate(batch, symmetry=(flips.astype(int), permutations, centres, hexagonal))
    with pytest.raises(ValueError, match="hexagonal must lie in"):
        sim.simulate(batch, symmetry=(flips, permutations, centres, hexagonal + 9))


def test_cell_strain_scales_each_edge_and_keeps_the_symmetry():
    """The pattern with a drawn cell strain is the clean pattern of the cell with those edges; edges
    that symmetry ties (rutile's a = b) change together, and spglib finds the same space group."""
    sim = PowderSimulator(two_theta_range=RANGE, n_points=4096, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen: "Pmcn" has no full symbol
        aragonite = Structure.from_spacegroup("Pmcn", Lattice.orthorhombic(4.96, 7.97, 5.74), ["Ca", "C", "O", "O"],
                                              [[0.25, 0.415, 0.76], [0.25, 0.76, -0.085], [0.25, 0.92, -0.095],
                                               [0.473, 0.681, -0.087]])
    aug = Augmentation(cell_strain=0.05)
    for name, structure in (("aragonite", aragonite), ("rutile", STRUCTURES["rutile"]),
                            ("quartz", STRUCTURES["quartz"]), ("triclinic", STRUCTURES["triclinic"])):
        e = aug.draw(1, torch.Generator().manual_seed(3), "cpu")["cell_strain"].numpy()
        factors = cell_strain_factors(structure.lattice.matrix[None], e)[0]
        lattice = Lattice(structure.lattice.matrix * factors[:, None])
        assert lattice.angles == pytest.approx(structure.lattice.angles)
        strained = Structure(lattice, structure.species_and_occu, structure.frac_coords)
        np.testing.assert_allclose(sim.simulate([structure], aug, seed=3)[0], sim.simulate([strained])[0], atol=1e-4)
        a, b, _ = factors
        assert (a == b) == (name in ("rutile", "quartz")), name
        assert np.abs(factors - 1).max() > 0.01, name  # the cell did change
        cells = [(s.lattice.matrix, s.frac_coords, [site.specie.Z for site in s]) for s in (structure, strained)
                 if name != "triclinic"]
        numbers = {spglib.get_symmetry_dataset(cell, symprec=1e-3).number for cell in cells}
        assert len(numbers) <= 1, (name, numbers)
