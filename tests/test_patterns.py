"""Reading measured pattern files, and the clear errors on bad ones."""

import numpy as np
import pytest

from xtal_utils.paths import DATA
from xtal_utils.patterns import (MIN_PEAK_SNR, PatternFileError, peak_to_noise, read_pattern, resample, sniff_format,
                                 to_d_spacing, to_two_theta)


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def _columns(n=200, start=10.0, stop=80.0, sigma=False, sep=" "):
    tt = np.linspace(start, stop, n)
    y = 10 + 100 * np.exp(-0.5 * ((tt - 30) / 0.2) ** 2)
    rows = [sep.join(f"{v:.5f}" for v in ((a, b, np.sqrt(b)) if sigma else (a, b))) for a, b in zip(tt, y)]
    return "\n".join(rows) + "\n", tt, y


@pytest.mark.parametrize("name,sep,sigma", [("a.xy", " ", False), ("a.xye", "\t", True),
                                             ("a.csv", ",", False), ("a.dat", "  ", True)])
def test_reads_two_and_three_columns_with_headers(tmp_path, name, sep, sigma):
    body, tt, y = _columns(sigma=sigma, sep=sep)
    path = _write(tmp_path, name, "# measured on a lab diffractometer\ntwo_theta,intensity\n" + body)
    two_theta, intensity = read_pattern(path)
    np.testing.assert_allclose(two_theta, tt, atol=1e-5)
    np.testing.assert_allclose(intensity, y, atol=1e-4)


@pytest.mark.parametrize("text,problem", [
    ("10 5\n11 nan\n" + "".join(f"{12 + i} 1\n" for i in range(60)), "NaN"),
    ("".join(f"{10 + i} 1 2 3\n" for i in range(60)), "expected 2 or 3 columns"),
    ("".join(f"{10 + i}\n" for i in range(60)), "expected 2 or 3 columns"),
    ("".join(f"{10 + (i % 30)} {i}\n" for i in range(60)), "not strictly increasing"),
    ("".join(f"{10 + i} {i}\n" for i in range(10)), "only 10 points"),
    ("just some words\nno numbers here\n", "no numeric rows"),
    ("".join(f"{10 + i} 7\n" for i in range(60)), "constant"),
    ("".join(f"{10 + i} {i}\n" for i in range(30)) + "".join(f"{40 + i} {i} 1\n" for i in range(30)),
     "different numbers of columns"),
    ("".join(f"{200 + i} {i}\n" for i in range(60)), "within (0, 180)"),
])
def test_bad_files_name_the_file_and_problem(tmp_path, text, problem):
    path = _write(tmp_path, "bad.xy", text)
    with pytest.raises(PatternFileError) as error:
        read_pattern(path)
    message = str(error.value)
    assert str(path) in message and problem in message and "\n" not in message


def test_missing_file(tmp_path):
    with pytest.raises(PatternFileError, match="no such file"):
        read_pattern(tmp_path / "nope.xy")


def test_wavelength_conversion_through_d_spacing():
    # a peak at d = 2.0 A: Cu K-alpha 1 gives 45.31 deg, Mo K-alpha (0.7107 A) gives 20.47 deg
    d = 2.0
    cu, mo = to_two_theta(d, 1.5406), to_two_theta(d, 0.7107)
    assert cu == pytest.approx(45.31, abs=0.01) and mo == pytest.approx(20.47, abs=0.01)
    assert to_d_spacing(cu, 1.5406) == pytest.approx(d)
    grid = np.linspace(5, 90, 4096)
    tt = np.linspace(2, 45, 3000)
    y = np.exp(-0.5 * ((tt - mo) / 0.05) ** 2)
    out = resample(tt, y, grid, wavelength=0.7107, grid_wavelength=1.5406)
    assert out.max() == 1.0 and abs(grid[out.argmax()] - cu) < 0.05


