"""Agreement of xtal_utils.diffraction with CrysFML2008, the library behind FullProf (the `crysfml` wheel).

    .venv/bin/python benchmarks/validate_crysfml.py            # 250 AMCSD structures, X-ray and neutron
    .venv/bin/python benchmarks/validate_crysfml.py --n 8      # a quick look

The structures are those of `validate_simulator.py` (`sample_amcsd`, same seed and filters), at Cu
K-alpha1 over 5-90 degrees. Each is handed to CrysFML in its own cell (so no setting or origin choice can
differ): the symmetry operations that spglib finds there, and one atom per orbit with its CIF occupancy.
Two routes of the wheel are used, each call in a child process (the Fortran library can crash, keeps
state between calls, and writes fort.88 to the working directory):

- `structure_factors_from_cif`, on a CIF written from that content: CrysFML's reflection list (hkl,
  sin(theta)/lambda, multiplicity, |F|), X-rays and neutrons. Its intensities are mult |F|^2 times the
  weight that CrysFML's `cw_powder_pattern` gives a peak, 1 / (2 sin^2 theta cos theta); its pattern is
  those peaks broadened here by the Gaussian of `validate_simulator.py`.
- `cw_powder_pattern_from_dict` ("phases" and "experiments"): CrysFML's own pattern on our grid, with the
  same Gaussian (Caglioti U = V = 0, W = FWHM^2, no Lorentzian X, Y). The group goes in as generators,
  and, where the cell is in spglib's standard setting, as its H-M symbol too. In crysfml 0.8.0 its
  X-ray patterns are all zero (its profile reads the neutron slot of F), so it is compared for neutrons.

For every structure and both radiations:
- positions: every CrysFML reflection in the range has one of our reflections within POSITION_TOL
  degrees, and each of our peaks above POSITION_MIN % one of CrysFML's (which tests the absences);
- intensities: for every peak above STRONG % of the strongest in either list, |ours - CrysFML| on the
  0-100 scale, as CrysFML weights the peaks and with our Lorentz-polarisation factor;
- profile: the cosine of our simulate() pattern against CrysFML's, same grid, same Gaussian.

The conventions that differ are named in the printed summary, each with the size of its effect:
- Lorentz-polarisation: CrysFML weights X-ray peaks by the Lorentz factor alone, ours by
  (1 + cos^2 2theta) / (sin^2 theta cos theta). Aligned by applying 1 + cos^2 2theta to CrysFML's
  intensities (for neutrons the two differ by a constant only).
- Anomalous scattering: CrysFML's X-ray F includes f' + i f'' of the tabulated anode line nearest the
  wavelength, and the wheel cannot switch it off; ours has none. Its size: an independent numpy F of each
  structure with and without CrysFML's f', f''.
- Form factors: CrysFML's International Tables fit against pymatgen's, which ours uses: what is left
  between that numpy F with f', f'' and CrysFML's.
- Debye-Waller: AMCSD structures come here without B, so everything is compared again with B = B_CHECK
  on every atom, on both sides. crysfml's CIF reader takes `_atom_site_B_iso_or_equiv` as U; B goes in
  as U = B / (8 pi^2), and the effect of the B column is shown.
- Occupancy: the dict route turns CIF occupancies into FullProf's (times site multiplicity over group
  order); shown on the structures with partial occupancy.
- Space group: given as generators, the dict route can list a reflection more than once; given as a
  symbol, CrysFML takes origin choice 2 unless told ':1'. Counted, with the cosine of each route.
Structures that CrysFML refuses (an error, a crash, a timeout) are left out and counted by reason, and
single calls that fail are counted by call and reason. Results go to
benchmarks/results/validate_crysfml.json, with the provenance of the run.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import sys
import tempfile
import time
import warnings
from fractions import Fraction
from unittest import mock

import numpy as np

from xtal_utils.config import provenance
from xtal_utils.crystals import sample_amcsd
from xtal_utils.diffraction import PowderSimulator, simulator
from xtal_utils.diffraction.scattering import XRAY_SCALE, neutron_table, xray_table
from xtal_utils.paths import BENCHMARK_RESULTS

WAVELENGTH = 1.5406  # Angstrom, Cu K-alpha1
TWO_THETA_RANGE = (5.0, 90.0)  # degrees
FWHM = 0.1  # degrees, Gaussian used for every profile comparison
POSITION_TOL = 0.01  # degrees 2-theta
POSITION_MIN = 0.01  # % of the strongest: weaker reflections need not be matched (float32 in CrysFML)
INTENSITY_TOL = 2.0  # on the 0-100 scale
STRONG = 1.0  # peaks above this % of the strongest are compared
COSINE_MIN = 0.999
MERGE_TOL = 2e-4  # degrees; CrysFML's reflections closer than this are one peak (its sin(theta)/lambda is float32)
SYMPREC = 0.01  # Angstrom, for spglib
B_CHECK = 1.0  # Angstrom^2, isotropic B put on every atom for the Debye-Waller check
PAD = 1.0  # degrees past the range in which CrysFML's reflections are still rendered (their tails reach in)
CHILD_TIMEOUT = 120  # seconds for CrysFML on one structure
RADIATIONS = ("xray", "neutron")


# ---------------------------------------------------------------------------------------------
# The structure as CrysFML reads it


def _fraction(t: float) -> str:
    """A translation component as CrysFML reads it in a symmetry operator: '+1/2', or '+0.13700'."""
    t = float(t)
    f = Fraction(t).limit_denominator(48)
    if abs(float(f) - t) < 1e-6:
        return "" if f == 0 else f"{'+' if f > 0 else '-'}{abs(f)}"
    return f"{t:+.5f}"


def xyz(rotation: np.ndarray, translation: np.ndarray) -> str:
    """A symmetry operator in the x,y,z notation of CIF: 'x,-y,z+1/2'."""
    rows = []
    for r, t in zip(rotation, translation):
        text = "".join(f"{'+' if c > 0 else '-'}{'' if abs(c) == 1 else abs(int(c))}{v}"
                       for c, v in zip(r, "xyz") if c)
        rows.append(text.lstrip("+") + _fraction(t))
    return ",".join(rows)


def _op_key(rotation, translation) -> bytes:
    """An operator modulo lattice translations, as a hashable key."""
    return rotation.astype(int).tobytes() + (np.round(translation % 1 * 1e4).astype(int) % 10000).tobytes()


def generators(rotations: np.ndarray, translations: np.ndarray) -> list[int]:
    """Indices of a few operators that generate the group of all of them (modulo lattice translations).

    CrysFML builds its group from a generator string, and a string of all 192 operators of F m -3 m
    crashes it; a generating set has at most a handful.
    """
    target = {_op_key(r, t) for r, t in zip(rotations, translations)}
    group = {_op_key(np.eye(3), np.zeros(3)): (np.eye(3), np.zeros(3))}
    chosen = []
    for i, (r, t) in enumerate(zip(rotations, translations)):
        if _op_key(r, t) in group:
            continue
        chosen.append(i)
        frontier = list(group.values())
        while frontier:  # close the group under the chosen generators
            new = []
            for r1, t1 in frontier:
                for j in chosen:
                    r2 = rotations[j] @ r1
                    t2 = (rotations[j] @ t1 + translations[j]) % 1
                    key = _op_key(r2, t2)
                    if key not in group:
                        group[key] = (r2, t2)
                        new.append((r2, t2))
            frontier = new
        if len(group) == len(target):
            break
    return chosen


def hm_symbol(international: str, choice: str) -> str:
    """spglib's short international symbol in CrysFML's spelling: 'P2_1/c' -> 'P 21/c', 'Fd-3m' (origin
    choice 1) -> 'F d -3 m:1'. CrysFML reads a bare symbol of a group with two origins as origin choice 2."""
    tokens = re.findall(r"-?\d(?:_\d)?(?:/[a-z])?|[a-z]", international[1:])
    symbol = " ".join([international[0]] + [t.replace("_", "") for t in tokens])
    return symbol + (":1" if choice == "1" else "")


def crysfml_content(structure, b_iso: float | None = None) -> dict:
    """The cell, symmetry and asymmetric unit of a pymatgen Structure, in its own cell.

    Returns:
        dict with 'cell' (a, b, c, alpha, beta, gamma), 'operators' (all, x,y,z strings), 'generators' (a
        generating subset, joined by ';'), 'symbol' (CrysFML's H-M symbol where the cell is already in
        spglib's standard setting, else None), 'space_group' (number) and 'atoms' (label, element, x, y,
        z, CIF occupancy, B in Angstrom^2), one entry per species of each orbit.
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    data = SpacegroupAnalyzer(structure, symprec=SYMPREC).get_symmetry_dataset()
    rotations, translations = np.asarray(data.rotations), np.asarray(data.translations)
    operators = [xyz(r, t) for r, t in zip(rotations, translations)]
    shift = np.asarray(data.origin_shift) % 1
    standard = (np.allclose(data.transformation_matrix, np.eye(3), atol=1e-6)
                and np.allclose(np.minimum(shift, 1 - shift), 0, atol=1e-6))
    b_values = structure.site_properties.get("b_iso") or [0.0] * len(structure)
    atoms = []
    for i in np.unique(data.equivalent_atoms):
        site = structure[int(i)]
        for element, occupancy in site.species.items():
            symbol = element.symbol if hasattr(element, "symbol") else str(element)
            atoms.append({"_label": f"{symbol}{len(atoms) + 1}", "_type_symbol": symbol,
                          "_fract_x": float(site.frac_coords[0] % 1), "_fract_y": float(site.frac_coords[1] % 1),
                          "_fract_z": float(site.frac_coords[2] % 1), "_occupancy": float(occupancy),
                          "_adp_type": "Biso",
                          "_B_iso_or_equiv": float(b_iso if b_iso is not None else (b_values[i] or 0.0))})
    lattice = structure.lattice
    return {"cell": [*map(float, lattice.abc), *map(float, lattice.angles)], "operators": operators,
            "generators": ";".join(operators[j] for j in generators(rotations, translations)) or "P 1",
            "symbol": hm_symbol(data.international, data.choice) if standard else None,
            "space_group": int(data.number), "atoms": atoms}


def phase_dict(content: dict, symmetry: str = "generators") -> dict:
    """CrysFML's "phases" entry (the keys its `xtal_structure_from_dict` reads); the group as generators or
    as its symbol, both read by CrysFML's `set_spacegroup` from `_space_group_name_H-M_alt`."""
    a, b, c, alpha, beta, gamma = content["cell"]
    return {"_space_group_name_H-M_alt": content[symmetry], "_cell_length_a": a, "_cell_length_b": b,
            "_cell_length_c": c, "_cell_angle_alpha": alpha, "_cell_angle_beta": beta,
            "_cell_angle_gamma": gamma, "_atom_site": content["atoms"]}


def experiment_dict(radiation: str, two_theta: np.ndarray) -> dict:
    """CrysFML's "experiments" entry: a pure Gaussian of FWHM on the given 2-theta points."""
    return {"_diffrn_radiation_probe": "x-ray" if radiation == "xray" else "neutron",
            "_diffrn_radiation_wavelength": WAVELENGTH,
            "_pd_instr_resolution_u": 0.0, "_pd_instr_resolution_v": 0.0, "_pd_instr_resolution_w": FWHM**2,
            "_pd_instr_resolution_x": 0.0, "_pd_instr_resolution_y": 0.0,
            "_pd_meas_2theta_offset": 0.0, "_pd_meas_2theta_scan": [float(t) for t in two_theta]}