def test_range_that_misses_the_grid(tmp_path):
    grid = np.linspace(5, 90, 1024)
    tt = np.linspace(100, 140, 500)
    with pytest.raises(PatternFileError, match="covers 0% of the model's grid"):
        resample(tt, np.random.default_rng(0).random(500), grid, wavelength=1.5406, grid_wavelength=1.5406,
                 source="far.xy")


def test_signal_only_outside_the_grid(tmp_path):
    # a peak at 95 deg, beyond a 5-90 deg grid, on a flat floor: the grid part is constant
    grid = np.linspace(5, 90, 1024)
    tt = np.linspace(20, 100, 2000)
    y = np.exp(-0.5 * ((tt - 95) / 0.2) ** 2)
    with pytest.raises(PatternFileError, match="no signal"):
        resample(tt, y, grid, wavelength=1.5406, grid_wavelength=1.5406, source="outside.xy")


# Instrument formats: FullProf's D1A/D2B and free formats and GSAS STD through CrysFML, GSAS FXYE here.

NEUTRON = DATA / "neutron_measured"


def test_fullprof_d1a_file_through_crysfml_equals_the_converted_xye():
    two_theta, intensity = read_pattern(NEUTRON / "instrument_files" / "pbso4.dat")
    xye = np.loadtxt(NEUTRON / "pbso4_d1a_ill.xye")  # the same counts, cut to 10-154 degrees
    assert sniff_format((NEUTRON / "instrument_files" / "pbso4.dat").read_text().splitlines()) == "d1a"
    assert two_theta[0] == pytest.approx(10.0) and two_theta[1] - two_theta[0] == pytest.approx(0.05, abs=1e-5)
    index = np.searchsorted(two_theta, xye[:, 0] - 1e-4)
    np.testing.assert_allclose(two_theta[index], xye[:, 0], atol=1e-3)
    np.testing.assert_allclose(intensity[index], xye[:, 1], rtol=1e-6, atol=1e-3)
    _, _, stated = read_pattern(NEUTRON / "instrument_files" / "lamn_3t2.dat", with_wavelength=True)
    assert stated == pytest.approx(1.2272)  # "LaMnO3 (RT-3T2, Lambda: 1.2272 angstroms)" in the title
    _, _, stated = read_pattern(NEUTRON / "pbso4_d1a_ill.xye", with_wavelength=True)
    assert stated == pytest.approx(1.912)


def _gsas_std(path, tt, y):
    with open(path, "w") as f:
        f.write("synthetic GSAS STD pattern".ljust(80) + "\n")
        f.write(f"BANK 1 {len(tt)} {len(tt) // 10} CONST {tt[0] * 100:.2f} {(tt[1] - tt[0]) * 100:.2f} 0 0 STD".ljust(80) + "\n")
        for i in range(0, len(tt), 10):
            f.write("".join(f"{v:8.0f}" for v in y[i:i + 10]).ljust(80) + "\n")
    return path


def test_gsas_std_fxye_and_fullprof_free_format(tmp_path):
    tt = 10 + 0.05 * np.arange(400)
    y = np.round(100 + 1000 * np.exp(-0.5 * ((tt - 20) / 0.1) ** 2))
    two_theta, intensity = read_pattern(_gsas_std(tmp_path / "a.gsa", tt, y))
    np.testing.assert_allclose(two_theta, tt, atol=1e-4)
    np.testing.assert_allclose(intensity, y)
    fxye = tmp_path / "a.fxye"
    fxye.write_text("synthetic FXYE\n" + f"BANK 1 {len(tt)} {len(tt)} CONST {tt[0] * 100} 5.0 0 0 FXYE\n"
                    + "".join(f"{a * 100:.3f} {b:.3f} {np.sqrt(b):.3f}\n" for a, b in zip(tt, y)))
    two_theta, intensity = read_pattern(fxye)
    np.testing.assert_allclose(two_theta, tt, atol=1e-4)
    np.testing.assert_allclose(intensity, y)
    free = tmp_path / "free.dat"
    free.write_text(f"! free format\n {tt[0]:.3f} 0.050 {tt[-1]:.3f}\n"
                    + "".join("".join(f"{v:8.0f}" for v in y[i:i + 10]) + "\n" for i in range(0, len(y), 10)))
    two_theta, intensity = read_pattern(free)
    np.testing.assert_allclose(two_theta, tt, atol=1e-4)
    np.testing.assert_allclose(intensity, y)