def cif_text(content: dict, b_as_u: bool = True) -> str:
    """The same content as a CIF, for `structure_factors_from_cif` (operators listed, no symbol).

    crysfml 0.8.0's CIF reader takes `_atom_site_B_iso_or_equiv` as U (8 pi^2 times too strong a
    Debye-Waller factor), so B goes in as `_atom_site_U_iso_or_equiv` = B / (8 pi^2) unless ``b_as_u`` is
    False.
    """
    a, b, c, alpha, beta, gamma = content["cell"]
    lines = ["data_structure", f"_cell_length_a {a:.6f}", f"_cell_length_b {b:.6f}", f"_cell_length_c {c:.6f}",
             f"_cell_angle_alpha {alpha:.6f}", f"_cell_angle_beta {beta:.6f}", f"_cell_angle_gamma {gamma:.6f}",
             "loop_", "_symmetry_equiv_pos_site_id", "_symmetry_equiv_pos_as_xyz"]
    lines += [f"{i + 1} '{op}'" for i, op in enumerate(content["operators"])]
    adp = ("_atom_site_U_iso_or_equiv", 1 / (8 * np.pi**2)) if b_as_u else ("_atom_site_B_iso_or_equiv", 1.0)
    lines += ["loop_", "_atom_site_label", "_atom_site_type_symbol", "_atom_site_fract_x", "_atom_site_fract_y",
              "_atom_site_fract_z", "_atom_site_occupancy", adp[0]]
    lines += [f"{t['_label']} {t['_type_symbol']} {t['_fract_x']:.6f} {t['_fract_y']:.6f} {t['_fract_z']:.6f} "
              f"{t['_occupancy']:.5f} {t['_B_iso_or_equiv'] * adp[1]:.6f}" for t in content["atoms"]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# CrysFML, in a child process: the Fortran library can crash, and writes fort.88 to the working directory


def _reflections(cfml, content: dict, radiation: str, b_as_u: bool = True) -> dict:
    """CrysFML's reflection list from the CIF route: hkl (r, 3), s = sin(theta)/lambda (r,), multiplicity
    (r,) and |F| (r,), every allowed reflection up to PAD degrees past the range."""
    with open("structure.cif", "w") as f:
        f.write(cif_text(content, b_as_u))
    s_max = np.sin(np.radians(min(TWO_THETA_RANGE[1] + PAD, 179.0) / 2)) / WAVELENGTH
    h = cfml.structure_factors_from_cif("structure.cif", radiation="xra" if radiation == "xray" else "neu",
                                        sintlmax=float(s_max), unique=True, **{"lambda": WAVELENGTH})
    refs = h["ref"][: h["nref"]]
    return {"hkl": np.array([r["h"] for r in refs], dtype=int).reshape(-1, 3),
            "s": np.array([r["s"] for r in refs], dtype=float),
            "multiplicity": np.array([r["mult"] for r in refs], dtype=float),
            "f": np.array([np.abs(np.asarray(r["fc"], dtype=float)).max() for r in refs])}


def _dict_pattern(cfml, content: dict, symmetry: str, grid: np.ndarray, radiation: str = "neutron") -> dict:
    """CrysFML's own pattern (dict route) on the grid, and how many of the reflections it summed were
    listed more than once (read back from the hkl it writes to fort.88)."""
    scan = np.concatenate([grid, grid[-1] + np.arange(1, 11) * PAD / 10])  # reflections just past the end
    study = {"phases": [{"structure": phase_dict(content, symmetry)}],
             "experiments": [{"pattern": experiment_dict(radiation, scan)}]}
    seen = os.path.getsize("fort.88") if os.path.exists("fort.88") else 0
    _, y = cfml.cw_powder_pattern_from_dict(study)
    with open("fort.88") as f:
        f.seek(seen)
        listed = [tuple(line.split()[:3]) for line in f if line.strip()]
    return {"pattern": np.asarray(y, dtype=float)[: len(grid)], "listed": len(listed),
            "duplicates": len(listed) - len(set(listed))}


def _crysfml_work(contents: dict, grid: np.ndarray) -> dict:
    """Everything CrysFML computes for one structure, each call's error kept apart: {name: result or
    'error: message'}. Names: '<radiation><tag>' reflection lists (tag '' or '_b', see main),
    'xray_b_as_b' and 'neutron_b_as_b' (B put in the CIF's B column), 'dict<tag>' and 'dict_symbol<tag>'
    (neutron patterns, the group as generators or as its symbol) and 'dict_xray'."""
    from crysfml import cfml_py_utilities as cfml

    calls = {}
    for tag, content in contents.items():
        for radiation in RADIATIONS:
            calls[f"{radiation}{tag}"] = (_reflections, content, radiation)
        calls[f"dict{tag}"] = (_dict_pattern, content, "generators", grid)
        if content["symbol"]:
            calls[f"dict_symbol{tag}"] = (_dict_pattern, content, "symbol", grid)
    for radiation in RADIATIONS:
        calls[f"{radiation}_b_as_b"] = (_reflections, contents["_b"], radiation, False)
    calls["dict_xray"] = (_dict_pattern, contents[""], "generators", grid, "xray")
    out = {}
    for name, (function, *arguments) in calls.items():
        try:
            out[name] = function(cfml, *arguments)
        except Exception as error:  # noqa: BLE001  CrysFML's errors come as RuntimeError; none is fatal
            out[name] = f"{type(error).__name__}: {str(error).split(':', 1)[-1].strip()[:70]}"
    return out


def _child(connection, contents, grid):
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # CrysFML prints to file descriptor 1
    try:
        with tempfile.TemporaryDirectory() as scratch:
            os.chdir(scratch)
            connection.send(("ok", _crysfml_work(contents, grid)))
    except Exception as error:  # noqa: BLE001  reported to the parent, which counts it
        connection.send(("error", f"{type(error).__name__}: {str(error)[:70]}"))
    connection.close()


def run_crysfml(contents: dict, grid: np.ndarray) -> tuple[str, dict | str]:
    """_crysfml_work in a forked child: ('ok', results), ('error', message), ('crash', exit code) or
    ('timeout', ...). A fresh process per structure also keeps CrysFML's module state from leaking."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(send, contents, grid))
    child.start()
    send.close()
    result = None
    if receive.poll(CHILD_TIMEOUT):
        try:
            result = receive.recv()
        except EOFError:
            pass
    else:
        result = ("timeout", f"over {CHILD_TIMEOUT} s")
    child.join(5)
    if child.is_alive():
        child.kill()
        child.join()
    return result or ("crash", f"exit code {child.exitcode}")


# ---------------------------------------------------------------------------------------------
# Intensities, profiles and their comparison


def two_theta_of(s: np.ndarray) -> np.ndarray:
    return 2 * np.degrees(np.arcsin(np.clip(WAVELENGTH * s, 0, 1)))


def crysfml_lorentz(two_theta: np.ndarray) -> np.ndarray:
    """CrysFML's `cw_powder_pattern` weight: 1 / (2 sin^2 theta cos theta), the same for both radiations."""
    theta = np.radians(two_theta / 2)
    return 0.5 / (np.sin(theta) ** 2 * np.cos(theta))


def polarisation(two_theta: np.ndarray) -> np.ndarray:
    """Our X-ray LP over CrysFML's Lorentz factor, up to a constant: 1 + cos^2 2theta (unpolarised beam)."""
    return 1 + np.cos(np.radians(two_theta)) ** 2


def merged(two_theta: np.ndarray, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reflections closer than MERGE_TOL summed into one peak, scaled so that the strongest is 100."""
    order = np.argsort(two_theta)
    two_theta, intensity = two_theta[order], intensity[order]
    starts = np.r_[0, np.flatnonzero(np.diff(two_theta) > MERGE_TOL) + 1]
    x = two_theta[starts]
    y = np.add.reduceat(intensity, starts) if len(starts) else intensity
    return x, 100 * y / y.max()


def reference_profile(grid, peak_two_theta, peak_intensity, fwhm=FWHM):
    """Peaks broadened by a Gaussian of ``fwhm`` degrees, evaluated exactly on the grid (n_points,), max 1."""
    sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
    step = grid[1] - grid[0]
    half = int(np.ceil(8 * sigma / step))
    index = np.searchsorted(grid, peak_two_theta)[:, None] + np.arange(-half, half + 1)[None, :]  # (peaks, window)
    inside = (index >= 0) & (index < len(grid))
    index = np.clip(index, 0, len(grid) - 1)
    weight = np.exp(-0.5 * ((grid[index] - np.asarray(peak_two_theta)[:, None]) / sigma) ** 2)
    y = np.zeros_like(grid)
    np.add.at(y, index[inside], (np.asarray(peak_intensity)[:, None] * weight)[inside])
    return y / y.max()


def cosine(a, b) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def compare(ours_x, ours_y, ref_x, ref_y, ours_all=None) -> tuple[float, float]:
    """(worst position error, worst intensity error on the 0-100 scale over peaks above STRONG %).

    Positions: every reference reflection in the range against the nearest of ``ours_all`` (all our
    reflections, however weak: an accidentally weak reflection is an intensity matter), and every one of
    our peaks above POSITION_MIN against the nearest reference reflection (which tests the absences).
    """
    lo, hi = TWO_THETA_RANGE
    pool = ref_x[(ref_x >= lo - POSITION_TOL) & (ref_x <= hi + POSITION_TOL)]
    inside = (ref_x >= lo) & (ref_x <= hi)
    ref_x, ref_y = ref_x[inside], 100 * ref_y[inside] / ref_y[inside].max()
    inside = (ours_x >= lo) & (ours_x <= hi)
    ours_x, ours_y = merged(ours_x[inside], ours_y[inside])  # peaks closer than CrysFML's merge are one, as there
    ours_all = ours_x if ours_all is None else ours_all
    if len(pool) == 0 or len(ours_all) == 0:
        return np.inf, 100.0
    worst_pos = max(float(np.abs(ref_x[:, None] - ours_all[None, :]).min(axis=1).max(initial=0)),
                    float(np.abs(ours_x[ours_y > POSITION_MIN][:, None] - pool[None, :]).min(axis=1).max(initial=0)))
    worst = 0.0
    for x, y, other_x, other_y in ((ref_x, ref_y, ours_x, ours_y), (ours_x, ours_y, ref_x, ref_y)):
        for t, i in zip(x, y):
            if i <= STRONG:
                continue
            j = int(np.argmin(np.abs(other_x - t)))
            matched = abs(other_x[j] - t) <= POSITION_TOL
            worst = max(worst, abs(i - other_y[j]) if matched else i)
    return worst_pos, worst


# ---------------------------------------------------------------------------------------------
# Anomalous scattering: its size, with CrysFML's f' and f'' in an independent structure factor


def anomalous_table(wavelength: float = WAVELENGTH) -> dict[str, tuple[float, float]]:
    """{element symbol: (f', f'')} from CrysFML's table, at the tabulated anode line nearest the wavelength."""
    from crysfml import cfml_scattering_tables as tables

    lines = {}
    for row in range(1, 10):
        info = tables.get_xray_wavelengths(row)
        if not str(info.get("symb", "")).strip():
            break
        lines[row - 1] = float(info["kalfa"][0])
    column = min(lines, key=lambda k: abs(lines[k] - wavelength))
    out = {}
    for row in range(1, 200):
        info = tables.get_anomalous_scfac(row)
        symbol = str(info.get("symb", "")).strip().capitalize()
        if not symbol:
            break
        out.setdefault(symbol, (float(info["fp"][column]), float(info["fpp"][column])))
    return out


def xray_intensity(structure, hkl: np.ndarray, s: np.ndarray, anomalous: dict | None) -> np.ndarray:
    """|F(hkl)|^2 of a pymatgen Structure (all its sites, B = 0) with pymatgen's form factors, optionally
    plus f' + i f''; (r,) for hkl (r, 3) at sin(theta)/lambda s (r,)."""
    coeffs, _ = xray_table()
    phase = np.exp(2j * np.pi * hkl @ structure.frac_coords.T)  # (r, sites)
    f = np.zeros(phase.shape, dtype=complex)
    for j, site in enumerate(structure):
        for element, occupancy in site.species.items():
            a, b = coeffs[element.Z].T
            f0 = element.Z - XRAY_SCALE * s**2 * (a[None, :] * np.exp(-b[None, :] * s[:, None] ** 2)).sum(axis=1)
            fp, fpp = (anomalous or {}).get(element.symbol, (0.0, 0.0))
            f[:, j] += occupancy * (f0 + fp + 1j * fpp)
    return np.abs((f * phase).sum(axis=1)) ** 2


# ---------------------------------------------------------------------------------------------


def with_b(structure, b: float):
    out = structure.copy()
    out.add_site_property("b_iso", [b] * len(out))
    return out


def summary(values, tol: float, above: bool = False) -> dict:
    """Pass count, worst and median of one figure over the structures that have it."""
    values = np.array([v for v in values if v is not None], dtype=float)
    if len(values) == 0:
        return {"pass": 0, "n": 0, "worst": None, "median": None}
    ok = values >= tol if above else values <= tol
    return {"pass": int(ok.sum()), "n": len(values), "worst": float(values.min() if above else values.max()),
            "median": float(np.median(values))}


def compare_structure(structure, result: dict, sims: dict, patterns: dict, anomalous: dict) -> dict:
    """Every figure for one structure from CrysFML's results (see _crysfml_work).

    ``patterns``: {'<radiation><tag>': our simulate() pattern of this structure (n_points,)}.
    """
    grid = sims["xray"].two_theta
    row = {}
    for tag, struct in (("", structure), ("_b", with_b(structure, B_CHECK))):
        for radiation in RADIATIONS:
            sim = sims[radiation]
            with mock.patch.object(simulator, "SCALED_INTENSITY_TOL", -1.0):  # every reflection, even absent ones
                every = sim.peaks(struct)
            listed = every.intensity > simulator.SCALED_INTENSITY_TOL  # the peaks that peaks() returns
            ours_x, ours_y, ours_all = every.two_theta[listed], every.intensity[listed], every.two_theta
            key = f"{radiation}{tag}"
            pattern = patterns[key].astype(np.float64)
            ref = result[key]
            two_theta = two_theta_of(ref["s"])
            raw = ref["multiplicity"] * ref["f"] ** 2 * crysfml_lorentz(two_theta)
            aligned = raw * polarisation(two_theta) if radiation == "xray" else raw
            for name, intensity in (("crysfml", raw), ("aligned", aligned)):
                x, y = merged(two_theta, intensity)
                position, row[f"{key}_intensity_{name}"] = compare(ours_x, ours_y, x, y, ours_all)
                row[f"{key}_position"] = position
                row[f"{key}_cosine_{name}"] = cosine(pattern, reference_profile(grid, x, y))
            if tag == "_b":  # the CIF route with B in its B column, as CrysFML reads it
                other = result[f"{radiation}_b_as_b"]
                if isinstance(other, dict):
                    t = two_theta_of(other["s"])
                    i = other["multiplicity"] * other["f"] ** 2 * crysfml_lorentz(t)
                    i = i * polarisation(t) if radiation == "xray" else i
                    row[f"{key}_cosine_b_as_b"] = cosine(pattern, reference_profile(grid, *merged(t, i)))
            if radiation == "neutron":  # CrysFML's own profile, from the dict route
                cif_pattern = reference_profile(grid, *merged(two_theta, raw))
                for route in ("dict", "dict_symbol"):
                    own = result.get(f"{route}{tag}")
                    if isinstance(own, dict):
                        row[f"{key}_cosine_{route}"] = cosine(pattern, own["pattern"])
                        row[f"{key}_cosine_{route}_vs_cif"] = cosine(own["pattern"], cif_pattern)
                        row[f"{key}_{route}_duplicates"] = own["duplicates"]
                        row[f"{key}_{route}_listed"] = own["listed"]
            if radiation == "xray" and not tag:  # size of anomalous scattering: an F with and without f', f''
                if isinstance(result.get("dict_xray"), dict):
                    row["xray_dict_zero"] = bool(np.abs(result["dict_xray"]["pattern"]).max() == 0)
                lp = ref["multiplicity"] * crysfml_lorentz(two_theta) * polarisation(two_theta)
                xp, yp = merged(two_theta, xray_intensity(structure, ref["hkl"], ref["s"], None) * lp)
                xa, ya = merged(two_theta, xray_intensity(structure, ref["hkl"], ref["s"], anomalous) * lp)
                plain, with_anomalous = reference_profile(grid, xp, yp), reference_profile(grid, xa, ya)
                row["xray_anomalous_cosine"] = cosine(plain, with_anomalous)
                row["xray_anomalous_intensity"] = compare(xp, yp, xa, ya)[1]
                row["xray_plain_vs_ours_cosine"] = cosine(pattern, plain)
                xc, yc = merged(two_theta, aligned)
                row["xray_anomalous_vs_crysfml_cosine"] = cosine(with_anomalous, reference_profile(grid, xc, yc))
                row["xray_anomalous_vs_crysfml_intensity"] = compare(xa, ya, xc, yc)[1]
    return row


ROW_KEYS = ("id", "formula", "sites", "space_group", "ordered", "xray_position", "xray_intensity_crysfml",
            "xray_intensity_aligned", "xray_cosine_crysfml", "xray_cosine_aligned", "xray_anomalous_cosine",
            "xray_anomalous_vs_crysfml_cosine", "neutron_intensity_aligned", "neutron_cosine_aligned",
            "neutron_cosine_dict", "neutron_dict_duplicates", "neutron_cosine_dict_symbol")


def report_json(report: dict) -> str:
    """The report as JSON: the summary indented, then the main figures of every structure by column, one
    line each (the order of the columns' entries is that of the structures)."""
    def short(value):
        return float(f"{value:.6g}") if isinstance(value, float) else value

    columns = {key: [short(row.get(key)) for row in report["rows"]] for key in ROW_KEYS}
    text = json.dumps({**report, "rows": "COLUMNS"}, indent=1)
    body = ",\n".join(f"  {json.dumps(key)}: {json.dumps(values)}" for key, values in columns.items())
    return text.replace('"rows": "COLUMNS"', '"rows": {\n' + body + "\n }") + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=250, help="structures to check")
    parser.add_argument("--max-sites", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-points", type=int, default=4096)
    parser.add_argument("--out", default=str(BENCHMARK_RESULTS / "validate_crysfml.json"),
                        help="JSON written here ('' to write nothing)")
    args = parser.parse_args()

    os.environ["GFORTRAN_UNBUFFERED_ALL"] = "1"  # fort.88 complete after each call; read before crysfml loads
    import crysfml

    xray_known, neutron_known = xray_table()[1], neutron_table()[1]

    def both_tables(structure):
        return all(xray_known[e.Z] and neutron_known[e.Z] for e in structure.composition.elements)

    t0 = time.perf_counter()
    structures, ids, skipped = sample_amcsd(args.n, max_sites=args.max_sites, seed=args.seed, elements_ok=both_tables)
    print(f"{len(structures)} AMCSD structures ({time.perf_counter() - t0:.0f} s to load); crysfml {crysfml.__version__}")

    sims = {radiation: PowderSimulator(radiation, WAVELENGTH, TWO_THETA_RANGE, args.n_points, fwhm=FWHM, device="cpu")
            for radiation in RADIATIONS}
    anomalous = anomalous_table()
    patterns = {}
    for tag, batch in (("", structures), ("_b", [with_b(s, B_CHECK) for s in structures])):
        for radiation in RADIATIONS:
            patterns[f"{radiation}{tag}"] = sims[radiation].simulate(batch)
    refused: dict[str, int] = {}  # structures left out, by reason
    failed: dict[str, int] = {}  # single CrysFML calls that failed on structures kept, by call and reason
    rows = []
    t0 = time.perf_counter()
    for k, structure in enumerate(structures):
        try:
            contents = {"": crysfml_content(structure), "_b": crysfml_content(structure, b_iso=B_CHECK)}
        except Exception as error:  # noqa: BLE001  counted by reason, never fatal
            reason = f"spglib: {type(error).__name__}"
            refused[reason] = refused.get(reason, 0) + 1
            continue
        status, result = run_crysfml(contents, sims["xray"].two_theta)
        if status == "ok":
            missing = [f"{name}: {value}" for name, value in result.items()
                       if isinstance(value, str) and not name.startswith("dict") and "b_as_b" not in name]
            if missing:
                status, result = "error", missing[0]
        if status != "ok":
            reason = f"{status}: {result}"
            refused[reason] = refused.get(reason, 0) + 1
            continue
        for name, value in result.items():
            if isinstance(value, str):
                failed[f"{name} {value}"] = failed.get(f"{name} {value}", 0) + 1
        row = {"id": str(ids[k]), "formula": structure.composition.reduced_formula, "sites": len(structure),
               "space_group": contents[""]["space_group"], "symbol": contents[""]["symbol"],
               "ordered": bool(structure.is_ordered)}
        row.update(compare_structure(structure, result, sims, {key: value[k] for key, value in patterns.items()},
                                      anomalous))
        rows.append(row)
        if (k + 1) % 25 == 0:
            print(f"  {k + 1}/{len(structures)} structures, {time.perf_counter() - t0:.0f} s", flush=True)
    elapsed = time.perf_counter() - t0

    report = {"provenance": provenance(sys.argv), "crysfml": crysfml.__version__,
              "settings": {"wavelength": WAVELENGTH, "two_theta_range": TWO_THETA_RANGE, "fwhm": FWHM,
                           "n_points": args.n_points, "position_tol": POSITION_TOL, "intensity_tol": INTENSITY_TOL,
                           "strong": STRONG, "cosine_min": COSINE_MIN, "b_check": B_CHECK, "symprec": SYMPREC},
               "structures": len(structures), "compared": len(rows), "refused": refused, "failed_calls": failed,
               "amcsd_skipped": skipped, "seconds": round(elapsed, 1), "summary": {}, "rows": rows}
    if not rows:
        print(f"CrysFML took none of the {len(structures)} structures: {refused}")
        return 1

    def column(name, subset=None):
        return [r.get(name) for r in rows if subset is None or subset(r)]

    table = report["summary"]
    for tag in ("", "_b"):
        for radiation in RADIATIONS:
            key = f"{radiation}{tag}"
            entry = {"position": summary(column(f"{key}_position"), POSITION_TOL)}
            for name in ("crysfml", "aligned"):
                entry[f"intensity_{name}"] = summary(column(f"{key}_intensity_{name}"), INTENSITY_TOL)
                entry[f"cosine_{name}"] = summary(column(f"{key}_cosine_{name}"), COSINE_MIN, above=True)
            if tag == "_b":
                entry["cosine_b_as_b"] = summary(column(f"{key}_cosine_b_as_b"), COSINE_MIN, above=True)
            if radiation == "neutron":
                for route in ("dict", "dict_symbol"):
                    entry[f"cosine_{route}"] = summary(column(f"{key}_cosine_{route}"), COSINE_MIN, above=True)
                    entry[f"cosine_{route}_vs_cif"] = summary(column(f"{key}_cosine_{route}_vs_cif"), COSINE_MIN,
                                                              above=True)
                    duplicates = [d for d in column(f"{key}_{route}_duplicates") if d is not None]
                    entry[f"{route}_with_duplicates"] = [int(sum(d > 0 for d in duplicates)), len(duplicates)]
                    entry[f"cosine_{route}_without_duplicates"] = summary(
                        column(f"{key}_cosine_{route}", lambda r, k=f"{key}_{route}_duplicates": r.get(k) == 0),
                        COSINE_MIN, above=True)
            table[key] = entry
    def neutron_agrees(r):  # structures on which CrysFML's reflection list and ours agree for neutrons
        return r["neutron_cosine_aligned"] >= COSINE_MIN

    table["xray_anomalous"] = {
        "cosine": summary(column("xray_anomalous_cosine"), COSINE_MIN, above=True),
        "intensity": summary(column("xray_anomalous_intensity"), INTENSITY_TOL),
        "plain_vs_ours_cosine": summary(column("xray_plain_vs_ours_cosine"), COSINE_MIN, above=True),
        "anomalous_vs_crysfml_cosine": summary(column("xray_anomalous_vs_crysfml_cosine", neutron_agrees),
                                               COSINE_MIN, above=True),
        "anomalous_vs_crysfml_intensity": summary(column("xray_anomalous_vs_crysfml_intensity", neutron_agrees),
                                                  INTENSITY_TOL)}

    def partial(r):
        return not r["ordered"]

    table["partial_occupancy"] = {
        "structures": len(column("id", partial)),
        "neutron_intensity": summary(column("neutron_intensity_aligned", partial), INTENSITY_TOL),
        "neutron_cosine": summary(column("neutron_cosine_aligned", partial), COSINE_MIN, above=True),
        "neutron_cosine_dict_symbol": summary(column("neutron_cosine_dict_symbol", partial), COSINE_MIN, above=True)}

    def figures(entry, digits=5, padded=True):
        if not entry["n"]:
            return "none"
        text = f"{entry['pass']:>3}/{entry['n']:<3} {entry['worst']:.{digits}f} / {entry['median']:.{digits}f}"
        return text if padded else " ".join(text.split())

    print(f"\nCrysFML {crysfml.__version__} took {len(rows)} of {len(structures)} structures ({elapsed:.0f} s); "
          f"left out: {refused or 'none'}; single calls that failed: {failed or 'none'}")
    print(f"\n{'':<40} {'positions within':<17} {'intensities >' + str(STRONG) + '%':<22} {'cosine, FWHM ' + str(FWHM)}")
    print(f"{'':<40} {str(POSITION_TOL) + ' deg, worst':<17} {'within ' + str(INTENSITY_TOL) + ', worst/median':<22} "
          f">= {COSINE_MIN}, worst/median")
    lines = [("X-ray, CrysFML's Lorentz factor", "xray", "crysfml"), ("X-ray, our LP applied to CrysFML's", "xray", "aligned"),
             ("neutron (CIF route)", "neutron", "aligned"),
             (f"X-ray, our LP, B = {B_CHECK} on both sides", "xray_b", "aligned"),
             (f"neutron, B = {B_CHECK} on both sides", "neutron_b", "aligned")]
    for label, key, name in lines:
        e = table[key]
        print(f"{label:<40} {e['position']['pass']:>3}/{e['position']['n']:<3} {e['position']['worst']:.0e}  "
              f"{figures(e[f'intensity_{name}'], 2):<22} {figures(e[f'cosine_{name}'])}")
    for route, what in (("dict_symbol", "H-M symbol"), ("dict", "generators")):
        e = table["neutron"]
        print(f"{'neutron, CrysFML own pattern, ' + what:<40} {'':<17} {'':<22} {figures(e[f'cosine_{route}'])}")

    zero = [z for z in column("xray_dict_zero") if z is not None]
    table["xray_dict_all_zero"] = [int(sum(zero)), len(zero)]
    print(f"{'X-ray, CrysFML own pattern':<40} {'':<17} {'':<22} all zero in {sum(zero)}/{len(zero)} "
          "(its profile reads the neutron slot of F)")
    x, n, a, occupancy = table["xray"], table["neutron"], table["xray_anomalous"], table["partial_occupancy"]
    print("\nConventions that differ, and the size of each (cosine worst / median):")
    print(f"- Lorentz-polarisation: CrysFML's cw_powder_pattern weights X-ray peaks by 1/(2 sin^2 theta cos theta) "
          f"alone; ours adds 1 + cos^2 2theta. X-ray cosine {x['cosine_crysfml']['worst']:.5f} / "
          f"{x['cosine_crysfml']['median']:.5f} as CrysFML weights them, {x['cosine_aligned']['worst']:.5f} / "
          f"{x['cosine_aligned']['median']:.5f} with our factor applied to CrysFML's intensities.")
    print(f"- Anomalous scattering: CrysFML adds f' + i f'' (Cu K-alpha, its own table) and cannot be told not to; ours "
          f"has none. In one numpy F with and without them: cosine {a['cosine']['worst']:.5f} / "
          f"{a['cosine']['median']:.5f}, strong intensities moved by up to {a['intensity']['worst']:.1f} "
          f"(median {a['intensity']['median']:.2f}) on the 0-100 scale.")
    print(f"- Form factors (International Tables a, b, c against pymatgen's fit): what is left once f', f'' are added "
          f"to ours, on the {a['anomalous_vs_crysfml_cosine']['n']} structures whose neutron patterns agree: cosine {a['anomalous_vs_crysfml_cosine']['worst']:.5f} / "
          f"{a['anomalous_vs_crysfml_cosine']['median']:.6f}, intensities within "
          f"{a['anomalous_vs_crysfml_intensity']['worst']:.2f} (median {a['anomalous_vs_crysfml_intensity']['median']:.2f}).")
    print(f"- Debye-Waller: the same exp(-B s^2) on F (B = {B_CHECK} on both sides: neutron cosine "
          f"{table['neutron_b']['cosine_aligned']['worst']:.5f} / {table['neutron_b']['cosine_aligned']['median']:.5f}). "
          f"crysfml's CIF reader takes _atom_site_B_iso_or_equiv as U: with B in that column, cosine "
          f"{table['neutron_b']['cosine_b_as_b']['worst']:.3f} / {table['neutron_b']['cosine_b_as_b']['median']:.3f} "
          f"(neutron), {table['xray_b']['cosine_b_as_b']['worst']:.3f} / "
          f"{table['xray_b']['cosine_b_as_b']['median']:.3f} (X-ray); given as U_iso = B / 8 pi^2 it agrees.")
    print(f"- Occupancy: CrysFML's dict route turns CIF occupancies into FullProf's (times site multiplicity over "
          f"group order); on the {occupancy['structures']} structures with partial occupancy, neutron intensities "
          f"within {INTENSITY_TOL}: {figures(occupancy['neutron_intensity'], 2, False)}; CrysFML's own pattern "
          f"(H-M symbol) cosine {figures(occupancy['neutron_cosine_dict_symbol'], padded=False)}.")
    dup, dup_symbol = n["dict_with_duplicates"], n["dict_symbol_with_duplicates"]
    print(f"- Space group: given as generators in the structure's own cell, CrysFML's dict route lists some "
          f"reflections more than once in {dup[0]}/{dup[1]} structures (its own pattern against its CIF route: "
          f"{figures(n['cosine_dict_vs_cif'], padded=False)}; against ours where no reflection is listed twice: "
          f"{figures(n['cosine_dict_without_duplicates'], padded=False)}); as an H-M symbol, for cells in spglib's standard setting (':1' for "
          f"origin choice 1, which CrysFML does not take by default), in {dup_symbol[0]}/{dup_symbol[1]}.")
    print("\nworst X-ray cases, our LP (amcsd id, formula, sites, space group, position, intensity, cosine):")
    for r in sorted(rows, key=lambda r: r["xray_cosine_aligned"])[:5]:
        print(f"  {r['id']:>6} {r['formula'][:22]:<22} {r['sites']:>4} {r['space_group']:>4} "
              f"{r['xray_position']:.1e} {r['xray_intensity_aligned']:.2f} {r['xray_cosine_aligned']:.5f}")
    print("neutron cases where CrysFML's reflection list and ours disagree (cosine below the bar):")
    for r in sorted(rows, key=lambda r: r["neutron_cosine_aligned"]):
        if r["neutron_cosine_aligned"] < COSINE_MIN:
            print(f"  {r['id']:>6} {r['formula'][:22]:<22} {r['sites']:>4} {r['space_group']:>4} "
                  f"{r['neutron_position']:.1e} {r['neutron_intensity_aligned']:.2f} {r['neutron_cosine_aligned']:.5f}")
    if args.out:
        BENCHMARK_RESULTS.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w") as f:
            f.write(report_json(report))
        print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sys.exit(main())