def test_a_malformed_instrument_file_is_an_error_not_a_crash(tmp_path):
    """CrysFML's Fortran reader ends its process on some bad files; here that is one clear error, and the
    next file reads normally."""
    good = DATA / "neutron_measured" / "instrument_files" / "ybacud1a.dat"
    text = good.read_text().splitlines()
    broken = tmp_path / "broken.dat"
    broken.write_text("\n".join(text[:6] + ["  1  2x 1   abc 1  ??"] + text[7:20]) + "\n")
    bank = tmp_path / "broken.gsa"
    bank.write_text("title\nBANK 1 100 10 CONST 1000 5 0 0 STD\n  12  ab  cd\n")
    for path in (broken, bank):
        with pytest.raises(PatternFileError, match=str(path)):
            read_pattern(path)
    two_theta, _ = read_pattern(good)
    assert len(two_theta) > 3000


def test_a_truncated_instrument_file_is_an_error_not_zeros(tmp_path):
    """CrysFML pads a GSAS file that ends early with zeros; here that is an error naming the cause."""
    tt = 10 + 0.05 * np.arange(1800)
    y = np.round(100 + 1000 * np.exp(-0.5 * ((tt - 40) / 0.2) ** 2))
    path = _gsas_std(tmp_path / "full.gsa", tt, y)
    lines = path.read_text().splitlines()
    cut = tmp_path / "cut.gsa"
    cut.write_text("\n".join(lines[: len(lines) // 3]) + "\n")
    with pytest.raises(PatternFileError, match=r"cut.gsa: the last \d+ of 1800 points are exactly zero.*truncated"):
        read_pattern(cut)
    assert len(read_pattern(path)[0]) == 1800


def test_a_pattern_of_few_non_zero_points_is_refused(tmp_path):
    tt = np.linspace(10, 80, 400)
    y = np.zeros_like(tt)
    y[200:203] = [5.0, 10.0, 5.0]
    path = tmp_path / "three.xy"
    np.savetxt(path, np.column_stack([tt, y]))
    with pytest.raises(PatternFileError, match="only 3 of 400 points have a non-zero intensity"):
        read_pattern(path)


@pytest.mark.parametrize("counts", [0.3, 5.0, 50.0, 1e4])
def test_counting_noise_alone_is_refused_as_no_peak(tmp_path, counts):
    tt = np.arange(5.0, 90.0, 0.02)
    path = tmp_path / "noise.xy"
    np.savetxt(path, np.column_stack([tt, np.random.default_rng(0).poisson(counts, len(tt))]))
    with pytest.raises(PatternFileError, match=r"noise.xy: no peak stands out of the noise"):
        read_pattern(path)


def test_every_measured_pattern_stands_out_of_its_noise():
    """The weakest of the RRUFF dev and neutron patterns are well above the noise limit."""
    rruff = np.load(DATA / "rruff_dev" / "rruff_dev.npz")["intensity"]
    weakest = min(peak_to_noise(row) for row in rruff)
    assert weakest > 1.4 * MIN_PEAK_SNR
    for path in sorted((DATA / "neutron_measured").glob("*.xye")):
        assert peak_to_noise(read_pattern(path)[1]) > 10 * MIN_PEAK_SNR
    weak_peak = 20 + 0.8 * np.exp(-0.5 * ((np.arange(4000) - 2000) / 6.0) ** 2)  # one weak but clean peak
    assert peak_to_noise(weak_peak + np.random.default_rng(1).normal(0, 0.05, 4000)) > MIN_PEAK_SNR
